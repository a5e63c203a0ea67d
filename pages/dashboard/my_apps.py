"""My apps: the apps of the current workspace (switcher top right), favorites first.

Each row: ☆/⭐ star, name (a link to the app; a lock when it is private), repository ·
branch · main file, status on one line (a failure's short reason, in full on App details;
🌙 sleeping apps get a moon button that wakes them) and under it when the app next sleeps
by its sleep policy ("💤 sleeps in 3 h", "always on"; the policy on hover), owner (👥 when
another developer deployed it), last deploy time (relative, exact on hover), and the "︙"
menu: Favorite, Open, Analytics, Logs, Settings, Reboot, Delete, Copy URL, Put to sleep
now, and for site admins Stop / Start and Move to another workspace. View-only workspaces
show a "👁 view-only" note instead of the management actions; favorites work everywhere.

Fast with a thousand apps: one listing call (`backend.apps.listing`, a fixed number of
queries) and one for the shown rows' sleep policies, one page of `PAGE_SIZE` rows
rendered, and a menu's content only while it is open; past `SEARCH_FROM` apps a search box
filters by name, repository, branch, main file or owner.
The list runs in a live fragment that rereads it every two seconds while an app is in the
oven or being deleted.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend import workspaces
from backend.apps import sleep_settings
from backend.apps.listing import AppListing, list_workspace_apps
from backend.context import Context
from backend.errors import BackendError
from pages.dashboard import _actions as actions
from pages.dashboard import _ui as ui

PAGE_SIZE = 25
SEARCH_FROM = 8  # more apps than this: show the search box
SEARCH_KEY = "apps_search"
PAGE_KEY = "apps_page"
ss = st.session_state


def empty_state(workspace: str | None) -> None:
    with st.container(border=True):
        if workspace:
            st.subheader(f"No apps in {ui.md(workspace)} yet")
        else:
            st.subheader("You have no apps yet")
        st.markdown(
            "Deploy your first app from a git repository: give its URL, the branch and the "
            "Python file that runs it (such as `streamlit_app.py`). We build it, give it its "
            "own URL, and update it on every push to the branch. Apps land in the workspace "
            "named after the repository's owner.")
        if st.button("Deploy an app", type="primary", key="empty_deploy",
                     icon=ui.ICON["deploy"]):
            st.switch_page(ui.DEPLOY)


def app_menu(ctx: Context, user: Any, app: Any, favorite: bool) -> None:
    """The "︙" menu. Its content runs only while it is open (it tracks its state), and
    each action closes it."""
    menu = st.popover("", icon=":material/more_vert:", type="tertiary",
                      key=actions.menu_key(app.id), help="Manage app", on_change="rerun")
    with menu:
        if not menu.open:
            return
        st.button("Unfavorite" if favorite else "Favorite", key=f"favmenu_{app.id}",
                  icon="⭐" if favorite else ":material/star_border:", type="tertiary",
                  on_click=actions.from_menu, args=(app.id, actions.set_favorite, ctx, user,
                                                     app.id, not favorite, app.subdomain))
        if app.state == "sleeping":
            st.button("Wake up", key=f"wake_{app.id}", icon="🌙", type="tertiary",
                      on_click=actions.from_menu,
                      args=(app.id, actions.wake, ctx, user, app.id, app.subdomain))
        st.link_button("Open app", app.url, icon=ui.ICON["open"], type="tertiary")
        st.code(app.url, language=None)  # its copy icon is "Copy URL"
        query = {"app": str(app.id)}
        ui.page_link(ui.ANALYTICS, label="Analytics", icon=ui.ICON["analytics"],
                     query_params=query)
        ui.page_link(ui.APP, label="Details", icon=ui.ICON["details"], query_params=query)
        if app.can_manage:
            ui.page_link(ui.LOGS, label="Logs", icon=ui.ICON["logs"], query_params=query)
            ui.page_link(ui.SETTINGS, label="Settings", icon=ui.ICON["settings"],
                         query_params=query)
            st.button("Reboot", key=f"reboot_{app.id}", icon=ui.ICON["reboot"],
                      type="tertiary", on_click=actions.from_menu,
                      args=(app.id, actions.ask_reboot, app.id))
            st.button("Delete", key=f"delete_{app.id}", icon=ui.ICON["delete"],
                      type="tertiary", on_click=actions.from_menu,
                      args=(app.id, actions.ask_delete, app.id))
        else:
            st.caption(f"**{ui.VIEW_ONLY}**", help=ui.VIEW_ONLY_HELP)
        lifecycle_items(ctx, user, app)


def lifecycle_items(ctx: Context, user: Any, app: Any) -> None:
    """The menu's Put to sleep now (the app's developers), and Stop / Start and Move to
    another workspace (site admins), as on App details (`backend.apps.admin_actions`)."""
    def item(label: str, action: str, icon: str) -> None:
        st.button(label, key=f"menu_{action}_{app.id}", icon=icon, type="tertiary",
                  on_click=actions.from_menu, args=(app.id, actions.lifecycle, ctx, user,
                                                     app.id, app.subdomain, action))

    if app.can_manage and app.state == "running" and app.desired_state == "running":
        item("Put to sleep now", "sleep", "🌙")
    if not getattr(user, "is_admin", False):
        return
    if app.desired_state == "stopped" or app.state == "stopped":
        item("Start", "start", ":material/play_arrow:")
    else:
        item("Stop (admin)", "stop", ":material/stop:")
    spaces = {w.id: w.name for w, _ in workspaces.list_workspaces(ctx, user)
              if w.id is not None and w.id != app.workspace_id}
    if spaces:
        key = f"menu_move_to_{app.id}"
        st.selectbox("Move to workspace (admin)", list(spaces), key=key, index=None,
                     format_func=lambda i: spaces[i], placeholder="Choose a workspace")
        st.button("Move", key=f"menu_move_{app.id}", icon=":material/drive_file_move:",
                  type="tertiary", disabled=ss.get(key) is None, on_click=actions.from_menu,
                  args=(app.id, actions.move, ctx, user, app.id, key))


def app_row(ctx: Context, user: Any, app: Any, favorite: bool,
            sleep: sleep_settings.NextSleep | None = None) -> None:
    with st.container(border=True, key=f"app_{app.id}"):
        star, name, status, owner, deployed, moon, menu = st.columns(
            [0.35, 4.2, 2.4, 1.7, 1.9, 0.45, 0.4], vertical_alignment="center")
        star.button("⭐" if favorite else "☆", key=f"star_{app.id}", type="tertiary",
                    help="Unfavorite" if favorite else "Favorite: show it at the top",
                    on_click=actions.set_favorite,
                    args=(ctx, user, app.id, not favorite, app.subdomain))
        lock = " 🔒" if app.visibility == "private" else ""
        name.markdown(f"**[{ui.md(app.subdomain)}]({app.url})**{lock}",
                      help="Private: only people invited to it, and the workspace's members, "
                           "can open it" if lock else None)
        name.caption(f"{ui.md(app.repo_url)} · {ui.md(app.branch)} · "
                     f"{ui.md(app.main_file)}")
        ui.status_badge(app, status, detail=False)  # the whole reason is on App details
        if sleep is not None and sleep.label:
            status.caption(sleep.label, help=f"Sleep policy: {sleep.description}")
        if app.owner == user.username:
            owner.caption("by you")
        else:
            owner.caption(f"👥 by {ui.md(app.owner or 'unknown')}",
                          help="Deployed by another developer of this workspace")
        ui.time_caption(app.last_deployed_at, "Deployed ", deployed, never="Not deployed yet")
        if app.state == "sleeping":
            moon.button("🌙", key=f"moon_{app.id}", type="tertiary",
                        help="Sleeping: click the moon to wake it up", on_click=actions.wake,
                        args=(ctx, user, app.id, app.subdomain))
        with menu:
            app_menu(ctx, user, app, favorite)


def matches(app: Any, needle: str) -> bool:
    hay = f"{app.subdomain} {app.repo_url} {app.branch} {app.main_file} {app.owner}".lower()
    return all(word in hay for word in needle.lower().split())


def pager(total: int) -> int:
    """Page controls (only with more than one page); returns the first index to show."""
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, ss.get(PAGE_KEY, 1)), pages)
    ss[PAGE_KEY] = page
    if pages > 1:
        prev, label, nxt = st.columns([1, 3, 1], vertical_alignment="center")
        prev.button("Previous", key="apps_prev", icon=":material/chevron_left:",
                    disabled=page == 1, on_click=lambda: ss.update({PAGE_KEY: page - 1}))
        first, last = (page - 1) * PAGE_SIZE + 1, min(page * PAGE_SIZE, total)
        label.caption(f"Apps {first}–{last} of {total} · page {page} of {pages}")
        nxt.button("Next", key="apps_next", icon=":material/chevron_right:",
                   icon_position="right", disabled=page == pages,
                   on_click=lambda: ss.update({PAGE_KEY: page + 1}))
    return (page - 1) * PAGE_SIZE


def app_list(ctx: Context, user: Any, workspace_id: int) -> bool:
    ui.show_flash()
    try:
        listing: AppListing = list_workspace_apps(ctx, user, workspace_id)
    except BackendError as e:
        st.error(str(e))
        return False
    if not listing.apps:
        empty_state(listing.workspace)
        return False
    apps = listing.apps
    if len(apps) > SEARCH_FROM:
        needle = st.text_input("Search apps", key=SEARCH_KEY, icon=":material/search:",
                               placeholder="Name, repository, branch, file or owner",
                               label_visibility="collapsed", live="300ms",
                               on_change=lambda: ss.update({PAGE_KEY: 1}))
        if needle.strip():
            apps = [a for a in apps if matches(a, needle)]
            if not apps:
                st.info(f"No app matches “{ui.md(needle.strip())}”.")
    start = pager(len(apps))
    shown = apps[start:start + PAGE_SIZE]
    sleeps = sleep_settings.next_sleeps(ctx, user, workspace_id, [a.id for a in shown])
    for app in shown:
        app_row(ctx, user, app, app.id in listing.favorites, sleeps.get(app.id))
    return any(ui.is_busy(a) for a in listing.apps)


ctx, user = ui.page_context()
title, switch, action = st.columns([3.2, 1.6, 1.2], vertical_alignment="bottom")
title.title("My apps")
with switch:
    current = ui.workspace_switcher(ctx, user)
if action.button("Deploy an app", type="primary", key="header_deploy",
                   icon=ui.ICON["deploy"], width="stretch"):
    st.switch_page(ui.DEPLOY)
if current is None:
    ui.show_flash()
    empty_state(None)
else:
    ws_id = current[0]
    if ss.get("_apps_ws") != ws_id:  # a new workspace starts at its first page
        ss["_apps_ws"] = ws_id
        ss[PAGE_KEY] = 1
    if current[2] == "viewer":
        st.caption(f"**{ui.VIEW_ONLY}** workspace", help=ui.VIEW_ONLY_HELP)
    ui.live("app_list", lambda: app_list(ctx, user, ws_id))
actions.confirm_dialogs(ctx, user)
