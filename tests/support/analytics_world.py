"""A seeded analytics world for the analytics tests: two workspaces ("team", "other") with a
developer, a viewer, an outsider and an invited viewer of a private app, and helpers that
read the aggregates on a controlled clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

import models.analytics  # noqa: F401  (registers the aggregate tables)
from backend.analytics import reports as analytics
from backend.context import Context
from models import App, AppViewer, Membership, User, Workspace, session_scope


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=UTC)


@dataclass
class World:
    ctx: Context
    admin: User
    ws: int  # workspace "team"
    other_ws: int  # workspace "other"
    app1: int  # public, team
    app2: int  # public, team
    private: int  # private, team
    app3: int  # public, other
    alice: User  # team developer
    victor: User  # team viewer
    olga: User  # not in team
    ivy: User  # invited viewer of the private app


def make_user(ctx: Context, username: str, name: str = "", email: str = "",
              is_admin: bool = False) -> User:
    with session_scope(ctx.engine) as s:
        user = User(username=username, name=name or username, email=email, is_admin=is_admin)
        s.add(user)
        s.flush()
        s.refresh(user)
        return user


def make_workspace(ctx: Context, name: str, members: dict[int, str]) -> int:
    with session_scope(ctx.engine) as s:
        ws = Workspace(name=name)
        s.add(ws)
        s.flush()
        for user_id, role in members.items():
            s.add(Membership(user_id=user_id, workspace_id=ws.id, role=role))
        return ws.id


def make_app(ctx: Context, ws: int, subdomain: str, visibility: str = "public") -> int:
    with session_scope(ctx.engine) as s:
        app = App(workspace_id=ws, subdomain=subdomain, repo_url=f"/r/{subdomain}",
                  visibility=visibility)
        s.add(app)
        s.flush()
        return app.id


def seed_world(ctx: Context) -> World:
    """Rows for `World` in a fresh database (no views yet)."""
    admin = make_user(ctx, "root", "Site Admin", "root@example.com", is_admin=True)
    alice = make_user(ctx, "alice", "Alice Developer", "alice@example.com")
    victor = make_user(ctx, "victor", "Victor Viewer", "victor@example.com")
    olga = make_user(ctx, "olga", "Olga Outsider", "olga@example.com")
    ivy = make_user(ctx, "ivy", "Ivy Invited", "Ivy@Example.com")
    ws = make_workspace(ctx, "team", {alice.id: "developer", victor.id: "viewer"})
    other = make_workspace(ctx, "other", {olga.id: "admin"})
    private = make_app(ctx, ws, "secret", "private")
    with session_scope(ctx.engine) as s:
        s.add(AppViewer(app_id=private, email="ivy@example.com"))
    return World(ctx, admin, ws, other, make_app(ctx, ws, "one"), make_app(ctx, ws, "two"),
                 private, make_app(ctx, other, "three"), alice, victor, olga, ivy)


def months(points: list[analytics.MonthPoint]) -> list[tuple[str, int, bool]]:
    return [(p.month.strftime("%Y-%m"), p.viewers, p.complete) for p in points]


def count(ctx: Context, table: Any) -> int:
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()

