"""`/apps/{app_id}/identity-headers`: whether the proxy adds `X-Forwarded-User` and
`X-Forwarded-Email` of signed-in viewers to the app's requests
(`backend.accounts.oidc_clients` checks who may read and change it).

    GET  → {"app_id", "enabled"}
    PUT  {"enabled": true} → the same
"""

from __future__ import annotations

from aiohttp import web

from backend.accounts import oidc_clients
from backend.context import Context
from supervisor.api.support import ApiError, json_body, ok, path_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of


async def get_headers(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    enabled = await call(oidc_clients.get_identity_headers, ctx, user_of(request), app_id)
    return ok({"app_id": app_id, "enabled": enabled})


async def put_headers(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    body = await json_body(request)
    enabled = body.get("enabled")
    if set(body) != {"enabled"} or not isinstance(enabled, bool):
        raise ApiError(422, "invalid", 'The body is {"enabled": true} or {"enabled": false}.',
                       field="enabled")
    await call(oidc_clients.set_identity_headers, ctx, user_of(request), app_id, enabled)
    return ok({"app_id": app_id, "enabled": enabled})


ENDPOINTS = [
    Endpoint("GET", "/apps/{app_id}/identity-headers", get_headers, "read",
             "Whether the app gets its signed-in viewers' X-Forwarded-User and -Email"),
    Endpoint("PUT", "/apps/{app_id}/identity-headers", put_headers, "deploy",
             "Turn an app's identity headers on or off (its developers)", "json"),
]
