"""`/apps/{app_id}/sleep-policy`: read an app's sleep policy and when it next sleeps, and
set it (`backend.apps.sleep_settings` says who may and within which bounds).

    GET  → {"app_id", "kind", "policy": "idle 12h", "wake_on_visit", "description",
            "state", "next_sleep_at", "next_sleep", "can_manage"}
    PUT  {"policy": "schedule mon-fri 08:00-18:00 Europe/Berlin", "wake_on_visit": true}
         (`wake_on_visit` optional: left out keeps the app's choice) → the same
"""

from __future__ import annotations

from aiohttp import web

from backend.apps import sleep_settings
from backend.context import Context
from supervisor.api.support import ApiError, json_body, ok, path_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of


async def get_policy(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(sleep_settings.get_policy, ctx, user_of(request),
                         path_int(request, "app_id")))


async def put_policy(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    body = await json_body(request)
    unknown = set(body) - {"policy", "wake_on_visit"}
    if unknown:
        raise ApiError(422, "invalid", f"Unknown field {min(unknown)}; the body is "
                       "{\"policy\": \"idle 12h\", \"wake_on_visit\": false}.",
                       field=min(unknown))
    text, wake = body.get("policy"), body.get("wake_on_visit")
    if not isinstance(text, str):
        raise ApiError(422, "invalid", "policy is text such as \"idle 12h\", \"never\" or "
                       "\"schedule mon-fri 08:00-18:00 Europe/Berlin\".", field="policy")
    if wake is not None and not isinstance(wake, bool):
        raise ApiError(422, "invalid", "wake_on_visit is true or false.",
                       field="wake_on_visit")
    return ok(await call(sleep_settings.set_policy, ctx, user_of(request), app_id, text,
                         wake))


ENDPOINTS = [
    Endpoint("GET", "/apps/{app_id}/sleep-policy", get_policy, "read",
             "An app's sleep policy and when it next sleeps"),
    Endpoint("PUT", "/apps/{app_id}/sleep-policy", put_policy, "deploy",
             "Set an app's sleep policy (its developers, within the server's bounds)",
             "json"),
]
