"""The dashboard's app list: one workspace's apps with the user's favorites, in a fixed
number of queries (role, workspace, apps joined with their owners, favorites), whatever
the number of apps. `backend.apps.service.list_apps` builds each view with its own lookups (three
queries per app), which is fine for a handful and too slow for a thousand.

Order: the user's favorites first (seed: "Favorited apps appear at the top"), then the
newest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select

from backend.apps.service import AppView, build_view
from backend.context import Context
from backend.errors import NotFound
from backend.workspaces import require_role, role_in, visible_workspace_ids
from models import App, Favorite, User, Workspace, session_scope

COLUMNS = tuple(col(c) for c in (
    App.id, App.subdomain, App.repo_url, App.branch, App.main_file, App.python_version,
    App.built_python, App.visibility, App.state, App.state_reason, App.desired_state,
    App.workspace_id, App.commit, App.created_at, App.updated_at, App.last_deployed_at))


@dataclass(frozen=True)
class AppListing:
    workspace_id: int
    workspace: str
    role: str  # the user's role in the workspace
    apps: list[AppView]
    favorites: frozenset[int]

    @property
    def can_manage(self) -> bool:
        return self.role in ("developer", "admin")


def list_workspace_apps(ctx: Context, user: User, workspace_id: int) -> AppListing:
    """Every app of the workspace (viewer role and up), favorites first."""
    settings = ctx.settings
    with session_scope(ctx.engine) as s:
        ws = s.get(Workspace, workspace_id)
        if ws is None:
            raise NotFound(f"Workspace {workspace_id} does not exist.")
        require_role(s, user, workspace_id, "viewer", "see its apps")
        role = role_in(s, user, workspace_id) or ""
        # columns, not entities: no ORM objects for a thousand rows
        rows = s.connection().execute(
            sa.select(*COLUMNS, col(User.username))
            .join(User, col(User.id) == App.owner_id, isouter=True)
            .where(col(App.workspace_id) == workspace_id, col(App.desired_state) != "deleted")
            .order_by(col(App.created_at).desc(), col(App.id).desc())).all()
        favorites = frozenset(s.exec(
            select(Favorite.app_id).join(App, col(App.id) == Favorite.app_id)
            .where(Favorite.user_id == user.id, App.workspace_id == workspace_id)).all())
    views = [build_view(settings, row, ws.name, row.username or "", role) for row in rows]
    views.sort(key=lambda v: v.id not in favorites)  # stable: newest first within each
    return AppListing(workspace_id=workspace_id, workspace=ws.name, role=role, apps=views,
                      favorites=favorites)


@dataclass(frozen=True)
class AppChoice:
    id: int
    subdomain: str
    workspace: str
    repo_url: str


def app_choices(ctx: Context, user: User) -> list[AppChoice]:
    """Every app the user can see, for a picker (one query): by workspace, then name."""
    with session_scope(ctx.engine) as s:
        visible = visible_workspace_ids(s, user)
        q = select(col(App.id), App.subdomain, Workspace.name, App.repo_url)
        q = q.join(Workspace, col(Workspace.id) == App.workspace_id) \
            .where(App.desired_state != "deleted")
        if visible is not None:
            q = q.where(col(App.workspace_id).in_(visible))
        rows = s.exec(q.order_by(Workspace.name, App.subdomain)).all()
    # (the ORM types a primary key as optional; a loaded one is never NULL)
    return [AppChoice(app_id, sub, ws, url) for app_id, sub, ws, url in rows
            if app_id is not None]
