"""Account: who is signed in, change password (stored by backend.auth), links to the
documentation, support and status, sign out."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend import auth
from backend.context import Context
from backend.errors import BackendError, ValidationError
from pages.dashboard import _ui as ui

ERRORS = "_password_errors"
DONE = "_password_changed"
KEYS = ("pw_current", "pw_new", "pw_repeat")
ss = st.session_state


def change_password(ctx: Context, user: Any) -> None:
    ss[ERRORS] = {}
    current, new, repeat = (ss.get(k, "") for k in KEYS)
    if new != repeat:
        ss[ERRORS] = {"repeat": "The two new passwords differ; type the same one twice."}
        return
    try:
        auth.set_password(ctx, user, user.username, new, current_password=current)
    except ValidationError as e:
        field = {"current_password": "current", "password": "new"}.get(e.field, "form")
        ss[ERRORS] = {field: str(e)}
    except BackendError as e:
        ss[ERRORS] = {"form": str(e)}
    else:
        for key in KEYS:
            ss[key] = ""
        ss[DONE] = True


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
    st.success("Your password is changed. Use the new one the next time you sign in.")

st.subheader("Help")
st.page_link(ctx.settings.docs_url, label="Documentation", icon=ui.ICON["docs"])
if ctx.settings.support_url:
    st.page_link(ctx.settings.support_url, label="Contact support", icon=ui.ICON["support"])
ui.page_link(ui.STATUS, label="Service status", icon=ui.ICON["status"])

st.divider()
st.button("Sign out", key="account_sign_out", on_click=ui.request_sign_out,
          icon=ui.ICON["sign_out"])
