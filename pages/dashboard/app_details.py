"""App details: one app's status, URL, commit, settings at a glance and its history.

The app is chosen with `?app=<id>` (links from the app list carry it) or the selector, which
keeps the query parameter in step so the URL can be shared. Actions: open, favorite, reboot
and delete (each confirmed in a dialog that says what happens); links to the app's Logs,
Settings and Analytics. The status and events run in a live fragment that refreshes while
the app is in the oven.

Memory and CPU: the app's memory (PSS summed over its instances, and each instance when
there are several) and CPU over the chosen range against its memory limit and the warning
threshold, with the newest figures below and a warning box while it stays near its limit
(`pages/dashboard/_resources.py`, shared with the Manage app panel).
"""

from __future__ import annotations

import functools
from typing import Any

import streamlit as st

from backend.apps import favorites
from backend.apps import service as app_service
from backend.context import Context
from backend.errors import NotFound
from pages.dashboard import _actions as actions
from pages.dashboard import _previews as preview_view
from pages.dashboard import _resources as resources_view
from pages.dashboard import _sleep as sleep_view
from pages.dashboard import _ui as ui
from pages.dashboard._resources import MIB, memory_caption  # noqa: F401 (tests read them here)


def action_bar(ctx: Context, user: Any, app: Any, favorite: bool) -> None:
    cols = st.columns([1.2, 1.2, 1.2, 1.1, 3], vertical_alignment="center")
    cols[0].link_button("Open app", app.url, icon=ui.ICON["open"], type="primary")
    cols[1].button("Unfavorite" if favorite else "Favorite", key="detail_star",
                   icon="⭐" if favorite else ":material/star_border:",
                   on_click=actions.set_favorite,
                   args=(ctx, user, app.id, not favorite, app.subdomain))
    if app.state == "sleeping":
        cols[4].button("Wake up", key="detail_wake", icon="🌙", on_click=actions.wake,
                       args=(ctx, user, app.id, app.subdomain))
    if not app.can_manage:
        cols[2].caption(f"**{ui.VIEW_ONLY}**", help=ui.VIEW_ONLY_HELP)
        return
    cols[2].button("Reboot", key="detail_reboot", icon=ui.ICON["reboot"],
                   on_click=actions.ask_reboot, args=(app.id,))
    cols[3].button("Delete", key="detail_delete", icon=ui.ICON["delete"],
                   on_click=actions.ask_delete, args=(app.id,))
    actions.lifecycle_buttons(ctx, user, app)


def python_fact(app: Any) -> str:
    """The Python the app's environment was built with; the setting until it is built."""
    if not app.built_python:  # not built yet, or built before the version was recorded
        return ui.md(app.python_version) + ("" if app.commit else " (not built yet)")
    if app.built_python.startswith(app.python_version + "."):
        return ui.md(app.built_python)
    return f"{ui.md(app.built_python)} (the repository's pin; the setting says " \
        f"{ui.md(app.python_version)})"


def facts(app: Any) -> None:
    rows = [("URL", f"[{ui.md(app.url)}]({app.url})"),
            ("Repository", ui.md(app.repo_url)),
            ("Branch", ui.md(app.branch)),
            ("Main file", ui.md(app.main_file)),
            ("Commit", f"`{app.commit[:12]}`" if app.commit else "not built yet"),
            ("Python", python_fact(app)),
            ("Workspace", f"{ui.md(app.workspace)} (you are {app.role or 'not a member'})"),
            ("Owner", ui.md(app.owner or "unknown")),
            ("Visibility", "🔒 private" if app.visibility == "private" else "🌐 public")]
    st.markdown("\n".join(f"- **{k}:** {v}" for k, v in rows))
    ui.time_caption(app.last_deployed_at, "Last deployed ", never="Not deployed yet")


def live_part(ctx: Context, user: Any, app_id: int) -> bool:
    ui.show_flash()
    try:
        app = app_service.get_app(ctx, user, app_id)
    except NotFound:
        st.info("This app has been deleted.")
        return False
    favorite = app_id in favorites.favorite_ids(ctx, user)
    head, when = st.columns([3, 1], vertical_alignment="center")
    with head:
        st.subheader(f"{'⭐ ' if favorite else ''}{ui.md(app.subdomain)}")
        ui.status_badge(app)
    ui.time_caption(app.updated_at, "Updated ", when)
    action_bar(ctx, user, app, favorite)
    ui.app_links(app, skip=ui.APP)
    info, events_col = st.columns([1, 1.4])
    with info:
        facts(app)
        sleep_view.sleep_fact(ctx, user, app.id)
    with events_col:
        st.markdown("**Events**")
        events = app_service.app_events(ctx, user, app.id, limit=20)
        st.dataframe(
            [{"When": ui.relative_time(e.time), "Time": ui.exact_time(e.time),
              "Change": f"{e.from_state or '·'} → {e.to_state}", "Reason": e.reason}
             for e in events],
            hide_index=True, width="stretch")
    if not app.can_manage:
        st.info(f"Logs and settings are shown to developers of workspace "
                f"{ui.md(app.workspace)}.")
    return ui.is_busy(app)


USAGE_RANGE_KEY = "usage_range"


def memory_section(ctx: Context, user: Any, app_id: int) -> None:
    st.subheader("Memory and CPU")
    try:
        state = app_service.get_app(ctx, user, app_id).state
    except NotFound:
        return
    resources_view.resources_section(ctx, user, app_id, state, key=USAGE_RANGE_KEY)


def main() -> None:
    ctx, user = ui.page_context()
    st.title("App details")
    app_id = ui.app_picker(ctx, user)
    if app_id is not None:
        ui.live("app_detail", functools.partial(live_part, ctx, user, app_id))
        memory_section(ctx, user, app_id)
        preview_view.preview_list(ctx, user, app_id)
    actions.confirm_dialogs(ctx, user, after_delete=ui.MY_APPS)


if __name__ == "__main__":  # as a page; tests import the pure parts
    main()
