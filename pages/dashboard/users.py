"""Users (site admins): every account, create one, reset a password.

There is no self-registration: an admin creates each account, with a typed password or a
generated one, and the page shows that password once (it is not stored in the clear, so it
cannot be shown again) for the admin to hand over. Resetting works the same way.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.accounts import users
from backend.context import Context
from backend.errors import BackendError, ValidationError
from pages.dashboard import _ui as ui

ERRORS = "_users_errors"
SHOW_ONCE = "_users_password_once"
CREATE_KEYS = ("new_username", "new_name", "new_email", "new_password", "new_is_admin")
ss = st.session_state


def field_error(form: str, field: str) -> None:
    message = ss.get(ERRORS, {}).get((form, field))
    if message:
        st.error(message, icon=ui.ICON["error"])


def _fail(form: str, e: BackendError) -> None:
    field = e.field if isinstance(e, ValidationError) else "form"
    ss[ERRORS] = {(form, field): str(e)}


def create(ctx: Context, admin: Any) -> None:
    ss[ERRORS] = {}
    try:
        user, password = users.create_account(
            ctx, admin, ss.get("new_username", ""), email=ss.get("new_email", ""),
            name=ss.get("new_name", ""), password=ss.get("new_password", ""),
            is_admin=bool(ss.get("new_is_admin")))
    except BackendError as e:
        _fail("create", e)
        return
    ss[SHOW_ONCE] = (f"Created **{ui.md(user.username)}**", user.username, password)
    for key in CREATE_KEYS:
        ss[key] = False if key == "new_is_admin" else ""


def reset(ctx: Context, admin: Any) -> None:
    ss[ERRORS] = {}
    who = ss.get("reset_username") or ""
    if not who:
        ss[ERRORS] = {("reset", "username"): "Choose the user whose password to reset."}
        return
    try:
        password = users.reset_account_password(ctx, admin, who, ss.get("reset_password", ""))
    except BackendError as e:
        _fail("reset", e)
        return
    ss[SHOW_ONCE] = (f"New password for **{ui.md(who)}**", who, password)
    ss["reset_password"] = ""


def password_once() -> None:
    shown = ss.pop(SHOW_ONCE, None)
    if shown is None:
        return
    title, username, password = shown
    with st.container(border=True, key="password_once"):
        st.success(f"{title}. Hand over this password now: it is shown only once.")
        st.code(f"username: {username}\npassword: {password}", language=None)
        st.caption("They can change it on their Account page after signing in.")


ctx, admin = ui.page_context()
st.title("Users")
if not admin.is_admin:
    st.warning("Only site admins manage user accounts.")
    st.stop()
password_once()
accounts = users.list_accounts(ctx, admin)
create_col, reset_col = st.columns(2, gap="large")
with create_col, st.container(border=True):
    st.subheader("Create a user")
    st.text_input("Username", key="new_username", help="Letters, digits, '-' and '_'.")
    field_error("create", "username")
    st.text_input("Full name", key="new_name")
    st.text_input("Email", key="new_email", help="Used for notifications and for invitations "
                  "to private apps.")
    field_error("create", "email")
    st.text_input("Password", key="new_password", type="password",
                  help="Leave empty to generate one (shown once).")
    field_error("create", "password")
    st.checkbox("Site admin", key="new_is_admin",
                help="Site admins are admin of every workspace and manage users.")
    field_error("create", "form")
    st.button("Create user", type="primary", key="create_user", on_click=create,
              args=(ctx, admin), icon=":material/person_add:")
with reset_col, st.container(border=True):
    st.subheader("Reset a password")
    others = [u.username for u in accounts if u.id != admin.id]
    st.selectbox("User", others, key="reset_username", index=None,
                 placeholder="Choose a user")
    field_error("reset", "username")
    st.text_input("New password", key="reset_password", type="password",
                  help="Leave empty to generate one (shown once).")
    field_error("reset", "password")
    field_error("reset", "form")
    st.button("Reset password", key="reset_user", on_click=reset, args=(ctx, admin),
              icon=":material/lock_reset:", disabled=not others)

st.subheader(f"Accounts ({len(accounts)})")
st.dataframe([{"Username": u.username, "Name": u.name, "Email": u.email,
               "Site admin": "yes" if u.is_admin else "",
               "Created": ui.exact_time(u.created_at)} for u in accounts],
             hide_index=True, width="stretch")
