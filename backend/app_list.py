"""The dashboard's app list: one workspace's apps with the user's favorites, in a fixed
number of queries (role, workspace, apps joined with their owners, favorites), whatever
the number of apps. `backend.apps.list_apps` builds each view with its own lookups (three
queries per app), which is fine for a handful and too slow for a thousand.

Order: the user's favorites first (seed: "Favorited apps appear at the top"), then the
newest first.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from backend.apps import AppView, build_view
from backend.context import Context
from backend.errors import NotFound
from backend.workspaces import require_role, role_in, visible_workspace_ids
from models import App, Favorite, User, Workspace, session_scope


COLUMNS = (App.id, App.subdomain, App.repo_url, App.branch, App.main_file,
           App.python_version, App.built_python, App.visibility, App.state, App.state_reason,
           App.desired_state, App.workspace_id, App.commit, App.created_at, App.updated_at,
           App.last_deployed_at)


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
        rows = s.exec(  # columns, not entities: no ORM objects for a thousand rows
            select(*COLUMNS, User.username)  # type: ignore[call-overload]
            .join(User, User.id == App.owner_id, isouter=True)
            .where(App.workspace_id == workspace_id, App.desired_state != "deleted")
            .order_by(App.created_at.desc(), App.id.desc())).all()  # type: ignore
        favorites = frozenset(s.exec(
            select(Favorite.app_id).join(App, App.id == Favorite.app_id)  # type: ignore
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
        q = select(App.id, App.subdomain, Workspace.name, App.repo_url)  # type: ignore
        q = q.join(Workspace, Workspace.id == App.workspace_id) \
            .where(App.desired_state != "deleted")
        if visible is not None:
            q = q.where(App.workspace_id.in_(visible))  # type: ignore[attr-defined]
        rows = s.exec(q.order_by(Workspace.name, App.subdomain)).all()
    return [AppChoice(*row) for row in rows]
