"""`/settings`: the server's settings for site admins, as on the Server settings page
(`backend.platform.settings_view`, `backend.platform.setting_overrides`).

    GET   → {"settings": [{"name", "value", "source", "live"}]}: every setting's effective
          value (secrets only as set or not) and where it came from; `live` says whether it
          can be changed while the platform runs
    PATCH {"smtp_host": "mail.example.org", "smtp_port": 2525, "support_url": null}
          → {"changed": [names], "settings": [...]}: changes live settings, checked
          together (null puts one back to its value from the file, the environment or the
          default); a setting that cannot change live, or a bad value, is 422 with `field`
          and nothing changes
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from backend.context import Context
from backend.platform import setting_overrides, settings_view
from models import User
from supervisor.api.support import ApiError, json_body, ok
from supervisor.api.v1.endpoint import Endpoint, call, user_of


def _rows(ctx: Context, user: User) -> list[dict[str, Any]]:
    return [{"name": r.name, "value": r.value, "source": r.source,
             "live": r.name in setting_overrides.LIVE}
            for r in settings_view.settings_for_admin(ctx, user)]


def _patch(ctx: Context, user: User, body: dict[str, Any]) -> dict[str, Any]:
    changed = setting_overrides.change_many(
        ctx, user, {k: v for k, v in body.items() if v is not None})
    changed += [name for name, value in body.items()
                if value is None and setting_overrides.reset(ctx, user, name)]
    return {"changed": changed, "settings": _rows(ctx, user)}


async def get_settings(ctx: Context, request: web.Request) -> web.Response:
    return ok({"settings": await call(_rows, ctx, user_of(request))})


async def patch_settings(ctx: Context, request: web.Request) -> web.Response:
    body = await json_body(request)
    if not body:
        raise ApiError(422, "invalid", "Name at least one setting, e.g. "
                       "{\"smtp_host\": \"mail.example.org\"}.")
    return ok(await call(_patch, ctx, user_of(request), body))


ENDPOINTS = [
    Endpoint("GET", "/settings", get_settings, "admin",
             "Every setting, its effective value and source (site admins)"),
    Endpoint("PATCH", "/settings", patch_settings, "admin",
             "Change settings live, without a restart (site admins)", "json"),
]
