"""App details offers the lifecycle actions to those who may use them: Stop and Move to a
server admin (a click stops the app / moves it), none of them to a viewer."""

from __future__ import annotations

from backend import workspaces
from backend.apps import service as apps
from models import Workspace, session_scope
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    REPO,
    Dash,
    add_member,
    button_keys,
    click,
    db_app,
    open_dashboard,
)


def test_admin_stops_and_moves_from_app_details_a_viewer_cannot(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="managed")
    with session_scope(dash.ctx.engine) as s:
        s.add(Workspace(name="second"))
    at = open_dashboard(dash.admin, ui.APP, {"app": str(app.id)})
    keys = button_keys(at)
    assert f"stop_{app.id}" in keys and f"move_{app.id}" in keys, keys
    click(at, f"stop_{app.id}")
    assert db_app(dash.ctx, app.id).desired_state == "stopped"
    at = open_dashboard(dash.admin, ui.APP, {"app": str(app.id)})
    assert f"start_{app.id}" in button_keys(at)
    second = next(w for w, _ in workspaces.list_workspaces(dash.ctx, dash.admin)
                  if w.name == "second")
    at.selectbox(key=f"move_to_{app.id}").set_value(second.id).run()
    click(at, f"move_{app.id}")
    assert db_app(dash.ctx, app.id).workspace_id == second.id

    viewer = add_member(dash.ctx, "watcher", "second", "viewer")
    at = open_dashboard(viewer, ui.APP, {"app": str(app.id)})
    keys = button_keys(at)
    assert not {k for k in keys if k.split("_")[0] in ("sleep", "start", "stop", "move")}, keys
