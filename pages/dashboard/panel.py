"""The Manage app panel: a dashboard page shown inside a hosted app (dogfooding).

The overlay's "Manage app" button opens this page in a side panel. It is served on the
app's own host under `/__stcloud/panel/` by a second Streamlit process of Home.py (the
proxy forwards there), and Home.py runs it instead of the dashboard when the request has
the proxy's signed identity header. That header names the user and the one app of this
host (`backend.accounts.identity.panel_identity`); everything else is read through `backend`,
which checks the user's role again.

Developers (push access) see the app's Cloud logs, which follow the log file every second
(a fragment), and the ︙ menu under them: Download log, Reboot app, Delete app, Settings,
Analytics, App dashboard, Documentation, Support, Sign out. Reboot, delete and sign-out
also tell the app's page (our overlay script, the parent window, same origin) what
happened, with `postMessage`, so it shows the oven, the deleted app, or signs out.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import streamlit as st

from backend.accounts import auth, identity
from backend.apps import logs as app_logs
from backend.apps import service as app_service
from backend.errors import BackendError, NotFound
from pages.dashboard import _ui as ui

LOG_LINES = 500
LOG_HEIGHT = 430
DOWNLOAD_BYTES = 5_000_000
SIGNAL_KEY = "_panel_signal"
CONFIRM_KEY = "_panel_confirm_delete"
ss = st.session_state

st.set_page_config(page_title="Manage app", page_icon=ui.PAGE_ICON, layout="wide")


def signal(action: str) -> None:
    """Ask the app's page (the overlay script) to react, on this run."""
    ss[SIGNAL_KEY] = action


def send_signal() -> None:
    action = ss.pop(SIGNAL_KEY, None)
    if action is None:
        return
    message = json.dumps({"stcloud": 1, "action": action, "n": secrets.token_hex(4)})
    st.html(f"<script>window.parent.postMessage({message}, window.location.origin);"
            "</script>", unsafe_allow_javascript=True)


def load() -> tuple[Any, Any] | None:
    """(user, app) for this panel, or None after saying why not."""
    ctx = ui.get_ctx()
    who = identity.panel_identity(ctx, st.context.headers)
    if who is None:
        st.info("Open this panel with the **Manage app** button of your app, signed in as "
                "one of its developers.")
        return None
    try:
        user = auth.get_user(ctx, who.username)
        if user.id != who.user_id:
            raise NotFound("account changed")
        app = app_service.get_app(ctx, user, who.app_id)
    except BackendError:
        st.warning("This app no longer exists, or you no longer have access to it. Reload "
                   "the page.")
        return None
    if not app.can_manage:
        st.info(f"Developers of workspace **{ui.md(app.workspace)}** manage this app; you "
                "have view access.")
        return None
    return user, app


def reboot(user: Any, app: Any) -> None:
    try:
        app_service.reboot_app(ui.get_ctx(), user, app.id)
    except BackendError as e:
        st.toast(str(e))
        return
    signal("restarting")
    st.toast(f"Rebooting {app.subdomain}: this page shows the oven until it is back.")


@st.dialog("Delete this app?", on_dismiss=lambda: ss.pop(CONFIRM_KEY, None))
def confirm_delete(user: Any, app: Any) -> None:
    st.markdown(f"Deleting **{ui.md(app.subdomain)}** stops it for everyone, frees its URL "
                "and removes its files, logs and settings from this server. Your repository "
                "is not touched.")
    left, right = st.columns(2)
    if left.button(f"Delete {app.subdomain}", type="primary", key="panel_confirm_delete",
                   width="stretch"):
        ss.pop(CONFIRM_KEY, None)
        try:
            app_service.delete_app(ui.get_ctx(), user, app.id)
        except BackendError as e:
            st.error(str(e))
            return
        signal("deleted")
        st.rerun()
    if right.button("Cancel", key="panel_cancel_delete", width="stretch"):
        ss.pop(CONFIRM_KEY, None)
        st.rerun()


@st.fragment(run_every=1.0)
def cloud_logs(user: Any, app_id: int) -> None:
    try:
        text = app_logs.read_logs(ui.get_ctx(), user, app_id)["app"]
    except BackendError as e:
        st.warning(str(e))
        return
    with st.container(height=LOG_HEIGHT, autoscroll=True, border=True, key="cloud_logs"):
        st.code(ui.last_lines(text, LOG_LINES) or "(no output yet)", language=None,
                wrap_lines=True)


def full_log(user: Any, app_id: int) -> str:
    return app_logs.read_logs(ui.get_ctx(), user, app_id, max_bytes=DOWNLOAD_BYTES)["app"]


def menu(user: Any, app: Any) -> None:
    ctx = ui.get_ctx()
    dashboard = ctx.settings.public_url()
    with st.popover("", icon=":material/more_vert:", help="More actions for this app (︙)",
                    key="panel_menu"):
        st.download_button("Download log", data=lambda: full_log(user, app.id),
                           file_name=f"{app.subdomain}.log", mime="text/plain",
                           icon=":material/download:", key="panel_download",
                           width="stretch")
        st.button("Reboot app", icon=":material/refresh:", key="panel_reboot",
                  on_click=reboot, args=(user, app), width="stretch")
        if st.button("Delete app", icon=":material/delete:", key="panel_delete",
                     width="stretch"):
            ss[CONFIRM_KEY] = True
        st.link_button("Settings", f"{dashboard}/settings?app={app.id}",
                       icon=":material/settings:", width="stretch")
        st.link_button("Analytics", f"{dashboard}/analytics?app={app.id}",
                       icon=":material/bar_chart:", width="stretch")
        st.link_button("App dashboard", dashboard, icon=":material/apps:", width="stretch")
        st.link_button("Documentation", ctx.settings.docs_url, icon=":material/menu_book:",
                       width="stretch")
        if ctx.settings.support_url:
            st.link_button("Support", ctx.settings.support_url, icon=":material/help:",
                           width="stretch")
        st.button("Sign out", icon=":material/logout:", key="panel_sign_out",
                  on_click=signal, args=("signout",), width="stretch")


found = load()
if found is None:
    st.stop()
user, app = found
head, badge = st.columns([3, 2], vertical_alignment="center")
head.markdown(f"**{ui.md(app.subdomain)}** · {ui.md(app.workspace)}")
ui.status_badge(app, badge)
st.markdown("**Cloud logs**")
cloud_logs(user, app.id)
menu(user, app)
if ss.get(CONFIRM_KEY):
    confirm_delete(user, app)
send_signal()
