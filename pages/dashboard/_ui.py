"""Shared pieces of the dashboard: the backend context, the signed-in user, status badges,
times, live refresh, and the app actions (reboot, wake, delete with confirmation).

The dashboard only records intent through `backend` (deploy, reboot, delete) and shows state
by re-reading it: the supervisor's reconcile loop does the work. The parts of a page that
change run in a fragment that rereads them every `REFRESH_SECONDS` while an app is in the
oven, and every `IDLE_REFRESH_SECONDS` otherwise (`live()`), so a page never reruns as a
whole just to refresh.

Layering (import-linter): this module and the pages import `backend` only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from backend import apps as app_service
from backend import auth
from backend.appstate import FAILED_STATES, OVEN_STATES
from backend.context import Context, open_context
from backend.errors import BackendError, NotFound

PRODUCT = "Streamlit Cloud (self-hosted)"
PAGE_ICON = "☁️"

# Page files, relative to Home.py (st.navigation, st.switch_page and st.page_link take these).
MY_APPS = "pages/dashboard/my_apps.py"
DEPLOY = "pages/dashboard/deploy.py"
APP = "pages/dashboard/app_details.py"
ACCOUNT = "pages/dashboard/account.py"

REFRESH_SECONDS = 2.0  # while an app is in the oven or being deleted
IDLE_REFRESH_SECONDS = 30.0  # otherwise, so that a crash or sleep shows up by itself
BUSY_STATES = OVEN_STATES | {"deleting"}
SIGN_OUT_KEY = "_sign_out_requested"
CONFIRM_DELETE_KEY = "_confirm_delete_app"
FLASH_KEY = "_flash"

# - streamlit-authenticator's cookie manager renders invisible components keyed init, set
#   and delete (extra_streamlit_components.CookieManager); each would leave a blank line.
# - the "︙" menus of the app list (popovers keyed menu_<id>) show no expand chevron.
GLOBAL_CSS = """<style>
.st-key-init, .st-key-set, .st-key-delete { display: none; }
[class*="st-key-menu_"] [data-testid="stPopoverButton"] div[aria-hidden="true"] {
  display: none;
}
</style>"""

# state -> (icon, label, badge colour)
_STATUS: dict[str, tuple[str, str, str]] = {
    "running": ("🟢", "Running", "green"),
    "queued": ("🍳", "In the oven", "orange"),
    "building": ("🍳", "In the oven", "orange"),
    "starting": ("🍳", "In the oven", "orange"),
    "sleeping": ("🌙", "Sleeping", "blue"),
    "over_limit": ("🤯", "Over its resource limits", "violet"),
    "crashed": ("🔴", "Crashed", "red"),
    "build_failed": ("🔴", "Build failed", "red"),
    "stopped": ("⚪", "Stopped", "gray"),
    "deleting": ("🗑️", "Deleting", "gray"),
}


# Context and user -----------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _open_context(_fingerprint: tuple[tuple[str, str], ...]) -> Context:
    return open_context()


def get_ctx() -> Context:
    """The backend context for the settings in the environment (one per distinct settings).

    The supervisor passes settings as STCLOUD_* variables; keying the cache on them means a
    process (or a test) whose environment changes never reads another database.
    """
    fingerprint = tuple(sorted((k, v) for k, v in os.environ.items()
                               if k.startswith("STCLOUD_") or k == "DATABASE_URL"))
    return _open_context(fingerprint)


def signed_in_user(ctx: Context) -> Any | None:
    """The signed-in user (a backend User), or None when nobody is signed in."""
    username = st.session_state.get("username")
    if not st.session_state.get("authentication_status") or not username:
        return None
    try:
        return auth.get_user(ctx, username)
    except NotFound:
        return None


def page_context() -> tuple[Context, Any]:
    """(ctx, user) for a page; stops the page when nobody is signed in."""
    ctx = get_ctx()
    user = signed_in_user(ctx)
    if user is None:
        st.warning("Sign in to see this page.")
        st.stop()
    return ctx, user


def request_sign_out() -> None:
    """Button callback: Home.py signs out at the top of the next run (and drops the cookie)."""
    st.session_state[SIGN_OUT_KEY] = True


# Text -----------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>|~$:])")
_MD_BLOCK_START = re.compile(r"^(\s*)([#>+-])")
_MD_LIST_NUMBER = re.compile(r"^(\s*\d+)\.")


def md(text: object) -> str:
    """Escape text that comes from people or logs before putting it in Markdown: emphasis,
    links, HTML, LaTeX and Streamlit's :directives:, and block syntax at the start."""
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text))
    escaped = _MD_BLOCK_START.sub(r"\1\\\2", escaped)
    return _MD_LIST_NUMBER.sub(r"\1\\.", escaped)


