"""The dashboard: a Streamlit app (dogfooding) to deploy, list and manage apps.

The supervisor runs it as `streamlit run Home.py` from the project root (so
`.streamlit/config.toml` applies) with the settings in STCLOUD_* variables, behind the proxy.

Sign-in is streamlit-authenticator 0.4.2 over our own accounts (`backend.accounts.auth`): its
`login()` form, its signed cookie (`stcloud_dashboard`, key from `backend.accounts.keys`) and its
session_state keys (`authentication_status`, `username`). How this file uses it:
- `st.navigation` is called first, before the authenticator renders its cookie component
  and sleeps (0.7 s) in `login()`: an early rerun from that component must find the page
  already chosen, or a deep link such as /deploy falls back to the default page. Until
  someone is signed in the navigation is hidden and no page runs: only the sign-in form.
- The run in which someone signs in reruns, so the navigation appears. The cookie is
  written by a component (key "set") that the browser must load; a rerun can remove it
  first, so it is rendered again on each run until its value says the cookie is stored.
- Signing out happens at the top of a run (the buttons only set a flag); that run shows the
  sign-in form, with the cookie-deleting component of `logout()` still on the page.
- Session epoch (backend.accounts.auth.session_is_current): each session keeps when it was
  established (`SESSION_STARTED`: the form sign-in's time, set when the password checks
  out, or the sign-in cookie's issue time, its `exp_date` minus its lifetime, set before
  `login()` reads the cookie). A run whose session predates the user's last
  password change signs out as above, saying why; the Account page moves its own session
  to the new epoch and asks for a new cookie.
"""

from __future__ import annotations

import time

import streamlit as st
from streamlit_authenticator import Authenticate, LoginError

from backend.accounts import auth, keys
from backend.accounts import identity as _identity
from backend.errors import BackendError
from backend.github import accounts as github
from backend.platform import inbox
from backend.platform import supervisor_report as platform
from backend.signin_target import QUERY_PARAM as SIGN_IN_FOR
from backend.signin_target import sign_in_target
from pages.dashboard import _ui as ui

# Panel mode (Manage app overlay) ---------------------------------------------------------
# Inside a hosted app the proxy serves this script under /__stcloud/panel/ (a second
# Streamlit process, `server.baseUrlPath`) with a signed identity header: then the Manage
# app panel runs instead of the dashboard. Owner: supervisor/proxy (pages/dashboard/panel.py).
if _identity.is_panel_request(st.context.headers, st.get_option("server.baseUrlPath")):
    st.navigation([st.Page("pages/dashboard/panel.py", title="Manage app", default=True)],
                  position="hidden").run()
    st.stop()
# End of panel mode -----------------------------------------------------------------------

st.set_page_config(page_title=ui.PRODUCT, page_icon=ui.PAGE_ICON, layout="wide")
st.html(ui.GLOBAL_CSS)

INBOX = "pages/dashboard/inbox.py"
PAGES = {
    "Apps": [
        st.Page(ui.MY_APPS, title="My apps", icon=":material/apps:", default=True),
        st.Page(ui.DEPLOY, title="Deploy an app", icon=ui.ICON["deploy"], url_path="deploy"),
        st.Page(ui.APP, title="App details", icon=":material/monitoring:", url_path="app"),
        st.Page(ui.LOGS, title="Logs", icon=ui.ICON["logs"], url_path="logs"),
        st.Page(ui.SETTINGS, title="App settings", icon=ui.ICON["settings"],
                url_path="settings"),
        st.Page(ui.ANALYTICS, title="Analytics", icon=ui.ICON["analytics"],
                url_path="analytics"),
    ],
    "Team": [
        st.Page(ui.WORKSPACE, title="Workspace", icon=ui.ICON["workspace"],
                url_path="workspace"),
    ],
    "Server": [
        st.Page(ui.STATUS, title="Status", icon=ui.ICON["status"], url_path="status"),
    ],
    "You": [
        st.Page(INBOX, title="Notifications", icon=":material/notifications:",
                url_path="notifications"),
        st.Page(ui.ACCOUNT, title="Account", icon=ui.ICON["account"], url_path="account"),
    ],
}
ADMIN_PAGES = {  # registered for site admins only (and before sign-in, for deep links)
    "Server": [st.Page(ui.USERS, title="Users", icon=ui.ICON["users"], url_path="users"),
               st.Page("pages/dashboard/admin_settings.py", title="Server settings",
                       icon=":material/tune:", url_path="server-settings")],
}
SIGN_IN_FIELDS = {"Form name": "Sign in", "Username": "Username", "Password": "Password",
                  "Login": "Sign in"}
