"""Status: is the platform healthy? Open to everyone, like a public status page.

Signed out (Home.py runs this page without the sign-in form) or signed in without being a
site admin: the overall state and each component (supervisor, proxy, app runtime, database,
disk, email) with a one-line summary; signed in, also where apps run and how they are
isolated (backend/platform/installation.py). Site admins also get the details: heartbeat age,
engine, latencies, free disk, the email setup and outbox, apps by state and the last
incidents (crashes, memory-limit kills, failed builds). It refreshes every 30 s.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.context import Context
from backend.platform import installation, notifications, status
from pages.dashboard import _ui as ui

REFRESH_SECONDS = 30
OVERALL = {"operational": ("success", "All systems operational"),
           "degraded": ("warning", "Degraded: some parts need attention"),
           "down": ("error", "Outage: apps or the dashboard may be unreachable")}


def mark(ok: bool | None) -> str:
    return {True: "🟢", False: "🔴", None: "⚪"}[ok]


def components(report: status.StatusReport) -> None:
    for c in report.components:
        with st.container(border=True, key=f"component_{c.name.lower().replace(' ', '_')}"):
            name, summary = st.columns([1, 3], vertical_alignment="center")
            name.markdown(f"{mark(c.ok)} **{c.name}**")
            summary.markdown(ui.md(c.summary))
            if c.detail:
                summary.caption(ui.md(c.detail))


def details(ctx: Context, user: Any, report: status.StatusReport) -> None:
    counts, incidents = st.columns([1, 2], gap="large")
    with counts:
        st.subheader("Apps by state")
        if report.counts:
            st.dataframe([{"State": ui.status_label(s), "Apps": n}
                          for s, n in report.counts.items()], hide_index=True,
                         width="stretch")
            st.caption(f"{sum(report.counts.values())} apps in all.")
        else:
            st.caption("No apps yet.")
    with incidents:
        st.subheader("Last incidents")
        if report.incidents:
            st.dataframe([{"When": ui.relative_time(i.time), "Time": ui.exact_time(i.time),
                           "App": i.app, "What": i.label, "Reason": i.reason.splitlines()[0]
                           if i.reason else ""} for i in report.incidents],
                         hide_index=True, width="stretch")
        else:
            st.caption("No crashes, memory-limit kills or failed builds.")
    with st.expander("Email outbox"):
        outbox = notifications.list_outbox(ctx, user, limit=50)
        if outbox:
            st.dataframe([{"Created": ui.exact_time(m.created_at), "To": m.to_addr,
                           "Subject": m.subject, "Status": m.status, "Attempts": m.attempts,
                           "Error": m.last_error} for m in outbox], hide_index=True,
                         width="stretch")
        else:
            st.caption("No email yet.")


def isolation(ctx: Context, user: Any) -> None:
    """Where hosted apps run and how they are isolated: signed-in users only (a short line;
    site admins the whole sentence, as a warning in single-tenant mode)."""
    notice = installation.isolation_notice(installation.read_installation(ctx))
    if notice is None or user is None:
        return
    if not user.is_admin:
        st.caption(notice.short)  # our own text: no Markdown from people
    elif notice.warning:
        st.warning(notice.text, icon=":material/gpp_maybe:")
    else:
        st.info(notice.text, icon=":material/shield:")


def body(ctx: Context, user: Any) -> None:
    if user is not None and user.is_admin:
        report = status.full_status(ctx, user)
    else:
        report = status.public_status(ctx)
    kind, text = OVERALL[report.overall]
    getattr(st, kind)(f"**{text}**")
    ui.time_caption(report.checked_at, "Checked ")
    isolation(ctx, user)
    components(report)
    if report.detailed:
        details(ctx, user, report)
    elif user is not None:
        st.caption("Site admins see the details here: apps by state and the last incidents.")


ctx = ui.get_ctx()
user = ui.signed_in_user(ctx)
st.title("Status")
st.caption(f"The health of {ui.md(ctx.settings.domain)}: the services that build, run and "
           "serve apps.")
st.fragment(lambda: body(ctx, user), run_every=REFRESH_SECONDS, key="status_body")()
if user is None:
    st.page_link(ui.MY_APPS, label="Sign in", icon=":material/login:")
