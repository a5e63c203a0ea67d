"""App: one app's status, URL, commit, events, and the tails of its build and app logs.

The app is chosen with `?app=<id>` (links from the app list carry it) or the selector, which
keeps the query parameter in step so the URL can be shared. The status, events and logs run
in a live fragment that refreshes while the app is in the oven.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend import apps as app_service
from backend.context import Context
from backend.errors import BackendError, NotFound, PermissionDenied
from pages.dashboard import _ui as ui

SELECT_KEY = "app_select"
LOG_LINES = 200


def choose_app(apps: list[Any]) -> int:
    """The selected app id, from the query parameter or the selector."""
    ids = [a.id for a in apps]
    by_id = {a.id: a for a in apps}
    try:
        wanted = int(st.query_params.get("app", ""))
    except ValueError:
        wanted = None
    if wanted in by_id:
        st.session_state[SELECT_KEY] = wanted
    elif st.session_state.get(SELECT_KEY) not in by_id:
        st.session_state[SELECT_KEY] = ids[0]

    def sync() -> None:
        st.query_params["app"] = str(st.session_state[SELECT_KEY])

    chosen = st.selectbox("App", ids, key=SELECT_KEY, on_change=sync, width=480,
                          format_func=lambda i: f"{by_id[i].subdomain} — {by_id[i].repo_url}")
    st.query_params["app"] = str(chosen)
    return chosen


def actions(ctx: Context, user: Any, app: Any) -> None:
    cols = st.columns([1.2, 1, 1, 3])
    cols[0].link_button("Open app", app.url, icon=":material/open_in_new:", type="primary")
    if app.state == "sleeping":
        cols[3].button("Wake up", key="detail_wake", icon="🌙", on_click=ui.wake,
                       args=(ctx, user, app.id, app.subdomain))
    if not app.can_manage:
        cols[1].caption("View-only")
        return
    cols[1].button("Reboot", key="detail_reboot", icon=":material/refresh:",
                   on_click=ui.reboot, args=(ctx, user, app.id, app.subdomain))
    if cols[2].button("Delete", key="detail_delete", icon=":material/delete:"):
        ui.ask_delete(app.id)
        st.rerun(scope="app")


def facts(app: Any) -> None:
    rows = [("URL", f"[{ui.md(app.url)}]({app.url})"),
            ("Repository", ui.md(app.repo_url)),
            ("Branch", ui.md(app.branch)),
            ("Main file", ui.md(app.main_file)),
            ("Commit", f"`{app.commit[:12]}`" if app.commit else "not built yet"),
            ("Python", ui.md(app.python_version)),
            ("Workspace", f"{ui.md(app.workspace)} (you are {app.role or 'not a member'})"),
            ("Owner", ui.md(app.owner or "unknown")),
            ("Visibility", app.visibility)]
    if app.last_deployed_at:
        rows.append(("Last deployed", ui.exact_time(app.last_deployed_at)))
    st.markdown("\n".join(f"- **{k}:** {v}" for k, v in rows))


def live_part(ctx: Context, user: Any, app_id: int) -> bool:
    ui.show_flash()
    try:
        app = app_service.get_app(ctx, user, app_id)
    except NotFound:
        st.info("This app has been deleted.")
        return False
    head, when = st.columns([3, 1], vertical_alignment="center")
    with head:
        st.subheader(ui.md(app.subdomain))
        ui.status_badge(app)
    when.caption(f"Updated {ui.relative_time(app.updated_at)}",
                 help=ui.exact_time(app.updated_at))
    actions(ctx, user, app)
    info, events_col = st.columns([1, 1.4])
    with info:
        facts(app)
    with events_col:
        st.markdown("**Events**")
        events = app_service.app_events(ctx, user, app.id, limit=20)
        st.dataframe(
            [{"Time": ui.exact_time(e.time), "Change": f"{e.from_state or '·'} → {e.to_state}",
              "Reason": e.reason} for e in events],
            hide_index=True, width="stretch")
    try:
        logs = app_service.read_logs(ctx, user, app.id)
    except PermissionDenied:
        st.info(f"Logs are shown to developers of workspace {ui.md(app.workspace)}.")
    else:
        app_tab, build_tab = st.tabs(["App log", "Build log"])
        app_tab.code(ui.last_lines(logs["app"], LOG_LINES) or "(no output yet)",
                     language=None, height=420)
        build_tab.code(ui.last_lines(logs["build"], LOG_LINES) or "(no build yet)",
                       language=None, height=420)
    return ui.is_busy(app)


ctx, user = ui.page_context()
try:
    apps = app_service.list_apps(ctx, user)
except BackendError as e:
    st.error(str(e))
    st.stop()
st.title("App")
if not apps:
    st.info("You have no apps yet.")
    st.page_link(ui.DEPLOY, label="Deploy an app", icon=":material/rocket_launch:")
    st.stop()
app_id = choose_app(apps)
ui.live("app_detail", lambda: live_part(ctx, user, app_id))
ui.delete_dialog_if_asked(ctx, user, after_delete=ui.MY_APPS)
