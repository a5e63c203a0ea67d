"""`/apps/{app_id}/previews`: an app's preview settings and its live preview apps
(`backend.apps.previews` says who may).

    GET → {"config": {"enabled", "idle_minutes", "secrets_mode", "has_own_secrets"},
           "previews": [{"preview_app_id", "number", "branch", "title", "url", "state", …}]}
    PUT {"enabled": true, "idle_minutes": 30, "secrets_mode": "app"|"none"|"own",
         "own_secrets": "TOML", "allow_forks": false} (all but enabled optional)
         → {"config": …}
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from backend.apps import previews
from backend.context import Context
from models import User
from supervisor.api.support import ApiError, json_body, ok, path_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of

FIELDS: dict[str, type | tuple[type, ...]] = {
    "enabled": bool, "idle_minutes": (int, float), "secrets_mode": str, "own_secrets": str,
    "allow_forks": bool}


def _both(ctx: Context, user: User, app_id: int) -> dict[str, Any]:
    return {"config": previews.get_config(ctx, user, app_id),
            "previews": previews.list_previews(ctx, user, app_id)}


async def get_previews(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(_both, ctx, user_of(request), path_int(request, "app_id")))


async def put_previews(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    body = await json_body(request)
    for name in body:
        kind = FIELDS.get(name)
        if kind is None:
            raise ApiError(422, "invalid", f"Unknown field {name}; send enabled, "
                           "idle_minutes, secrets_mode or own_secrets.", field=name)
        if not isinstance(body[name], kind) or (name == "idle_minutes" and
                                                isinstance(body[name], bool)):
            raise ApiError(422, "invalid", f"{name} has the wrong type.", field=name)
    if "enabled" not in body:
        raise ApiError(422, "invalid", "enabled (true or false) is required.", field="enabled")
    idle = body.get("idle_minutes")
    config = await call(previews.set_config, ctx, user_of(request), app_id,
                        enabled=body["enabled"],
                        idle_minutes=float(idle) if idle is not None else None,
                        secrets_mode=body.get("secrets_mode"),
                        own_secrets=body.get("own_secrets"),
                        allow_forks=body.get("allow_forks"))
    return ok({"config": config})


ENDPOINTS = [
    Endpoint("GET", "/apps/{app_id}/previews", get_previews, "read",
             "An app's preview settings and live preview apps"),
    Endpoint("PUT", "/apps/{app_id}/previews", put_previews, "deploy",
             "Turn an app's preview apps on or off (its developers)", "json"),
]
