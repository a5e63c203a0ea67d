"""Account: who is signed in, change password (stored by backend.accounts.auth), the GitHub
connection (backend.github.accounts: a pasted token or the OAuth app), personal API tokens
(backend.accounts.api_tokens; a new token's plaintext is shown once), links to the documentation,
support and status, sign out."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.accounts import api_tokens, auth
from backend.context import Context
from backend.errors import BackendError, ValidationError
from backend.github import accounts as github
from pages.dashboard import _ui as ui

ERRORS = "_password_errors"
DONE = "_password_changed"
KEYS = ("pw_current", "pw_new", "pw_repeat")
SESSION_STARTED = "_session_started_at"  # Home.py: when this session was established
COOKIE_PENDING = "_sign_in_cookie_pending"  # Home.py: (re)write the sign-in cookie
COOKIE_SET = "set"  # streamlit-authenticator's cookie-setting component (key "set")
GH_ERROR = "_github_error"
GH_DONE = "_github_done"
TOKEN_ERROR = "_api_token_error"
NEW_TOKEN = "_api_token_new"
ss = st.session_state


def change_password(ctx: Context, user: Any) -> None:
    ss[ERRORS] = {}
    current, new, repeat = (ss.get(k, "") for k in KEYS)
    if new != repeat:
        ss[ERRORS] = {"repeat": "The two new passwords differ; type the same one twice."}
        return
    try:
        epoch = auth.set_password(ctx, user, user.username, new, current_password=current)
    except ValidationError as e:
        field = {"current_password": "current", "password": "new"}.get(e.field, "form")
        ss[ERRORS] = {field: str(e)}
    except BackendError as e:
        ss[ERRORS] = {"form": str(e)}
    else:
        for key in KEYS:
            ss[key] = ""
        ss[DONE] = True
        # Other sessions of this user are signed out; this one stays, with a new cookie
        # (the old one predates the change and would be refused on the next visit).
        ss[SESSION_STARTED] = epoch.timestamp()
        ss[COOKIE_PENDING] = True
        ss.pop(COOKIE_SET, None)


def connect_github(ctx: Context, user: Any) -> None:
    ss.pop(GH_ERROR, None)
    try:
        status = github.connect_token(ctx, user, ss.get("gh_token", ""))
    except BackendError as e:
        ss[GH_ERROR] = str(e)
    else:
        ss["gh_token"] = ""
        ss[GH_DONE] = f"GitHub connected as @{status.login}."


def disconnect_github(ctx: Context, user: Any) -> None:
    ss.pop(GH_ERROR, None)
    try:
        github.disconnect(ctx, user)
    except BackendError as e:
        ss[GH_ERROR] = str(e)
    else:
        ss[GH_DONE] = "GitHub disconnected. Apps already deployed keep updating."


def create_api_token(ctx: Context, user: Any) -> None:
    ss.pop(TOKEN_ERROR, None)
    try:
        row, plaintext = api_tokens.create_token(ctx, user, ss.get("api_token_name", ""),
                                                 ss.get("api_token_scopes") or [])
    except BackendError as e:
        ss[TOKEN_ERROR] = str(e)
    else:
        ss[NEW_TOKEN] = (row.name, plaintext)
        ss["api_token_name"] = ""


def revoke_api_token(ctx: Context, user: Any, token_id: int) -> None:
    ss.pop(TOKEN_ERROR, None)
    try:
        api_tokens.revoke_token(ctx, user, token_id)
    except BackendError as e:
        ss[TOKEN_ERROR] = str(e)


def github_section(ctx: Context, user: Any) -> None:
    st.subheader("GitHub")
    if st.query_params.get("github") == "connected":  # set by the OAuth callback
        st.success("GitHub is connected.")
    if st.query_params.get("github_error"):
        st.error(st.query_params["github_error"], icon=ui.ICON["error"])
    done = ss.pop(GH_DONE, None)
    if done:
        st.success(done)
    try:
        status = github.github_status(ctx, user)
    except BackendError as e:
        st.error(str(e), icon=ui.ICON["error"])
        status = None
    if status is None:
        st.markdown("Not connected. Connect GitHub to deploy from your repositories with a "
                    "picker, and to get the workspaces of your GitHub organisations.")
    else:
        st.markdown(f"Connected as **@{ui.md(status.login)}** "
                    f"({ui.md(status.token_kind)} token, {ui.md(status.base_url)})")
        if status.message:
            st.warning(status.message)
        for note in status.scopes:
            mark = {True: "✅", False: "❌", None: "❔"}[note.granted]
            st.markdown(f"{mark} `{note.scope}`: {ui.md(note.why)}")
            if note.granted is False:
                st.caption(f"Without it: {ui.md(note.without)}")
        if any(n.granted is None for n in status.scopes):
            st.caption("A fine-grained token: GitHub does not report its permissions.")
        st.button("Disconnect", key="gh_disconnect", on_click=disconnect_github,
                  args=(ctx, user), icon=":material/link_off:")
    st.text_input("GitHub personal access token", type="password", key="gh_token",
                  autocomplete="off",
                  help="A classic token with the scopes repo, admin:repo_hook and read:org "
                       "(or a fine-grained token). It is stored encrypted.")
    message = ss.get(GH_ERROR)
    if message:
        st.error(message, icon=ui.ICON["error"])
    st.button("Connect" if status is None else "Connect another token", key="gh_connect",
              on_click=connect_github, args=(ctx, user), icon=":material/link:")
    if github.oauth_configured(ctx):
        try:
            url = github.oauth_authorize_url(ctx, github.oauth_state(ctx, user))
        except BackendError as e:
            st.caption(ui.md(str(e)))
        else:
            st.link_button("Sign in with GitHub", url, icon=":material/login:")


def api_tokens_section(ctx: Context, user: Any) -> None:
    st.subheader("API tokens")
    st.caption("Personal tokens for the REST API (/api/v1) and the command line. A scope "
               "implies the ones below it: admin ⊇ deploy ⊇ read.")
    new = ss.pop(NEW_TOKEN, None)
    if new:
        st.success(f"Token '{new[0]}' created.")
        st.warning("Copy it now: it will not be shown again.")
        st.code(new[1], language=None)
    tokens = api_tokens.list_tokens(ctx, user)
    if not tokens:
        st.caption("You have no API tokens.")
    for token in tokens:
        row = st.container(horizontal=True, vertical_alignment="center", border=True)
        revoked = " · **revoked**" if token.revoked else ""
        row.markdown(f"**{ui.md(token.name)}** · scopes {ui.md(token.scopes)}{revoked}")
        ui.time_caption(token.created_at, prefix="created ", where=row)
        ui.time_caption(token.last_used_at, prefix="last used ", where=row,
                        never="never used")
        if not token.revoked:
            row.button("Revoke", key=f"api_token_revoke_{token.id}",
                       on_click=revoke_api_token, args=(ctx, user, token.id),
                       icon=ui.ICON["delete"])
    with st.form("create_api_token", border=True):
        st.text_input("Token name", key="api_token_name", placeholder="laptop, ci…")
        st.multiselect("Scopes", list(api_tokens.SCOPES), default=["read"],
                       key="api_token_scopes")
        message = ss.get(TOKEN_ERROR)
        if message:
            st.error(message, icon=ui.ICON["error"])
        st.form_submit_button("Create token", on_click=create_api_token, args=(ctx, user))


def field_error(field: str) -> None:
    message = ss.get(ERRORS, {}).get(field)
    if message:
        st.error(message, icon=":material/error:")


st.set_page_config(layout="centered")
ctx, user = ui.page_context()
st.title("Account")
role = "site admin" if user.is_admin else "member"
st.markdown(f"Signed in as **{ui.md(user.name or user.username)}** "
            f"(@{ui.md(user.username)}, {role})")
if user.username == ctx.settings.admin_username and auth.initial_password_file(ctx).exists():
    st.warning("You are still using the password generated at the first start. Change it "
               "now: the server deletes its copy of it when you do.")

with st.form("change_password", border=True):
    st.subheader("Change password")
    st.text_input("Current password", type="password", key="pw_current",
                  autocomplete="current-password")
    field_error("current")
    st.text_input("New password", type="password", key="pw_new",
                  autocomplete="new-password", help="At least 8 characters.")
    field_error("new")
    st.text_input("Repeat the new password", type="password", key="pw_repeat",
                  autocomplete="new-password")
    field_error("repeat")
    field_error("form")
    st.form_submit_button("Change password", type="primary", on_click=change_password,
                          args=(ctx, user))
if ss.pop(DONE, False):
    st.success("Your password is changed. Use the new one the next time you sign in; "
               "your other browsers and devices are signed out.")

github_section(ctx, user)
api_tokens_section(ctx, user)

st.subheader("Help")
st.page_link(ctx.settings.docs_url, label="Documentation", icon=ui.ICON["docs"])
if ctx.settings.support_url:
    st.page_link(ctx.settings.support_url, label="Contact support", icon=ui.ICON["support"])
ui.page_link(ui.STATUS, label="Service status", icon=ui.ICON["status"])

st.divider()
st.button("Sign out", key="account_sign_out", on_click=ui.request_sign_out,
          icon=ui.ICON["sign_out"])
