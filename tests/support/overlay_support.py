"""Rows for proxy tests: users, a workspace with members, apps; and a signed-in browser's
cookies (the dashboard's JWT, an app host's session)."""

from __future__ import annotations

import time

import jwt
from sqlmodel import select

from backend.accounts import auth, identity
from backend.accounts.keys import dashboard_cookie_key
from backend.context import Context
from models import App, Membership, User, Workspace, id_of, session_scope


def user(ctx: Context, name: str, *, email: str = "", admin: bool = False) -> User:
    try:
        return auth.get_user(ctx, name)
    except Exception:  # not there yet
        return auth.create_user(ctx, name, "password123", email=email or f"{name}@example.com",
                                is_admin=admin)


def workspace(ctx: Context, name: str, members: list[tuple[User, str]]) -> int:
    with session_scope(ctx.engine) as s:
        ws = s.exec(select(Workspace).where(Workspace.name == name)).first()
        if ws is None:
            ws = Workspace(name=name)
            s.add(ws)
            s.flush()
        for u, role in members:
            s.add(Membership(user_id=u.id, workspace_id=ws.id, role=role))
        return id_of(ws)


def app(ctx: Context, workspace_id: int, subdomain: str, *, visibility: str = "public",
        state: str = "running", owner: User | None = None) -> int:
    with session_scope(ctx.engine) as s:
        row = App(workspace_id=workspace_id, subdomain=subdomain, repo_url="/tmp/x.git",
                  visibility=visibility, state=state, owner_id=owner.id if owner else None)
        s.add(row)
        s.flush()
        return id_of(row)


def dashboard_cookie(ctx: Context, username: str, ttl: float = 3600) -> str:
    """The `stcloud_dashboard` value streamlit-authenticator writes after a sign-in."""
    return jwt.encode({"username": username, "exp_date": time.time() + ttl},
                      dashboard_cookie_key(ctx), algorithm="HS256")


def session_cookie(ctx: Context, u: User | None, subdomain: str) -> str:
    """An app host's `stcloud_session` (None: the "checked, not signed in" marker)."""
    key = identity.server_key(ctx)
    if u is None:
        return identity.session_cookie(key, 0, "", subdomain)
    return identity.session_cookie(key, id_of(u), u.username, subdomain)
