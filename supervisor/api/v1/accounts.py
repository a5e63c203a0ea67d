"""`/me` (the token's user and scopes) and `/users` (accounts, for site admins)."""

from __future__ import annotations

from aiohttp import web

from backend.accounts import api_tokens, users
from backend.context import Context
from supervisor.api.support import ok
from supervisor.api.v1.endpoint import SCOPES_KEY, Endpoint, call, user_of


async def whoami(ctx: Context, request: web.Request) -> web.Response:
    user = user_of(request)
    scopes: frozenset[str] = request[SCOPES_KEY]
    return ok({"username": user.username, "name": user.name, "is_admin": user.is_admin,
               "scopes": sorted(scopes, key=api_tokens.SCOPES.index)})


async def list_users(ctx: Context, request: web.Request) -> web.Response:
    rows = await call(users.list_accounts, ctx, user_of(request))
    return ok({"users": [{"id": u.id, "username": u.username, "name": u.name,
                          "email": u.email, "is_admin": u.is_admin} for u in rows]})


ME = [Endpoint("GET", "/me", whoami, "read", "The token's user and scopes")]
USERS = [Endpoint("GET", "/users", list_users, "admin", "Accounts (site admins)")]
