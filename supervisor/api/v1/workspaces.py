"""`/workspaces` and their members (adding, changing and removing need `admin`)."""

from __future__ import annotations

from aiohttp import web

from backend import workspaces
from backend.context import Context
from supervisor.api.support import ApiError, json_body, ok, path_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of


async def list_workspaces(ctx: Context, request: web.Request) -> web.Response:
    rows = await call(workspaces.list_workspaces, ctx, user_of(request))
    return ok({"workspaces": [{"id": w.id, "name": w.name, "role": r} for w, r in rows]})


async def list_members(ctx: Context, request: web.Request) -> web.Response:
    rows = await call(workspaces.list_members, ctx, user_of(request),
                      path_int(request, "workspace_id"))
    return ok({"members": [{"username": u.username, "name": u.name, "role": r}
                           for u, r in rows]})


async def put_member(ctx: Context, request: web.Request) -> web.Response:
    ws_id, who = path_int(request, "workspace_id"), request.match_info["username"]
    body = await json_body(request)
    role = body.get("role")
    if not isinstance(role, str):
        raise ApiError(422, "invalid", "role is admin, developer or viewer.", field="role")
    await call(workspaces.set_member, ctx, user_of(request), ws_id, who, role)
    return ok({"workspace_id": ws_id, "username": who.strip().lower(), "role": role})


async def delete_member(ctx: Context, request: web.Request) -> web.Response:
    ws_id, who = path_int(request, "workspace_id"), request.match_info["username"]
    await call(workspaces.remove_member, ctx, user_of(request), ws_id, who)
    return ok({"workspace_id": ws_id, "username": who.strip().lower(), "removed": True})


ENDPOINTS = [
    Endpoint("GET", "/workspaces", list_workspaces, "read", "Workspaces you belong to"),
    Endpoint("GET", "/workspaces/{workspace_id}/members", list_members, "read",
             "Members and roles"),
    Endpoint("PUT", "/workspaces/{workspace_id}/members/{username}", put_member, "admin",
             "Add a member or change a role", "json"),
    Endpoint("DELETE", "/workspaces/{workspace_id}/members/{username}", delete_member,
             "admin", "Remove a member"),
]