COOKIE_PENDING = "_sign_in_cookie_pending"  # also set by pages/dashboard/account.py
SESSION_STARTED = "_session_started_at"  # epoch seconds; also set by account.py
COOKIE_DAYS = 7
NOTICE_KEY = "_sign_in_notice"  # why the sign-in form shows: kept until someone signs in
PASSWORD_CHANGED = "Your password was changed; sign in again."
ss = st.session_state

ctx = ui.get_ctx()
signing_out = bool(ss.pop(ui.SIGN_OUT_KEY, False))
known_user = ui.signed_in_user(ctx) if ss.get("authentication_status") else None
# A session with no start recorded was signed in before this check existed: from now.
stale = known_user is not None and not auth.session_is_current(
    known_user, ss.setdefault(SESSION_STARTED, time.time()))
signed_in_before = known_user is not None and not signing_out and not stale
if known_user is None or known_user.is_admin:
    for section, extra in ADMIN_PAGES.items():
        PAGES[section] = PAGES[section] + extra
page = st.navigation(PAGES, position="sidebar" if signed_in_before else "hidden")

authenticator = Authenticate(credentials=auth.authenticator_credentials(ctx),
                             cookie_name="stcloud_dashboard",
                             cookie_key=keys.dashboard_cookie_key(ctx),
                             cookie_expiry_days=COOKIE_DAYS)


def cookie_issued_at() -> float | None:
    """When the sign-in cookie the browser sent was written (epoch seconds), or None when
    there is none the authenticator would sign in with (none, invalid, expired, or after a
    sign-out in this session). Its payload is {username, exp_date}."""
    token = authenticator.cookie_controller.get_cookie()  # reads st.context.cookies only
    if not isinstance(token, dict):
        return None
    try:
        expires = float(token["exp_date"])
    except (KeyError, TypeError, ValueError):
        return None
    return expires - COOKIE_DAYS * 86400 if expires > time.time() else None


def limit_password_checks() -> None:
    """The form's password check goes through `backend.accounts.auth.authenticate`, which applies
    the sign-in limiter (failures per username and client, in the database)."""
    address = st.context.ip_address  # None on localhost (a mock under AppTest)
    client = auth.client_of(dict(st.context.headers),
                            address if isinstance(address, str) else "")
    model = authenticator.authentication_controller.authentication_model

    def check_credentials(username: str, password: str) -> bool:
        if username not in model.credentials["usernames"]:
            return False
        if auth.authenticate(ctx, username, password, client) is None:
            return False
        ss[SESSION_STARTED] = time.time()  # a form sign-in starts a session now
        return True

    model.check_credentials = check_credentials


def target_notice() -> None:
    """Sent here from an app (the proxy's `?signin_for=<subdomain>`): which app, whether it is
    private (from the database), and that signing in goes back to it."""
    target = sign_in_target(ctx, st.query_params.get(SIGN_IN_FOR))
    if target is None:
        return
    if target.private:
        st.warning(f"**{ui.md(target.subdomain)}** is a private app: sign in with an account "
                   "that may view it. You go back to the app once you are signed in.",
                   icon=":material/lock:")
    else:
        st.info(f"Sign in to continue to **{ui.md(target.subdomain)}**. You go back to the "
                "app once you are signed in.", icon=":material/login:")


