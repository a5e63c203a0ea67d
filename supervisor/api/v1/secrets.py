"""`PUT /apps/{app_id}/secrets`: replace an app's secrets (write-only: the answer names the
keys and environment variables, never a value)."""

from __future__ import annotations

from aiohttp import web

from backend.apps import secrets as app_secrets
from backend.context import Context
from supervisor.api.support import ApiError, ok, path_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of


async def put_secrets(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "invalid", "Secrets are UTF-8 TOML text.",
                       field="secrets") from None
    restart = request.query.get("restart", "1") not in ("0", "false", "no")
    saved = await call(app_secrets.set_secrets, ctx, user_of(request), app_id, text,
                       restart)
    return ok({"id": app_id, "keys": saved.keys, "env_vars": saved.env_vars,
               "restarted": saved.restarted})


ENDPOINTS = [
    Endpoint("PUT", "/apps/{app_id}/secrets", put_secrets, "deploy",
             "Replace the app's secrets (TOML body; write-only)", "toml"),
]
