"""My apps: every app the signed-in user can see, with its state and a "︙" menu.

The list runs in a live fragment: it rereads the apps every two seconds while one of them
is in the oven or being deleted, and stops refreshing when all have settled.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend import apps as app_service
from backend.context import Context
from pages.dashboard import _ui as ui

ALL_WORKSPACES = "All workspaces"


def empty_state() -> None:
    with st.container(border=True):
        st.subheader("You have no apps yet")
        st.markdown(
            "Deploy your first app from a git repository: tell us its URL, branch and the "
            "Python file that runs it, and we build it and give it its own URL. Every push "
            "to the branch updates the app.")
        if st.button("Deploy an app", type="primary", key="empty_deploy",
                     icon=":material/rocket_launch:"):
            st.switch_page(ui.DEPLOY)


def app_menu(ctx: Context, user: Any, app: Any) -> None:
    with st.popover("", icon=":material/more_vert:", type="tertiary", key=f"menu_{app.id}",
                    help="Manage app"):
        if app.state == "sleeping":
            st.button("Wake up", key=f"wake_{app.id}", icon="🌙", width="stretch",
                      on_click=ui.wake, args=(ctx, user, app.id, app.subdomain))
        if app.can_manage:
            st.button("Reboot", key=f"reboot_{app.id}", icon=":material/refresh:",
                      width="stretch", on_click=ui.reboot,
                      args=(ctx, user, app.id, app.subdomain))
            if st.button("Delete", key=f"delete_{app.id}", icon=":material/delete:",
                         width="stretch"):
                ui.ask_delete(app.id)
                st.rerun(scope="app")
        else:
            st.caption(f"View-only: you are a viewer in workspace {ui.md(app.workspace)}. "
                       "Ask one of its admins for the developer role to reboot or delete "
                       "this app.")
        st.page_link(ui.APP, label="Details / logs", icon=":material/article:",
                     query_params={"app": str(app.id)})


def app_row(ctx: Context, user: Any, app: Any) -> None:
    with st.container(border=True, key=f"app_{app.id}"):
        name, status, workspace, updated, menu = st.columns(
            [4.4, 2.6, 1.8, 2.2, 0.4], vertical_alignment="center")
        name.markdown(f"**[{ui.md(app.subdomain)}]({app.url})**")
        name.caption(f"{ui.md(app.repo_url)} · {ui.md(app.branch)} · "
                     f"{ui.md(app.main_file)}")
        ui.status_badge(app, status)
        if app.state == "sleeping":
            status.button("Wake up", key=f"moon_{app.id}", icon="🌙", type="tertiary",
                          help="Wake this app up", on_click=ui.wake,
                          args=(ctx, user, app.id, app.subdomain))
        mine = app.owner == user.username
        workspace.markdown(ui.md(app.workspace))
        workspace.caption("by you" if mine else f"👥 by {ui.md(app.owner or 'unknown')}")
        updated.caption(ui.relative_time(app.updated_at),
                        help=f"Last change: {ui.exact_time(app.updated_at)}")
        with menu:
            app_menu(ctx, user, app)


def app_list(ctx: Context, user: Any) -> bool:
    ui.show_flash()
    apps = app_service.list_apps(ctx, user)
    if not apps:
        empty_state()
        return False
    workspaces = sorted({a.workspace for a in apps})
    if len(workspaces) > 1:
        chosen = st.selectbox("Workspace", [ALL_WORKSPACES, *workspaces], key="workspace",
                              width=260)
        if chosen != ALL_WORKSPACES:
            apps = [a for a in apps if a.workspace == chosen]
    for app in apps:
        app_row(ctx, user, app)
    return any(ui.is_busy(a) for a in apps)


ctx, user = ui.page_context()
title, action = st.columns([4, 1], vertical_alignment="bottom")
title.title("My apps")
if action.button("Deploy an app", type="primary", key="header_deploy",
                 icon=":material/rocket_launch:", width="stretch"):
    st.switch_page(ui.DEPLOY)
ui.live("app_list", lambda: app_list(ctx, user))
ui.delete_dialog_if_asked(ctx, user)
