"""Workspace: who belongs to the current workspace (switcher top right) and with which role.

Every member sees the list; admins of the workspace (and site admins) add people by
username or email, change roles and remove members. The backend keeps at least one admin
per workspace and says so when a change would remove the last one.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend import workspaces
from backend.context import Context
from backend.errors import BackendError
from pages.dashboard import _ui as ui

ROLES = ("viewer", "developer", "admin")
ROLE_HELP = {"viewer": "opens the apps (private ones too), favorites them, sees analytics",
             "developer": "also deploys, reboots, deletes, sees logs, changes settings and "
                          "secrets",
             "admin": "also manages the members"}
MESSAGE = "_members_message"
ss = st.session_state


def act(action: Any, success: Any) -> None:
    """Run a member change (button callback); `success` is a text or makes one."""
    try:
        action()
    except BackendError as e:
        ss[MESSAGE] = ("error", str(e))
    else:
        ss[MESSAGE] = ("success", success() if callable(success) else success)


def show_message() -> None:
    kind, text = ss.pop(MESSAGE, ("", ""))
    if kind:
        getattr(st, kind)(text)


def add_form(ctx: Context, user: Any, ws_id: int) -> None:
    def add() -> None:
        who, role = ss.get("member_who", ""), ss.get("member_role", "developer")
        act(lambda: workspaces.set_member(ctx, user, ws_id, who, role),
            f"Added {who.strip()} as {role}.")
        if ss.get(MESSAGE, ("",))[0] == "success":
            ss["member_who"] = ""

    with st.form("add_member", border=True):
        st.markdown("**Add a member**")
        who, role, submit = st.columns([3, 1.4, 1], vertical_alignment="bottom")
        who.text_input("Username or email", key="member_who",
                       placeholder="alice or alice@example.com")
        role.selectbox("Role", ROLES, index=1, key="member_role")
        submit.form_submit_button("Add", icon=":material/person_add:", width="stretch",
                                  on_click=add)
        st.caption("The person needs an account on this server first (site admins create "
                   "them on the Users page).")


def member_rows(ctx: Context, user: Any, ws_id: int, is_admin: bool) -> None:
    members = workspaces.list_members(ctx, user, ws_id)
    st.markdown(f"**Members** ({len(members)})")
    for member, role in members:
        with st.container(border=True, key=f"member_{member.username}"):
            who, role_col, save, remove = st.columns([3, 1.6, 0.9, 0.9],
                                                     vertical_alignment="center")
            you = " (you)" if member.id == user.id else ""
            who.markdown(f"**{ui.md(member.name or member.username)}**{you}")
            who.caption(f"@{ui.md(member.username)}"
                        + (f" · {ui.md(member.email)}" if member.email else ""))
            if not is_admin:
                role_col.markdown(f"{role}" + (f" · {ui.VIEW_ONLY}" if role == "viewer"
                                              else ""))
                continue
            key = f"role_{member.username}"
            ss.setdefault(key, role)
            role_col.selectbox("Role", ROLES, key=key, label_visibility="collapsed")
            save.button("Save", key=f"save_{member.username}", icon=ui.ICON["save"],
                        disabled=ss[key] == role, on_click=act,
                        args=(lambda m=member.username, k=key: workspaces.set_member(
                            ctx, user, ws_id, m, ss[k]),
                            lambda m=member.username, k=key: f"{m} is now {ss[k]}."))
            remove.button("Remove", key=f"remove_{member.username}",
                          icon=":material/person_remove:", on_click=act,
                          args=(lambda m=member.username: workspaces.remove_member(
                              ctx, user, ws_id, m), f"Removed {member.username}."))


ctx, user = ui.page_context()
title, switch = st.columns([3.2, 2.8], vertical_alignment="bottom")
title.title("Workspace")
with switch:
    current = ui.workspace_switcher(ctx, user)
if current is None:
    st.info("You are in no workspace yet. Deploying an app creates the workspace of its "
            "repository's owner, with you as its admin.")
    st.stop()
ws_id, name, role = current
admin = role == "admin"
st.caption(f"Workspace **{ui.md(name)}** groups the apps of repositories owned by "
           f"{ui.md(name)}. You are **{role}** here: " + ROLE_HELP[role] + ".")
st.markdown("\n".join(f"- **{r}**: {ROLE_HELP[r]}" for r in ROLES))
show_message()
if admin:
    add_form(ctx, user, ws_id)
else:
    st.info("Only admins of this workspace change its members.")
try:
    member_rows(ctx, user, ws_id, admin)
except BackendError as e:
    st.error(str(e))
