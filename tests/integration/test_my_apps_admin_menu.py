"""My apps' row ︙ menu offers the lifecycle actions to those who may use them (AppTest):
Put to sleep now to the app's developers, Stop / Start and Move to site admins only, none of
them to a viewer; a click does it and closes the menu."""

from __future__ import annotations

from backend import workspaces
from backend.apps import service as apps
from models import Workspace, session_scope
from tests.support.dashboard import (
    REPO,
    Dash,
    add_member,
    button_keys,
    click_in_menu,
    db_app,
    move,
    open_dashboard,
    open_menus,
)


def menu_actions(keys: set[str], app_id: int) -> set[str]:
    return {k.split("_")[1] for k in keys
            if k.startswith("menu_") and k.endswith(f"_{app_id}") and k.count("_") == 2}


def test_the_menu_offers_each_action_to_whom_it_is_for(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="menued")
    move(dash.ctx, app.id, "building", "starting", "running")
    team = db_app(dash.ctx, app.id).workspace_id
    with session_scope(dash.ctx.engine) as s:
        workspace = s.get(Workspace, team)
        assert workspace is not None
        name = workspace.name
    developer = add_member(dash.ctx, "dev", name, "developer")
    viewer = add_member(dash.ctx, "view", name, "viewer")

    at = open_menus(open_dashboard(dash.admin), app.id)
    assert menu_actions(button_keys(at), app.id) == {"sleep", "stop"}  # no other workspace
    at = open_menus(open_dashboard(developer), app.id)
    assert menu_actions(button_keys(at), app.id) == {"sleep"}
    at = open_menus(open_dashboard(viewer), app.id)
    assert menu_actions(button_keys(at), app.id) == set()

    with session_scope(dash.ctx.engine) as s:  # made now: My apps stays on the app's one
        s.add(Workspace(name="archive"))
    at = click_in_menu(open_dashboard(dash.admin), app.id, f"menu_stop_{app.id}")
    assert db_app(dash.ctx, app.id).desired_state == "stopped"
    at = open_menus(open_dashboard(dash.admin), app.id)
    assert menu_actions(button_keys(at), app.id) == {"start", "move"}
    archive = next(w for w, _ in workspaces.list_workspaces(dash.ctx, dash.admin)
                   if w.name == "archive")
    at.selectbox(key=f"menu_move_to_{app.id}").set_value(archive.id).run()
    click_in_menu(at, app.id, f"menu_move_{app.id}")
    assert db_app(dash.ctx, app.id).workspace_id == archive.id
