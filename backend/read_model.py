"""The read model of the supervisor's proxy and API: the few lookups they make on the request
path, so that neither opens a database session of its own. Plain reads, no permission
checks: callers decide what a visitor may see (the proxy caches these answers a few
seconds, `supervisor/proxy/access.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from backend.context import Context
from backend.workspaces import role_in
from models import App, User, Workspace, session_scope


@dataclass(frozen=True)
class AppPageFacts:
    """What our pages for an app that is not serving say about it."""

    workspace: str  # the workspace's name, "" when it is gone
    memory_limit_mb: int  # the app's own limit, else the site's default


def user_by_id(ctx: Context, user_id: int) -> User | None:
    with session_scope(ctx.engine) as s:
        return s.get(User, user_id)


def user_by_name(ctx: Context, username: str) -> User | None:
    with session_scope(ctx.engine) as s:
        return s.exec(select(User).where(User.username == username)).first()


def role_of(ctx: Context, user: User, workspace_id: int) -> str | None:
    """admin | developer | viewer | None (not a member); site admins are admin everywhere."""
    with session_scope(ctx.engine) as s:
        return role_in(s, user, workspace_id)


def app_page_facts(ctx: Context, app_id: int, workspace_id: int) -> AppPageFacts:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        ws = s.get(Workspace, workspace_id)
        limit = (app.memory_limit_mb if app and app.memory_limit_mb else
                 ctx.settings.memory_limit_mb)
        return AppPageFacts(workspace=ws.name if ws else "", memory_limit_mb=limit)