def last_lines(text: str, n: int) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-n:])


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def relative_time(when: datetime, now: datetime | None = None) -> str:
    """'just now', '3 minutes ago', '2 days ago' (or a date, past two weeks)."""
    now = _aware(now or datetime.now(UTC))
    seconds = (now - _aware(when)).total_seconds()
    if seconds < 10:
        return "just now"
    for limit, unit, size in ((60, "second", 1), (3600, "minute", 60), (86400, "hour", 3600),
                              (14 * 86400, "day", 86400)):
        if seconds < limit:
            n = int(seconds // size)
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return f"on {_aware(when).date().isoformat()}"


def exact_time(when: datetime) -> str:
    """The time in the browser's time zone (UTC when the browser did not say)."""
    tz: Any = UTC
    try:
        if st.context.timezone:
            tz = ZoneInfo(st.context.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    return _aware(when).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


# Status ---------------------------------------------------------------------------------
def status_label(state: str) -> str:
    icon, label, _ = _STATUS.get(state, ("❔", state, "gray"))
    if state in OVEN_STATES:
        label = f"{label} · {state}"
    return f"{icon} {label}"


def status_badge(app: Any, where: Any = st) -> None:
    """The app's state as a coloured badge; its reason in the tooltip (failures spell it out)."""
    _, _, colour = _STATUS.get(app.state, ("", "", "gray"))
    where.badge(status_label(app.state), color=colour, help=app.state_reason or None)
    if app.state in FAILED_STATES and app.state_reason:
        where.caption(f":red[{md(app.state_reason)}]")


def is_busy(app: Any) -> bool:
    return app.state in BUSY_STATES


# Live refresh ---------------------------------------------------------------------------
def live(key: str, body: Callable[[], bool]) -> None:
    """Render `body` in a fragment that reruns every REFRESH_SECONDS while it returns True,
    and every IDLE_REFRESH_SECONDS otherwise.

    `body` says whether something is still changing (an app in the oven or being deleted).
    A fragment's `run_every` is fixed when the page runs, so when that answer changes the
    whole page reruns once to change the timer.
    """
    flag = f"_live_{key}"

    def run() -> None:
        busy = bool(body())
        if busy != st.session_state.get(flag, False):
            st.session_state[flag] = busy
            st.rerun(scope="app")

    busy = st.session_state.get(flag, False)
    interval = REFRESH_SECONDS if busy else IDLE_REFRESH_SECONDS
    st.fragment(run, run_every=interval, key=key)()


# Messages that survive the rerun a button causes ---------------------------------------
def flash(message: str, kind: str = "error") -> None:
    st.session_state.setdefault(FLASH_KEY, []).append((kind, message))


def show_flash() -> None:
    for kind, message in st.session_state.pop(FLASH_KEY, []):
        if kind == "toast":
            st.toast(message)
        else:
            getattr(st, kind)(message)


# App actions (button callbacks) ---------------------------------------------------------
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


def ask_delete(app_id: int) -> None:
    """Open the delete confirmation (rendered by `delete_dialog_if_asked` on the next run)."""
    st.session_state[CONFIRM_DELETE_KEY] = app_id


def _forget_delete() -> None:
    st.session_state.pop(CONFIRM_DELETE_KEY, None)


def delete_dialog_if_asked(ctx: Context, user: Any, after_delete: str | None = None) -> None:
    """Show the delete confirmation when a Delete button asked for it (call in the page body,
    outside fragments). `after_delete` is a page to go to once the app is deleted."""
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
        "Deleting stops the app for everyone using it, frees its URL and removes its files, "
        f"logs and settings from this server. Your repository ({md(app.repo_url)}) is not "
        "touched: you can deploy it again at any time.")
    left, right = st.columns(2)
    if left.button(f"Delete {app.subdomain}", type="primary", key="confirm_delete",
                   width="stretch"):
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
