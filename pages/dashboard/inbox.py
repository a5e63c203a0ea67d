"""Notifications: the signed-in user's inbox (backend.platform.inbox), newest first: what
happened to
which app (over its limit, crashed, could not be updated, about to sleep), whether an email
went out too, a link to the app's details, and mark read / mark all read. The sidebar's bell
(Home.py) shows the unread count and links here."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.context import Context
from backend.platform import inbox
from pages.dashboard import _ui as ui

KIND_LABEL = {"over_limit": "🤯 Over its resource limits", "crashed": "💥 Crashed",
              "deploy_failed": "🛠️ Could not be updated", "sleep_warning": "🌙 Going to sleep",
              "memory_warning": "📈 Close to its memory limit"}
UNREAD_ONLY_KEY = "inbox_unread_only"


def mark_one(ctx: Context, user: Any, notice_id: int) -> None:
    inbox.mark_read(ctx, user, [notice_id])


def mark_all(ctx: Context, user: Any) -> None:
    marked = inbox.mark_all_read(ctx, user)
    st.toast(f"Marked {marked} notification{'s' if marked != 1 else ''} read.")


def notice_row(ctx: Context, user: Any, notice: inbox.NoticeView) -> None:
    with st.container(border=True):
        top = st.container(horizontal=True, vertical_alignment="center")
        dot = "" if notice.read else "🔵 "
        top.markdown(f"{dot}**{ui.md(KIND_LABEL.get(notice.kind, notice.kind))}** · "
                     f"{ui.md(notice.subject)}")
        if not notice.read:
            top.button("Mark read", key=f"inbox_read_{notice.id}", type="tertiary",
                       icon=":material/done:", on_click=mark_one,
                       args=(ctx, user, notice.id))
        how = "in your dashboard and by email" if notice.emailed else \
            "in your dashboard only (your account had no email address, the server sends " \
            "no mail, or the mail server refused it)"
        st.caption(f"{notice.created_at:%Y-%m-%d %H:%M} UTC · sent {how}")
        with st.expander("Details"):
            st.text(notice.body_text)
        if notice.app_subdomain and notice.app_id is not None:
            ui.page_link(ui.APP, label=f"Open {notice.app_subdomain}'s details",
                         icon=ui.ICON["details"], query_params={"app": str(notice.app_id)})
        elif notice.app_id is not None:
            st.caption("This app has been deleted since.")


def main() -> None:
    ctx, user = ui.page_context()
    st.title("Notifications")
    unread = inbox.unread_count(ctx, user)
    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.markdown(f"**{unread}** unread" if unread else "All read")
    unread_only = bar.toggle("Unread only", key=UNREAD_ONLY_KEY)
    bar.button("Mark all read", key="inbox_read_all", icon=":material/done_all:",
               disabled=not unread, on_click=mark_all, args=(ctx, user))
    notices = inbox.list_notices(ctx, user, limit=inbox.MAX_LIST, unread_only=unread_only)
    if not notices:
        st.info("No notifications. When one of your apps goes over its limits, crashes, "
                "cannot be updated or is about to sleep, you are told here (and by email "
                "when your account has an address and the server can send mail).")
        return
    for notice in notices:
        notice_row(ctx, user, notice)


main()
