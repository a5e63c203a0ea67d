"""Favorites, private apps and invited viewers, workspace members."""

from __future__ import annotations

import pytest

from backend import workspaces
from backend.accounts import auth
from backend.apps import favorites, sharing
from backend.apps import service as apps
from backend.apps.service import AppView
from backend.context import Context
from backend.errors import NotFound, PermissionDenied, ValidationError
from models import User


@pytest.fixture
def team(ctx: Context, admin: User) -> tuple[AppView, dict[str, User]]:
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git")
    users = {name: auth.create_user(ctx, name, f"password-{name}", email=f"{name}@example.com")
             for name in ("dev", "viewer", "outsider", "guest")}
    workspaces.set_member(ctx, admin, view.workspace_id, "dev", "developer")
    workspaces.set_member(ctx, admin, view.workspace_id, "viewer@example.com", "viewer")
    return view, users


def test_favorites_are_per_user_and_need_access(ctx, admin, team) -> None:
    view, users = team
    favorites.set_favorite(ctx, users["viewer"], view.id, True)
    favorites.set_favorite(ctx, users["viewer"], view.id, True)  # idempotent
    assert favorites.favorite_ids(ctx, users["viewer"]) == {view.id}
    assert favorites.favorite_ids(ctx, users["dev"]) == set()
    favorites.set_favorite(ctx, users["viewer"], view.id, False)
    assert favorites.favorite_ids(ctx, users["viewer"]) == set()
    with pytest.raises(NotFound):
        favorites.set_favorite(ctx, users["outsider"], view.id, True)


def test_private_apps_admit_members_and_invited_viewers(ctx, admin, team) -> None:
    view, users = team
    assert sharing.can_view(ctx, None, view.id)  # public by default
    sharing.set_visibility(ctx, users["dev"], view.id, "private")
    assert not sharing.can_view(ctx, None, view.id)
    assert not sharing.can_view(ctx, users["outsider"], view.id)
    assert sharing.can_view(ctx, users["viewer"], view.id)
    sharing.invite_viewer(ctx, users["dev"], view.id, " Guest@Example.com ")
    assert sharing.list_viewers(ctx, users["viewer"], view.id) == ["guest@example.com"]
    assert sharing.can_view(ctx, users["guest"], view.id)
    sharing.remove_viewer(ctx, users["dev"], view.id, "guest@example.com")
    assert not sharing.can_view(ctx, users["guest"], view.id)
    with pytest.raises(PermissionDenied):
        sharing.set_visibility(ctx, users["viewer"], view.id, "public")
    with pytest.raises(ValidationError):
        sharing.invite_viewer(ctx, users["dev"], view.id, "not-an-email")


def test_members_management(ctx, admin, team) -> None:
    view, users = team
    ws = view.workspace_id
    assert dict((u.username, r) for u, r in workspaces.list_members(ctx, users["viewer"], ws)) \
        == {"admin": "admin", "dev": "developer", "viewer": "viewer"}
    with pytest.raises(PermissionDenied):
        workspaces.set_member(ctx, users["dev"], ws, "outsider", "viewer")
    with pytest.raises(NotFound):
        workspaces.set_member(ctx, admin, ws, "nobody", "viewer")
    workspaces.set_member(ctx, admin, ws, "dev", "admin")
    workspaces.remove_member(ctx, users["dev"], ws, "admin")
    with pytest.raises(ValidationError):  # the last admin stays
        workspaces.set_member(ctx, users["dev"], ws, "dev", "viewer")
    assert [w.name for w, _ in workspaces.list_workspaces(ctx, users["viewer"])] == ["team"]
    assert workspaces.list_workspaces(ctx, users["outsider"]) == []
