"""The REST API for people and scripts (`/api/v1/...` on the dashboard host), as used by the
CLI (`python -m supervisor.cli`). Every handler calls `backend/`, which enforces workspace
roles; this module adds authentication, token scopes, rate limiting, JSON and errors.

- Auth: `Authorization: Bearer stc_...` (a personal API token, `backend.accounts.api_tokens`).
  Missing, unknown or revoked → 401 `unauthorized`.
- Scopes: `read` for GET routes (and for marking your own notifications read), `deploy`
  for app changes, `admin` for members and accounts → 403 `insufficient_scope` when the
  token lacks it.
- No CSRF check: these routes authenticate only by the bearer header, which a browser
  never attaches on its own (no cookie is read here), so a cross-site page cannot make a
  signed-in user's browser call them with credentials.
- Rate limit: a token bucket per presented token (or per client address without one),
  20 requests/s with bursts of 40 by default → 429 `rate_limited` with `Retry-After`.
- Errors: `{"error": {"code", "message"[, "field"]}}`; codes: `unauthorized` 401,
  `insufficient_scope` 403, `forbidden` 403 (role), `not_found` 404, `invalid` 422 (with
  `field`), `bad_request` 400, `conflict` 409, `rate_limited` 429, `method_not_allowed` 405.
- Secrets are write-only: `PUT /apps/{id}/secrets` answers with counts and variable names,
  never values; no route returns them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from backend import app_logs, app_settings, inbox, sharing, workspaces
from backend.analytics import reports as analytics
from backend.accounts import api_tokens
from backend.analytics import usage
from backend.accounts import users
from backend import apps as app_service
from backend import deploy as deploy_usecase
from backend import secrets as app_secrets
from backend.context import Context
from backend.errors import BackendError
from models import User
from supervisor.api_support import (
    MAX_ID,
    ApiError,
    Handler,
    Route,
    TokenBucket,
    _bearer,
    _int,
    _json_body,
    _query_int,
    backend_error,
    error,
    json_errors,
    ok,
    openapi_document,
)

__all__ = ["Route", "json_errors", "make_routes", "openapi_document"]

USER_KEY = web.RequestKey("api_user", User)
SCOPES_KEY = web.RequestKey("api_scopes", frozenset)
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
FOLLOW_MAX_SECONDS = 600.0
FOLLOW_POLL = 0.25

def make_routes(ctx: Context, reconciler: Any, *, rate: float = 20.0, burst: int = 40,
                clock: Callable[[], float] = time.monotonic) -> list[Route]:
    limiter = TokenBucket(rate, burst, clock)

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return asyncio.to_thread(fn, *args, **kwargs)

    def guard(scope: str | None, handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            token = _bearer(request)
            key = "t:" + hashlib.sha256(token.encode()).hexdigest() if token else \
                "ip:" + (request.remote or "")
            wait = limiter.take(key)
            if wait:
                return error(429, "rate_limited", "Too many requests; slow down.",
                             headers={"Retry-After": str(max(1, math.ceil(wait)))})
            try:
                if scope is not None:
                    if not token:
                        raise ApiError(401, "unauthorized", "Send an API token: "
                                       "Authorization: Bearer stc_...")
                    found = await call(api_tokens.authenticate_token, ctx, token)
                    if found is None:
                        raise ApiError(401, "unauthorized", "The API token is unknown or "
                                       "revoked; create a new one on your Account page.")
                    user, scopes = found
                    if scope not in scopes:
                        raise ApiError(403, "insufficient_scope", f"This token lacks the "
                                       f"'{scope}' scope.", scope=scope)
                    request[USER_KEY] = user
                    request[SCOPES_KEY] = scopes
                return await handler(request)
            except ApiError as e:
                return e.response
            except BackendError as e:
                return backend_error(e)
        wrapped.__doc__ = handler.__doc__
        return wrapped

    def user_of(request: web.Request) -> User:
        return request[USER_KEY]

    # Apps --------------------------------------------------------------------------------
    async def list_apps(request: web.Request) -> web.Response:
        user = user_of(request)
        limit = _query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        page = _query_int(request, "page", 0, 1, 1_000_000)
        start = (page - 1) * limit if page else \
            _query_int(request, "cursor", 0, 0, 10_000_000)
        ws_raw = request.query.get("workspace")
        ws = _query_int(request, "workspace", 0, 1, MAX_ID) if ws_raw else None
        views = await call(app_service.list_apps, ctx, user, ws)
        chunk = views[start:start + limit]
        more = start + limit < len(views)
        return ok({"apps": chunk, "total": len(views),
                   "next_cursor": str(start + limit) if more else None})

    async def get_app(request: web.Request) -> web.Response:
        return ok(await call(app_service.get_app, ctx, user_of(request),
                             _int(request, "app_id")))

    async def deploy(request: web.Request) -> web.Response:
        body = await _json_body(request)
        known = {"repo_url", "branch", "main_file", "subdomain", "python_version", "secrets"}
        unknown = set(body) - known
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
        wanted = deploy_usecase.DeployRequest(**fields, secrets=secrets_text or "")
        view = await call(deploy_usecase.deploy, ctx, user_of(request), wanted)
        return ok(view, 201)

    async def patch_app(request: web.Request) -> web.Response:
        app_id, user = _int(request, "app_id"), user_of(request)
        body = await _json_body(request)
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

    async def reboot(request: web.Request) -> web.Response:
        return ok(await call(app_service.reboot_app, ctx, user_of(request),
                             _int(request, "app_id")), 202)

    async def wake(request: web.Request) -> web.Response:
        app_id = _int(request, "app_id")
        state = await call(app_service.wake_app, ctx, user_of(request), app_id)
        return ok({"id": app_id, "state": state}, 202 if state == "starting" else 200)

    async def delete(request: web.Request) -> web.Response:
        app_id = _int(request, "app_id")
        await call(app_service.delete_app, ctx, user_of(request), app_id)
        return ok({"id": app_id, "state": "deleting"}, 202)

    async def logs(request: web.Request) -> web.StreamResponse:
        app_id, user = _int(request, "app_id"), user_of(request)
        kind = request.query.get("kind", "app")
        first = await call(app_logs.read_tail, ctx, user, app_id, kind,
                           _query_int(request, "max_bytes", 64_000, 1, 1_000_000))
        if request.query.get("follow", "") not in ("1", "true", "yes"):
            return ok(first)
        max_seconds = min(float(_query_int(request, "max_seconds", int(FOLLOW_MAX_SECONDS),
                                           1, int(FOLLOW_MAX_SECONDS))), FOLLOW_MAX_SECONDS)
        return await _follow(request, app_id, kind, first, max_seconds)

    async def _follow(request: web.Request, app_id: int, kind: str,
                      first: app_logs.LogTail, max_seconds: float) -> web.StreamResponse:
        path = app_logs.KINDS[kind](ctx.settings, app_id)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           "Cache-Control": "no-store",
                                           "X-Content-Type-Options": "nosniff"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(first.text.encode())
        offset = first.size
        deadline = time.monotonic() + max_seconds
        try:
            while time.monotonic() < deadline:
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size < offset:  # rotated or truncated: start over
                    offset = 0
                if size > offset:
                    data = await call(_read_from, path, offset, min(size - offset, 1_000_000))
                    cut = data.rfind(b"\n") + 1  # whole lines only
                    if cut:
                        text = data[:cut].decode("utf-8", errors="replace")
                        text = app_logs.shown(ctx, app_id, kind, text)
                        await resp.write(text.encode())
                        offset += cut
                await asyncio.sleep(FOLLOW_POLL)  # polling the file, not a synchronisation
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        await resp.write_eof()
        return resp

    async def events(request: web.Request) -> web.Response:
        rows = await call(app_service.app_events, ctx, user_of(request),
                          _int(request, "app_id"), _query_int(request, "limit", 50, 1, 500))
        return ok({"events": [{"id": e.id, "time": e.time, "from_state": e.from_state,
                               "to_state": e.to_state, "reason": e.reason} for e in rows]})

    async def put_secrets(request: web.Request) -> web.Response:
        app_id = _int(request, "app_id")
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

    async def app_analytics(request: web.Request) -> web.Response:
        app_id, user = _int(request, "app_id"), user_of(request)
        viewers = await call(analytics.app_viewers, ctx, user, app_id)
        view = await call(app_service.get_app, ctx, user, app_id)
        monthly = await call(analytics.workspace_monthly_viewers, ctx, user, view.workspace_id)
        return ok({"app_id": app_id, "visibility": viewers.visibility,
                   "total_unique_viewers": viewers.total_unique,
                   "total_views": viewers.total_views,
                   "recent_viewers": [{"name": r.display_name, "kind": r.kind,
                                       "last_view": r.last_view, "views": r.views}
                                      for r in viewers.recent],
                   "workspace_monthly_viewers": [
                       {"month": p.month, "viewers": p.viewers, "complete": p.complete}
                       for p in monthly]})

    async def app_usage(request: web.Request) -> web.Response:
        app_id = _int(request, "app_id")
        hours = _query_float(request, "hours", usage.DEFAULT_HOURS, usage.MAX_HOURS)
        series = await call(usage.app_usage, ctx, user_of(request), app_id, hours)
        return ok({"app_id": app_id, "since": series.since, "until": series.until,
                   "memory_limit_bytes": series.memory_limit_bytes,
                   "downsampled": series.downsampled,
                   "points": [{"at": p.at, "memory_bytes": p.memory_bytes,
                               "peak_memory_bytes": p.peak_memory_bytes,
                               "memory_limit_bytes": p.memory_limit_bytes,
                               "cpu_percent": p.cpu_percent} for p in series.points]})

    # Notifications -----------------------------------------------------------------------
    async def list_notifications(request: web.Request) -> web.Response:
        user = user_of(request)
        limit = _query_int(request, "limit", DEFAULT_LIMIT, 1, inbox.MAX_LIST)
        unread_only = request.query.get("unread", "0") in ("1", "true", "yes")
        rows = await call(inbox.list_notices, ctx, user, limit, unread_only)
        unread = await call(inbox.unread_count, ctx, user)
        return ok({"unread": unread, "notifications": [
            {"id": n.id, "app_id": n.app_id, "app": n.app_subdomain or None, "kind": n.kind,
             "subject": n.subject, "text": n.body_text, "emailed": n.emailed,
             "created_at": n.created_at, "read": n.read} for n in rows]})

    async def read_notifications(request: web.Request) -> web.Response:
        body = await _json_body(request)
        ids, every = body.get("ids"), body.get("all", False)
        if not isinstance(every, bool):
            raise ApiError(422, "invalid", "all is true or false.", field="all")
        if every:
            marked = await call(inbox.mark_all_read, ctx, user_of(request))
        elif isinstance(ids, list) and ids and len(ids) <= inbox.MAX_LIST and all(
                isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID
                for i in ids):
            marked = await call(inbox.mark_read, ctx, user_of(request), ids)
        else:
            raise ApiError(422, "invalid", 'Send {"all": true} or {"ids": [notification ids]} '
                           f"(1 to {inbox.MAX_LIST} positive integers).", field="ids")
        return ok({"marked_read": marked,
                   "unread": await call(inbox.unread_count, ctx, user_of(request))})

    # Workspaces and accounts -------------------------------------------------------------
    async def list_workspaces(request: web.Request) -> web.Response:
        rows = await call(workspaces.list_workspaces, ctx, user_of(request))
        return ok({"workspaces": [{"id": w.id, "name": w.name, "role": r} for w, r in rows]})

    async def list_members(request: web.Request) -> web.Response:
        rows = await call(workspaces.list_members, ctx, user_of(request),
                          _int(request, "workspace_id"))
        return ok({"members": [{"username": u.username, "name": u.name, "role": r}
                               for u, r in rows]})

    async def put_member(request: web.Request) -> web.Response:
        ws_id, who = _int(request, "workspace_id"), request.match_info["username"]
        body = await _json_body(request)
        role = body.get("role")
        if not isinstance(role, str):
            raise ApiError(422, "invalid", "role is admin, developer or viewer.", field="role")
        await call(workspaces.set_member, ctx, user_of(request), ws_id, who, role)
        return ok({"workspace_id": ws_id, "username": who.strip().lower(), "role": role})

    async def delete_member(request: web.Request) -> web.Response:
        ws_id, who = _int(request, "workspace_id"), request.match_info["username"]
        await call(workspaces.remove_member, ctx, user_of(request), ws_id, who)
        return ok({"workspace_id": ws_id, "username": who.strip().lower(), "removed": True})

    async def list_users(request: web.Request) -> web.Response:
        rows = await call(users.list_accounts, ctx, user_of(request))
        return ok({"users": [{"id": u.id, "username": u.username, "name": u.name,
                              "email": u.email, "is_admin": u.is_admin} for u in rows]})

    async def whoami(request: web.Request) -> web.Response:
        user = user_of(request)
        return ok({"username": user.username, "name": user.name, "is_admin": user.is_admin,
                   "scopes": sorted(request[SCOPES_KEY],
                                    key=api_tokens.SCOPES.index)})

    table = [
        Route("GET", "/me", whoami, "read", "The token's user and scopes"),
        Route("GET", "/apps", list_apps, "read",
              "Apps you can see, newest first (?limit=&cursor= or ?page=, ?workspace=)"),
        Route("POST", "/apps", deploy, "deploy", "Deploy an app", "json"),
        Route("GET", "/apps/{app_id}", get_app, "read", "One app"),
        Route("PATCH", "/apps/{app_id}", patch_app, "deploy",
              "Change visibility, subdomain or Python version", "json"),
        Route("DELETE", "/apps/{app_id}", delete, "deploy", "Delete an app"),
        Route("POST", "/apps/{app_id}/reboot", reboot, "deploy", "Reboot an app"),
        Route("POST", "/apps/{app_id}/wake", wake, "deploy", "Wake a sleeping app"),
        Route("GET", "/apps/{app_id}/logs", logs, "read",
              "Log tail (?kind=app|build); ?follow=1 streams text/plain until disconnect "
              "or ?max_seconds=", produces=("application/json", "text/plain")),
        Route("GET", "/apps/{app_id}/events", events, "read", "State transitions, newest "
              "first"),
        Route("PUT", "/apps/{app_id}/secrets", put_secrets, "deploy",
              "Replace the app's secrets (TOML body; write-only)", "toml"),
        Route("GET", "/apps/{app_id}/analytics", app_analytics, "read", "Viewer analytics"),
        Route("GET", "/apps/{app_id}/usage", app_usage, "read",
              "Memory (and CPU) use over the last ?hours= (default 24, at most 2160), at "
              "most 500 points"),
        Route("GET", "/notifications", list_notifications, "read",
              "Your notices (over limit, crashed, ...), newest first, and the unread count "
              "(?limit=, ?unread=1)"),
        Route("POST", "/notifications/read", read_notifications, "read",
              "Mark your notices read: {\"ids\": [...]} or {\"all\": true}", "json"),
        Route("GET", "/workspaces", list_workspaces, "read", "Workspaces you belong to"),
        Route("GET", "/workspaces/{workspace_id}/members", list_members, "read",
              "Members and roles"),
        Route("PUT", "/workspaces/{workspace_id}/members/{username}", put_member, "admin",
              "Add a member or change a role", "json"),
        Route("DELETE", "/workspaces/{workspace_id}/members/{username}", delete_member,
              "admin", "Remove a member"),
        Route("GET", "/users", list_users, "admin", "Accounts (site admins)"),
    ]
    return [dataclasses.replace(r, handler=guard(r.scope, r.handler)) for r in table]


def _query_float(request: web.Request, name: str, default: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= high:  # also refuses nan and inf
        raise ApiError(422, "invalid", f"{name} is a number above 0 and at most {high:g}.",
                       field=name)
    return value


def _read_from(path: Any, offset: int, count: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(count)
