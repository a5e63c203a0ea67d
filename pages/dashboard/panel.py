"""The Manage app panel: a dashboard page shown inside a hosted app (dogfooding).

The overlay's "Manage app" button opens this page in a side panel. It is served on the
app's own host under `/__stcloud/panel/` by a second Streamlit process of Home.py (the
proxy forwards there), and Home.py runs it instead of the dashboard when the request has
the proxy's signed identity header. That header names the user and the one app of this
host (`backend.accounts.identity.panel_identity`); everything else is read through `backend`,
which checks the user's role again.

Developers (push access) see the app's Cloud logs, which follow the log file every second
(a fragment), and the ︙ button under them, which opens the menu below the logs (inline, so
it covers neither the logs nor a dialog): Download logs, Reboot app, Delete app, Settings,
Analytics, App dashboard, Documentation, Contact support (the operator's support link, else
the documentation), Sign out. Reboot and delete ask first (both interrupt every viewer).
The app's page (our overlay script) watches the app's state by itself, so after a reboot
or a delete it shows the oven or the deleted app's page; sign-out is asked of it with
`postMessage` (the parent window, same origin).

Under them, Memory and CPU: the app's memory against its limit and its CPU over the last
hours, with the newest figures and, near the limit, a warning (`_resources.py`, as on App
details), refreshed every 30 s.
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
from pages.dashboard import _resources as resources_view
from pages.dashboard import _ui as ui

LOG_LINES = 500
LOG_HEIGHT = 430
DOWNLOAD_BYTES = 5_000_000
SIGNAL_KEY = "_panel_signal"
CONFIRM_KEY = "_panel_confirm_delete"
CONFIRM_REBOOT_KEY = "_panel_confirm_reboot"
MENU_KEY = "_panel_menu_open"
DELETED_KEY = "_panel_deleted"
LOG_HEIGHT_WITH_MENU = 200
RESOURCES_REFRESH_S = 30.0
# Streamlit's header is empty here (no toolbar in the panel), but its room above the first
# element stays: the app's name starts at the top instead.
PANEL_CSS = """<style>
header[data-testid="stHeader"] { display: none; }
[data-testid="stMainBlockContainer"] { padding-top: 1rem; padding-bottom: 1rem; }
</style>"""
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
        if ss.get(DELETED_KEY):
            st.success("App deleted. Its page shows that it is gone.")
        else:
            st.warning("This app no longer exists, or you no longer have access to it. "
                       "Reload the page.")
        return None
    if not app.can_manage:
        st.info(f"Developers of workspace **{ui.md(app.workspace)}** manage this app; you "
                "have view access.")
        return None
    return user, app


def ask(key: str) -> None:
    """Open the confirmation `key` and close the menu (it would sit over the dialog)."""
    ss[MENU_KEY] = False
    ss[key] = True


def toggle_menu() -> None:
    ss[MENU_KEY] = not ss.get(MENU_KEY, False)


def reboot(user: Any, app: Any) -> None:
    ss.pop(CONFIRM_REBOOT_KEY, None)
    try:
        app_service.reboot_app(ui.get_ctx(), user, app.id)
    except BackendError as e:
        st.toast(str(e))
        return
    signal("restarting")
    st.toast(f"Rebooting {app.subdomain}: this page shows the oven until it is back.")


@st.dialog("Reboot this app?", on_dismiss=lambda: ss.pop(CONFIRM_REBOOT_KEY, None))
def confirm_reboot(user: Any, app: Any) -> None:
    st.markdown(f"Rebooting **{ui.md(app.subdomain)}** interrupts everyone using it now: "
                "their sessions end and they see the oven until the app is back, which "
                "may take a few minutes.")
    left, right = st.columns(2)
    if left.button(f"Reboot {app.subdomain}", type="primary", key="panel_confirm_reboot",
                   width="stretch"):
        reboot(user, app)
        st.rerun()
    if right.button("Cancel", key="panel_cancel_reboot", width="stretch"):
        ss.pop(CONFIRM_REBOOT_KEY, None)
        st.rerun()


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
        ss[DELETED_KEY] = True
        signal("deleted")
        st.rerun()
    if right.button("Cancel", key="panel_cancel_delete", width="stretch"):
        ss.pop(CONFIRM_KEY, None)
        st.rerun()


@st.fragment(run_every=1.0)
def cloud_logs(user: Any, app_id: int, height: int = LOG_HEIGHT) -> None:
    try:
        text = app_logs.read_logs(ui.get_ctx(), user, app_id)["app"]
    except BackendError as e:
        st.warning(str(e))
        return
    with st.container(height=height, autoscroll=True, border=True, key="cloud_logs"):
        st.code(ui.last_lines(text, LOG_LINES) or "(no output yet)", language=None,
                wrap_lines=True)


@st.fragment(run_every=RESOURCES_REFRESH_S)
def resources_part(user: Any, app: Any) -> None:
    resources_view.resources_section(ui.get_ctx(), user, app.id, app.state,
                                     key="panel_usage_range", default="Last 6 hours",
                                     compact=True)


def full_log(user: Any, app_id: int) -> str:
    return app_logs.read_logs(ui.get_ctx(), user, app_id, max_bytes=DOWNLOAD_BYTES)["app"]


def menu(user: Any, app: Any) -> None:
    """The ︙ menu's items, in rows under the logs."""
    ctx = ui.get_ctx()
    dashboard = ctx.settings.public_url()
    support = ctx.settings.support_url or ctx.settings.docs_url
    with st.container(border=True, key="panel_menu_items", horizontal=True):
        st.download_button("Download logs", data=lambda: full_log(user, app.id),
                           file_name=f"{app.subdomain}.log", mime="text/plain",
                           icon=":material/download:", key="panel_download")
        st.button("Reboot app", icon=":material/refresh:", key="panel_reboot",
                  on_click=ask, args=(CONFIRM_REBOOT_KEY,))
        st.button("Delete app", icon=":material/delete:", key="panel_delete",
                  on_click=ask, args=(CONFIRM_KEY,))
        st.link_button("Settings", f"{dashboard}/settings?app={app.id}",
                       icon=":material/settings:")
        st.link_button("Analytics", f"{dashboard}/analytics?app={app.id}",
                       icon=":material/bar_chart:")
        st.link_button("App dashboard", dashboard, icon=":material/apps:")
        st.link_button("Documentation", ctx.settings.docs_url, icon=":material/menu_book:")
        st.link_button("Contact support", support, icon=":material/help:")
        st.button("Sign out", icon=":material/logout:", key="panel_sign_out",
                  on_click=signal, args=("signout",))


st.html(PANEL_CSS)
found = load()
if found is None:
    send_signal()
    st.stop()
user, app = found
with st.container(horizontal=True, vertical_alignment="center", key="panel_head"):
    st.markdown(f"**{ui.md(app.subdomain)}** · {ui.md(app.workspace)}", width="content")
    ui.status_badge(app)
st.markdown("**Cloud logs**")
menu_open = bool(ss.get(MENU_KEY))
cloud_logs(user, app.id, LOG_HEIGHT_WITH_MENU if menu_open else LOG_HEIGHT)
st.button("", icon=":material/more_vert:", key="panel_menu", on_click=toggle_menu,
          help="Close the menu" if menu_open else "More actions for this app (︙)",
          type="secondary")
if menu_open:
    menu(user, app)
st.markdown("**Memory and CPU**")
resources_part(user, app)
if ss.get(CONFIRM_KEY):
    confirm_delete(user, app)
elif ss.get(CONFIRM_REBOOT_KEY):
    confirm_reboot(user, app)
send_signal()
