"""Shared pieces of the dashboard: the backend context, the signed-in user, page names and
icons, status badges, times, live refresh, messages across reruns, the workspace switcher
and the app picker. The app actions (reboot, wake, delete, favorite) are in `_actions`.

The dashboard only records intent through `backend` (deploy, reboot, delete) and shows state
by re-reading it: the supervisor's reconcile loop does the work. The parts of a page that
change run in a fragment that rereads them every `REFRESH_SECONDS` while an app is in the
oven, and every `IDLE_REFRESH_SECONDS` otherwise (`live()`), so a page never reruns as a
whole just to refresh.

Layering (import-linter): this module and the pages import `backend` only.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st
from streamlit.errors import StreamlitAPIException

from backend import workspaces
from backend.accounts import auth
from backend.apps.listing import app_choices
from backend.apps.state import FAILED_STATES, OVEN_STATES
from backend.context import Context, open_context
from backend.errors import BackendError, NotFound
from backend.platform import setting_overrides

PRODUCT = "Streamlit Cloud (self-hosted)"
PAGE_ICON = "☁️"

# Page files, relative to Home.py (st.navigation, st.switch_page and st.page_link take these).
MY_APPS = "pages/dashboard/my_apps.py"
DEPLOY = "pages/dashboard/deploy.py"
APP = "pages/dashboard/app_details.py"
LOGS = "pages/dashboard/logs.py"
SETTINGS = "pages/dashboard/settings.py"
ANALYTICS = "pages/dashboard/analytics.py"
WORKSPACE = "pages/dashboard/workspace.py"
USERS = "pages/dashboard/users.py"
STATUS = "pages/dashboard/status.py"
ACCOUNT = "pages/dashboard/account.py"

# Icons, one per idea, used the same way on every page.
ICON = {"open": ":material/open_in_new:", "reboot": ":material/refresh:",
        "delete": ":material/delete:", "settings": ":material/settings:",
        "logs": ":material/article:", "analytics": ":material/bar_chart:",
        "details": ":material/info:", "deploy": ":material/rocket_launch:",
        "workspace": ":material/group:", "users": ":material/manage_accounts:",
        "status": ":material/monitor_heart:", "account": ":material/account_circle:",
        "docs": ":material/menu_book:", "support": ":material/help:",
        "sign_out": ":material/logout:", "download": ":material/download:",
        "save": ":material/save:", "error": ":material/error:"}
VIEW_ONLY = "👁 view-only"
VIEW_ONLY_HELP = ("View-only: you have the viewer role in this workspace. You can open its "
                  "apps (private ones too), favorite them and see their analytics; "
                  "deploying, rebooting, deleting, logs, settings and secrets need the "
                  "developer role. Ask one of the workspace's admins.")

REFRESH_SECONDS = 2.0  # while an app is in the oven or being deleted
IDLE_REFRESH_SECONDS = 30.0  # otherwise, so that a crash or sleep shows up by itself
BUSY_STATES = OVEN_STATES | {"deleting"}
SIGN_OUT_KEY = "_sign_out_requested"
WORKSPACE_KEY = "current_workspace"
APP_PICK_KEY = "app_pick"
RERUN_APP_KEY = "_rerun_app"  # set by a callback in a fragment to rerun the whole page
FLASH_KEY = "_flash"

# - streamlit-authenticator's cookie manager renders invisible components keyed init, set
#   and delete (extra_streamlit_components.CookieManager); each would leave a blank line.
# - the "︙" menus of the app list (popovers keyed menu_<id>) show no expand chevron, and
#   their entries (buttons, links) share one height and gap.
# - a failure's short reason in the app list (reason_<id>) stays on one line.
# - the workspace select shows no red focus ring once chosen.
GLOBAL_CSS = """<style>
.st-key-init, .st-key-set, .st-key-delete { display: none; }
[class*="st-key-menu_"] [data-testid="stPopoverButton"] div[aria-hidden="true"] {
  display: none;
}
.st-key-current_workspace [data-baseweb="select"] > div:focus-within,
.st-key-current_workspace .react-aria-ComboBox [role="group"][data-focus-within] {
  border-color: rgba(49, 51, 63, 0.2) !important;
  box-shadow: none !important;
}
[class*="st-key-reason_"] p {
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
[data-testid="stPopoverBody"] [data-testid="stVerticalBlock"] { gap: 0.25rem; }
[data-testid="stPopoverBody"] [data-testid="stElementContainer"]:has(> [data-testid="stPageLink"]) {
  margin: 0;
}
[data-testid="stPopoverBody"] [data-testid="stPageLink"] a,
[data-testid="stPopoverBody"] [data-testid="stLinkButton"] a,
[data-testid="stPopoverBody"] [data-testid="stBaseButton-tertiary"] {
  padding: 0.25rem 0.5rem; margin: 0; min-height: 2rem; height: 2rem;
  box-sizing: border-box; display: flex; align-items: center; justify-content: flex-start;
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
    ctx = _open_context(fingerprint)
    setting_overrides.refresh(ctx)  # the settings changed live on the Server settings page
    return ctx


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


def time_caption(when: datetime | None, prefix: str = "", where: Any = st,
                 never: str = "never") -> None:
    """'<prefix>3 minutes ago' as a caption; hovering it shows the exact time (a title)."""
    if when is None:
        where.caption(never)
        return
    text = html.escape(f"{prefix}{relative_time(when)}")
    where.caption(f'<span title="{html.escape(exact_time(when))}">{text}</span>',
                  unsafe_allow_html=True)


# Status ---------------------------------------------------------------------------------
def status_label(state: str) -> str:
    icon, label, _ = _STATUS.get(state, ("❔", state, "gray"))
    if state in OVEN_STATES:
        label = f"{label} · {state}"
    return f"{icon} {label}"


_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+~-]+/)+([\w.@+~-]*)")
SHORT_REASON_CHARS = 80


