"""App actions of the dashboard's pages: reboot and delete (each confirmed in a dialog that
says what happens), wake (the moon) and favorite; on App details, put to sleep now (the
app's developers), stop, start and move to another workspace (server admins). Buttons
call these as callbacks, or ask for a confirmation that `confirm_dialogs` renders in the
page body on the next run (a dialog cannot open from inside a fragment's rerun).
Everything goes through `backend`, which checks the user's role again.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend import workspaces
from backend.apps import admin_actions, favorites
from backend.apps import service as app_service
from backend.context import Context
from backend.errors import BackendError
from pages.dashboard._ui import ICON, RERUN_APP_KEY, flash, md, status_label

CONFIRM_DELETE_KEY = "_confirm_delete_app"
CONFIRM_REBOOT_KEY = "_confirm_reboot_app"


# Menus ----------------------------------------------------------------------------------
def menu_key(app_id: int) -> str:
    """The key of an app's "︙" popover; it tracks its state, so an action can close it."""
    return f"menu_{app_id}"


def from_menu(app_id: int, action: Any, *args: Any) -> None:
    """Button callback inside an app's menu: close the menu, then run `action(*args)`."""
    st.session_state[menu_key(app_id)] = False
    action(*args)


# Callbacks ------------------------------------------------------------------------------
def reboot(ctx: Context, user: Any, app_id: int, subdomain: str) -> None:
    try:
        app_service.reboot_app(ctx, user, app_id)
    except BackendError as e:
        flash(str(e))
    else:
        flash(f"Rebooting {subdomain}: visitors see the oven page until it is back.", "toast")


def wake(ctx: Context, user: Any, app_id: int, subdomain: str) -> None:
    """The moon: any member of the app's workspace may wake a sleeping app."""
    try:
        state = app_service.wake_app(ctx, user, app_id)
    except BackendError as e:
        flash(str(e))
        return
    if state == "starting":
        flash(f"Waking {subdomain} up: it is back in a few seconds.", "toast")
    else:
        flash(f"{subdomain} is not sleeping ({status_label(state)}).", "toast")


def lifecycle(ctx: Context, user: Any, app_id: int, subdomain: str, action: str) -> None:
    """Put to sleep now, start (a stopped app) or stop (`backend.apps.admin_actions`)."""
    calls = {"sleep": (admin_actions.sleep_now, "is going to sleep: the next visitor can "
                       "wake it up."),
             "start": (admin_actions.wake, "is starting from its checkout."),
             "stop": (admin_actions.stop, "is stopping; it stays stopped until started.")}
    call, said = calls[action]
    try:
        call(ctx, user, app_id)
    except BackendError as e:
        flash(str(e))
    else:
        flash(f"{subdomain} {said}", "toast")


def move(ctx: Context, user: Any, app_id: int, key: str) -> None:
    """Move the app to the workspace chosen in the selectbox `key` (server admins)."""
    try:
        view = admin_actions.move(ctx, user, app_id, int(st.session_state[key]))
    except BackendError as e:
        flash(str(e))
    else:
        flash(f"{view.subdomain} is now in workspace {view.workspace}.", "toast")


def lifecycle_buttons(ctx: Context, user: Any, app: Any) -> None:
    """Sleep now for the app's developers; stop/start and move for server admins."""
    if not app.can_manage:
        return
    cols = st.columns(3, vertical_alignment="bottom")
    if app.state == "running" and app.desired_state == "running":
        cols[0].button("Put to sleep now", key=f"sleep_{app.id}", icon="🌙",
                       on_click=lifecycle, args=(ctx, user, app.id, app.subdomain, "sleep"))
    if app.desired_state == "stopped" or app.state == "stopped":
        cols[1].button("Start", key=f"start_{app.id}", icon=":material/play_arrow:",
                       on_click=lifecycle, args=(ctx, user, app.id, app.subdomain, "start"))
    elif getattr(user, "is_admin", False):
        cols[1].button("Stop (admin)", key=f"stop_{app.id}", icon=":material/stop:",
                       on_click=lifecycle, args=(ctx, user, app.id, app.subdomain, "stop"))
    if getattr(user, "is_admin", False):
        spaces: dict[int, str] = {w.id: w.name for w, _ in workspaces.list_workspaces(
            ctx, user) if w.id is not None and w.id != app.workspace_id}
        if spaces:
            key = f"move_to_{app.id}"
            with cols[2].popover("Move (admin)", icon=":material/drive_file_move:"):
                st.selectbox("To workspace", list(spaces), key=key,
                             format_func=lambda i: spaces[i])
                st.button("Move", key=f"move_{app.id}", on_click=move,
                          args=(ctx, user, app.id, key))


