"""`/apps` and `/apps/{app_id}`: list, deploy, read, change, delete, reboot and wake apps;
put one to sleep now, stop it and move it to another workspace (`backend.apps.admin_actions`
says who may)."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from backend.apps import admin_actions, sharing
from backend.apps import deploy as deploy_usecase
from backend.apps import service as app_service
from backend.apps import settings as app_settings
from backend.context import Context
from supervisor.api.support import MAX_ID, ApiError, json_body, ok, path_int, query_int
from supervisor.api.v1 import git_credential
from supervisor.api.v1.endpoint import DEFAULT_LIMIT, MAX_LIMIT, Endpoint, call, user_of


async def list_apps(ctx: Context, request: web.Request) -> web.Response:
    user = user_of(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    page = query_int(request, "page", 0, 1, 1_000_000)
    start = (page - 1) * limit if page else \
        query_int(request, "cursor", 0, 0, 10_000_000)
    ws_raw = request.query.get("workspace")
    ws = query_int(request, "workspace", 0, 1, MAX_ID) if ws_raw else None
    views = await call(app_service.list_apps, ctx, user, ws)
    chunk = views[start:start + limit]
    more = start + limit < len(views)
    return ok({"apps": chunk, "total": len(views),
               "next_cursor": str(start + limit) if more else None})


async def get_app(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(app_service.get_app, ctx, user_of(request),
                         path_int(request, "app_id")))


async def deploy(ctx: Context, request: web.Request) -> web.Response:
    body = await json_body(request)
    known = {"repo_url", "branch", "main_file", "subdomain", "python_version", "secrets"}
    unknown = set(body) - known - git_credential.FIELDS
    if unknown:
        raise ApiError(422, "invalid", f"Unknown field {min(unknown)}.",
                       field=min(unknown))
    fields = {k: body[k] for k in known - {"secrets"} if k in body}
    for k, v in fields.items():
        if not isinstance(v, str):
            raise ApiError(422, "invalid", f"{k} is a string.", field=k)
    if "repo_url" not in fields:
        raise ApiError(422, "invalid", "repo_url is required.", field="repo_url")
    secrets_text = body.get("secrets")
    if secrets_text is not None and not isinstance(secrets_text, str):
        raise ApiError(422, "invalid", "secrets is TOML text.", field="secrets")
    credential = git_credential.credential_from(body, str(fields.get("subdomain", "")))
    wanted = deploy_usecase.DeployRequest(
        **fields, secrets=secrets_text or "", credential=credential,
        key_not_added_yet=credential is not None and credential.kind == "deploy_key")
    view = await call(deploy_usecase.deploy, ctx, user_of(request), wanted)
    if credential is not None and credential.kind == "deploy_key":
        # Shown once here (and on the app's Settings page): the repository is read only
        # after it is added there, so the first build waits for a reboot.
        return ok({**dataclasses.asdict(view), "deploy_key": credential.public_key}, 201)
    return ok(view, 201)


async def patch_app(ctx: Context, request: web.Request) -> web.Response:
    app_id, user = path_int(request, "app_id"), user_of(request)
    body = await json_body(request)
    setters = {"visibility": sharing.set_visibility,
               "subdomain": app_settings.change_subdomain,
               "python_version": app_settings.change_python_version}
    unknown = set(body) - set(setters)
    if unknown or not body:
        name = min(unknown) if unknown else "body"
        raise ApiError(422, "invalid", f"PATCH takes {', '.join(setters)}.", field=name)
    await call(app_service.get_app, ctx, user, app_id)  # 404 before any change
    for name, value in body.items():
        if not isinstance(value, str):
            raise ApiError(422, "invalid", f"{name} is a string.", field=name)
        await call(setters[name], ctx, user, app_id, value)
    return ok(await call(app_service.get_app, ctx, user, app_id))


async def reboot(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(app_service.reboot_app, ctx, user_of(request),
                         path_int(request, "app_id")), 202)


async def wake(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    state = await call(app_service.wake_app, ctx, user_of(request), app_id)
    return ok({"id": app_id, "state": state}, 202 if state == "starting" else 200)


async def sleep(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(admin_actions.sleep_now, ctx, user_of(request),
                         path_int(request, "app_id")), 202)


async def stop(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(admin_actions.stop, ctx, user_of(request),
                         path_int(request, "app_id")), 202)


async def start(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(admin_actions.wake, ctx, user_of(request),
                         path_int(request, "app_id")), 202)


async def move(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    body = await json_body(request)
    target = body.get("workspace_id")
    if set(body) != {"workspace_id"} or not isinstance(target, int) or isinstance(target, bool) \
            or not 1 <= target <= MAX_ID:
        raise ApiError(422, "invalid", "The body is {\"workspace_id\": <id>}.",
                       field="workspace_id")
    return ok(await call(admin_actions.move, ctx, user_of(request), app_id, target))


async def delete(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    await call(app_service.delete_app, ctx, user_of(request), app_id)
    return ok({"id": app_id, "state": "deleting"}, 202)


ENDPOINTS = [
    Endpoint("GET", "/apps", list_apps, "read",
             "Apps you can see, newest first (?limit=&cursor= or ?page=, ?workspace=)"),
    Endpoint("POST", "/apps", deploy, "deploy", "Deploy an app", "json"),
    Endpoint("GET", "/apps/{app_id}", get_app, "read", "One app"),
    Endpoint("PATCH", "/apps/{app_id}", patch_app, "deploy",
             "Change visibility, subdomain or Python version", "json"),
    Endpoint("DELETE", "/apps/{app_id}", delete, "deploy", "Delete an app"),
    Endpoint("POST", "/apps/{app_id}/reboot", reboot, "deploy", "Reboot an app"),
    Endpoint("POST", "/apps/{app_id}/wake", wake, "deploy", "Wake a sleeping app"),
    Endpoint("POST", "/apps/{app_id}/sleep", sleep, "deploy",
             "Put a running app to sleep now (its developers, admins)"),
    Endpoint("POST", "/apps/{app_id}/stop", stop, "deploy", "Stop an app (admins)"),
    Endpoint("POST", "/apps/{app_id}/start", start, "deploy",
             "Start a stopped app or wake a sleeping one"),
    Endpoint("POST", "/apps/{app_id}/move", move, "deploy",
             "Move an app to another workspace (admins)", "json"),
]