def short_reason(reason: str | None, limit: int = SHORT_REASON_CHARS) -> str:
    """The first line of a state reason, each absolute path cut to its last part (the
    server's own folders mean nothing to the reader), at most `limit` characters."""
    first = next((line.strip() for line in (reason or "").splitlines() if line.strip()), "")
    first = _PATH.sub(lambda m: m.group(1) or "…", first)
    return first if len(first) <= limit else first[:limit - 1].rstrip() + "…"


def red_lines(text: str) -> str:
    """`text` in red Markdown, line by line: a `:red[...]` cannot span a blank line."""
    return "  \n".join(f":red[{md(line)}]" for line in text.splitlines() if line.strip())


def status_badge(app: Any, where: Any = st, *, detail: bool = True) -> None:
    """The app's state as a coloured badge, the short reason in its tooltip. A failure's
    reason below it: whole with `detail` (the app's own pages), else its short form on one
    line (cut with an ellipsis by GLOBAL_CSS, in the app list)."""
    _, _, colour = _STATUS.get(app.state, ("", "", "gray"))
    short = short_reason(app.state_reason)
    where.badge(status_label(app.state), color=colour, help=short or None)
    if app.state not in FAILED_STATES or not short:
        return
    if detail:
        where.caption(red_lines(app.state_reason))
    else:
        where.container(key=f"reason_{app.id}").caption(f":red[{md(short)}]", help=short)


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
        if st.session_state.pop(RERUN_APP_KEY, False):  # a callback asked for a dialog
            st.rerun(scope="app")
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


# Links ----------------------------------------------------------------------------------
def page_link(page: str, where: Any = st, **kw: Any) -> bool:
    """st.page_link, skipped (False) when `page` is not registered in st.navigation (the
    Users page for non-admins, a page another engineer has not registered yet)."""
    try:
        where.page_link(page, **kw)
    except StreamlitAPIException:
        return False
    return True


# Workspaces -----------------------------------------------------------------------------
def workspace_label(name: str, role: str) -> str:
    return f"{name} · {VIEW_ONLY}" if role == "viewer" else name


def workspace_switcher(ctx: Context, user: Any, where: Any = st) -> tuple[int, str, str] | None:
    """The workspace selectbox (top right of the dashboard): (id, name, role) of the chosen
    workspace; None when the user has none. The choice is kept for the session across pages
    and on the server for the user (`workspaces.remember_workspace`), so a reload, a new tab
    and the next sign-in start from it; the default is the user's personal workspace."""
    spaces = workspaces.list_workspaces(ctx, user)
    if not spaces:
        return None
    by_id = {w.id: (w.name, role) for w, role in spaces}
    remembered = workspaces.remembered_workspace(ctx, user)
    if st.session_state.get(WORKSPACE_KEY) not in by_id:
        personal = next((w.id for w, _ in spaces if w.name == user.username), None)
        with_role = next((w.id for w, r in spaces if r != "viewer"), spaces[0][0].id)
        st.session_state[WORKSPACE_KEY] = remembered if remembered in by_id else \
            personal or with_role
    viewer_only = any(role == "viewer" for _, role in spaces)
    help_text = ("Apps are grouped by the owner of their repository. " +
                 (VIEW_ONLY_HELP if viewer_only else ""))
    chosen = where.selectbox(
        "Workspace", list(by_id), key=WORKSPACE_KEY, persist_state="session",
        format_func=lambda i: workspace_label(*by_id[i]), help=help_text)
    if chosen != remembered:  # chosen here, or by a link (Analytics' ?app=)
        try:
            workspaces.remember_workspace(ctx, user, chosen)
        except BackendError:
            pass  # removed from it meanwhile: the next run offers the others
    name, role = by_id[chosen]
    return chosen, name, role


# Choosing an app (App, Logs and Settings pages) -----------------------------------------
def app_picker(ctx: Context, user: Any) -> int | None:
    """The app of `?app=<id>` or of the selector, kept in the URL so a page can be shared;
    None (with a way to deploy) when the user sees no app."""
    choices = app_choices(ctx, user)
    if not choices:
        st.info("You have no apps yet.")
        st.page_link(DEPLOY, label="Deploy an app", icon=ICON["deploy"])
        return None
    by_id = {c.id: c for c in choices}
    try:
        wanted: int | None = int(st.query_params.get("app", ""))
    except ValueError:
        wanted = None
    if wanted in by_id:
        st.session_state[APP_PICK_KEY] = wanted
    elif st.session_state.get(APP_PICK_KEY) not in by_id:
        st.session_state[APP_PICK_KEY] = choices[0].id

    def sync() -> None:
        st.query_params["app"] = str(st.session_state[APP_PICK_KEY])

    chosen = st.selectbox("App", list(by_id), key=APP_PICK_KEY, on_change=sync, width=480,
                          format_func=lambda i: f"{by_id[i].subdomain} · {by_id[i].workspace}"
                                                f" — {by_id[i].repo_url}")
    st.query_params["app"] = str(chosen)
    return chosen


def app_links(app: Any, where: Any = st, skip: str = "") -> None:
    """Links to the app's other pages (Details, Logs, Settings, Analytics) in one row."""
    links = [(APP, "Details", ICON["details"])]
    if app.can_manage:
        links += [(LOGS, "Logs", ICON["logs"]), (SETTINGS, "Settings", ICON["settings"])]
    links.append((ANALYTICS, "Analytics", ICON["analytics"]))
    row = where.container(horizontal=True, gap="medium")
    for page, label, icon in links:
        if page != skip:
            page_link(page, row, label=label, icon=icon, query_params={"app": str(app.id)})