def ask_delete(app_id: int) -> None:
    """Open the delete confirmation (rendered by `confirm_dialogs` in the full rerun that
    `ui.live` starts; a button callback may not rerun by itself)."""
    st.session_state.pop(CONFIRM_REBOOT_KEY, None)
    st.session_state[CONFIRM_DELETE_KEY] = app_id
    st.session_state[RERUN_APP_KEY] = True


def _forget_delete() -> None:
    st.session_state.pop(CONFIRM_DELETE_KEY, None)


def confirm_dialogs(ctx: Context, user: Any, after_delete: str | None = None) -> None:
    """Show the reboot or delete confirmation when a button asked for it (call in the page
    body, outside fragments). `after_delete` is a page to go to once the app is deleted."""
    reboot_id = st.session_state.get(CONFIRM_REBOOT_KEY)
    if reboot_id is not None:
        try:
            app = app_service.get_app(ctx, user, reboot_id)
        except BackendError:
            _forget_reboot()
        else:
            _reboot_dialog(ctx, user, app)
        return
    app_id = st.session_state.get(CONFIRM_DELETE_KEY)
    if app_id is None:
        return
    try:
        app = app_service.get_app(ctx, user, app_id)
    except BackendError:
        _forget_delete()
        return
    _delete_dialog(ctx, user, app, after_delete)


@st.dialog("Delete this app?", on_dismiss=_forget_delete)
def _delete_dialog(ctx: Context, user: Any, app: Any, after_delete: str | None) -> None:
    st.markdown(f"You are about to delete **{md(app.subdomain)}** ({md(app.url)}).")
    st.markdown(
        "Deleting stops the app for everyone using it and frees its URL: this server "
        "removes its running instance, its checkout, its secrets, logs and settings, and "
        f"its route. Your repository ({md(app.repo_url)}) is not touched: you can deploy it "
        "again at any time.")
    left, right = st.columns(2)
    if left.button(f"Delete {app.subdomain}", type="primary", key="confirm_delete",
                   width="stretch", icon=ICON["delete"]):
        _forget_delete()
        try:
            app_service.delete_app(ctx, user, app.id)
        except BackendError as e:
            flash(str(e))
        else:
            flash(f"Deleting {app.subdomain}.", "toast")
        if after_delete:
            st.switch_page(after_delete)
        st.rerun()
    if right.button("Cancel", key="cancel_delete", width="stretch"):
        _forget_delete()
        st.rerun()



def ask_reboot(app_id: int) -> None:
    """Open the reboot confirmation (as `ask_delete`)."""
    st.session_state.pop(CONFIRM_DELETE_KEY, None)
    st.session_state[CONFIRM_REBOOT_KEY] = app_id
    st.session_state[RERUN_APP_KEY] = True


def _forget_reboot() -> None:
    st.session_state.pop(CONFIRM_REBOOT_KEY, None)


@st.dialog("Reboot this app?", on_dismiss=_forget_reboot)
def _reboot_dialog(ctx: Context, user: Any, app: Any) -> None:
    st.markdown(f"You are about to reboot **{md(app.subdomain)}** ({md(app.url)}).")
    st.markdown(
        "Rebooting restarts the app on its current environment. It interrupts everyone "
        "using it right now, and until it is back (usually seconds, a few minutes when it "
        "has to be rebuilt) visitors see the *Your app is in the oven* page.")
    left, right = st.columns(2)
    if left.button(f"Reboot {app.subdomain}", type="primary", key="confirm_reboot",
                   width="stretch", icon=ICON["reboot"]):
        _forget_reboot()
        reboot(ctx, user, app.id, app.subdomain)
        st.rerun()
    if right.button("Cancel", key="cancel_reboot", width="stretch"):
        _forget_reboot()
        st.rerun()


def set_favorite(ctx: Context, user: Any, app_id: int, favorite: bool, name: str) -> None:
    """Star / unstar (button callback); any member of the workspace may."""
    try:
        favorites.set_favorite(ctx, user, app_id, favorite)
    except BackendError as e:
        flash(str(e))
    else:
        flash(f"⭐ {name} is a favorite: it shows at the top." if favorite
              else f"{name} is no longer a favorite.", "toast")
