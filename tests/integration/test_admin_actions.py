"""Put to sleep now, wake, stop and move, against the real supervisor: each request is
carried out (the instance stops or starts, the state says who asked), and only the people
`backend.apps.admin_actions` names may ask."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from sqlmodel import select

from backend.apps import admin_actions
from backend.apps import service as apps
from backend.context import Context
from backend.errors import NotFound, PermissionDenied
from backend.platform.settings import Settings
from models import User, Workspace, id_of, session_scope
from tests.conftest import GitRepo
from tests.support.api_world import make_user
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state


def serves(settings: Settings, subdomain: str) -> bool:
    """Whether the app's instance answers through the proxy (not one of our pages)."""
    req = urllib.request.Request(f"http://127.0.0.1:{settings.port}/_stcore/health",
                                 headers={"Host": f"{subdomain}.localhost:{settings.port}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return bool(r.status == 200 and r.read().strip() == b"ok")
    except (urllib.error.URLError, OSError):
        return False


def test_sleep_wake_stop_move_end_to_end(
        settings: Settings, ctx: Context, admin: User, hello_repo: GitRepo,
        supervisor: SupervisorProcess) -> None:
    owner = make_user(ctx, "owner")
    view = apps.deploy_app(ctx, owner, repo_url=hello_repo.url, subdomain="nap")
    wait_for_state(ctx, view.id, {"running"}, sup=supervisor)
    assert serves(settings, "nap")

    # the app's own developer may put it to sleep now, whatever its idle time
    admin_actions.sleep_now(ctx, owner, view.id)
    slept = wait_for_state(ctx, view.id, {"sleeping"}, timeout=60, sup=supervisor)
    assert "put to sleep by owner" in slept.state_reason
    assert not serves(settings, "nap")

    with pytest.raises(PermissionDenied):  # stop and move are the server admins'
        admin_actions.stop(ctx, owner, view.id)
    admin_actions.wake(ctx, admin, view.id)
    wait_for_state(ctx, view.id, {"running"}, timeout=120, sup=supervisor)
    assert serves(settings, "nap")

    admin_actions.stop(ctx, admin, view.id)
    wait_for_state(ctx, view.id, {"stopped"}, timeout=60, sup=supervisor)
    assert not serves(settings, "nap")
    admin_actions.wake(ctx, owner, view.id)  # a developer starts it again
    wait_for_state(ctx, view.id, {"running"}, timeout=120, sup=supervisor)
    assert serves(settings, "nap")

    with session_scope(ctx.engine) as s:
        other = Workspace(name="elsewhere")
        s.add(other)
        s.flush()
        other_id = id_of(other)
    with pytest.raises(PermissionDenied):
        admin_actions.move(ctx, owner, view.id, other_id)
    moved = admin_actions.move(ctx, admin, view.id, other_id)
    assert moved.workspace == "elsewhere"
    with pytest.raises(NotFound):  # the owner is no member of the new workspace
        apps.get_app(ctx, owner, view.id)
    assert serves(settings, "nap")  # moving changes who manages it, not what runs
    with session_scope(ctx.engine) as s:
        assert s.exec(select(Workspace.id).where(Workspace.name == "elsewhere")).one() == other_id