def sign_in(notice: str) -> None:
    _, middle, _ = st.columns([1, 1.4, 1])
    with middle:
        st.title(f"{ui.PAGE_ICON} {ui.PRODUCT}")
        st.caption("Deploy, manage and share Streamlit apps from your git repositories.")
        if notice:
            ss[NOTICE_KEY] = notice  # the cookie components' reruns must not drop it
        if ss.get(NOTICE_KEY):
            st.info(ss[NOTICE_KEY], icon=":material/logout:")
        target_notice()
        limit_password_checks()
        # Set before login(): the rest of this run may not happen (the cookie component's
        # first value reruns the script as soon as anything is drawn), and a session whose
        # start is unknown counts from now, which would let a cookie from before a password
        # change through. login() signs in with exactly this cookie, or shows the form.
        issued = cookie_issued_at()
        if issued is not None:
            ss[SESSION_STARTED] = issued
        try:
            try:
                authenticator.login(location="main", fields=SIGN_IN_FIELDS,
                                    key="sign_in_form")
            except LoginError:
                # A sign-in cookie for an account that no longer exists: ignore the cookie.
                ss["logout"] = True
                authenticator.login(location="main", fields=SIGN_IN_FIELDS,
                                    key="sign_in_form")
        except auth.SignInThrottled as e:
            st.error(str(e))
        if ss.get("authentication_status") is False:
            st.error("Wrong username or password. Check both and try again; if you forgot "
                     "your password, ask an admin to reset it.")
        elif auth.initial_password_file(ctx).exists():
            # Where the file is stays with the operator (the console at start): visitors
            # learn nothing about the server's files.
            st.caption("First start? The operator who started the server has the first "
                       "admin's credentials.")
        ui.page_link(ui.STATUS, label="Service status", icon=ui.ICON["status"])


notice = ""
if ss.get("authentication_status"):
    if signing_out:
        authenticator.logout(location="unrendered")
        notice = "You are signed out."
    elif ui.signed_in_user(ctx) is None:
        authenticator.logout(location="unrendered")
        notice = "Your account no longer exists. Ask an admin of this server for a new one."
    elif stale:
        authenticator.logout(location="unrendered")
        notice = PASSWORD_CHANGED
    if notice:
        ss.pop(COOKIE_PENDING, None)

if not ss.get("authentication_status") and page.url_path == "status" and \
        cookie_issued_at() is None:
    page.run()  # the public status page: a summary, for whoever has no sign-in cookie
    st.stop()
if not ss.get("authentication_status"):
    sign_in(notice)
    if ss.get("authentication_status"):  # signed in just now: with the form or a cookie
        ss[COOKIE_PENDING] = True
        ss.pop(NOTICE_KEY, None)
        st.query_params.pop(SIGN_IN_FOR, None)
user = ui.signed_in_user(ctx) if ss.get("authentication_status") else None
if user is None:
    st.stop()
if not signed_in_before:
    # A cookie from before a password change: the next run signs out (stale), saying why.
    if auth.session_is_current(user, ss[SESSION_STARTED]):
        try:  # GitHub workspaces and roles follow GitHub on every sign-in (cached, rate-aware)
            github.refresh_user(ctx, user)
        except BackendError as e:
            ss["_github_refresh_error"] = str(e)
    st.rerun()  # signed in during this run (form or cookie): show the navigation

if ss.get(COOKIE_PENDING):
    if ss.get("set") is True:  # the browser ran the cookie component and stored the cookie
        ss.pop(COOKIE_PENDING)
    else:
        authenticator.cookie_controller.set_cookie()

with st.sidebar:
    if ss.get("_github_refresh_error"):
        st.warning("GitHub: " + ss.pop("_github_refresh_error"), icon=":material/sync_problem:")
    admin = " · site admin" if user.is_admin else ""
    st.markdown(f"Signed in as **{ui.md(user.name or user.username)}**  \n"
                f"@{ui.md(user.username)}{admin}")
    unread = inbox.unread_count(ctx, user)
    st.page_link(INBOX, label=f"{unread} unread notification{'s' if unread != 1 else ''}"
                 if unread else "Notifications",
                 icon=":material/notifications_active:" if unread else
                 ":material/notifications:")
    if not platform.read_platform(ctx).supervisor_alive:
        st.warning("The supervisor is not running, so deploys, reboots and deletes wait "
                   "until it is back. An operator starts it with `python -m supervisor`.",
                   icon=":material/warning:")
    st.page_link(ctx.settings.docs_url, label="Documentation", icon=":material/menu_book:")
    if ctx.settings.support_url:
        st.page_link(ctx.settings.support_url, label="Support", icon=":material/help:")
    st.button("Sign out", key="sidebar_sign_out", on_click=ui.request_sign_out,
              icon=":material/logout:")

page.run()
