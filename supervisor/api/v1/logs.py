"""`/apps/{app_id}/logs` (a tail, or followed as a text stream) and `/apps/{app_id}/events`
(state transitions)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from backend.apps import logs as app_logs
from backend.apps import service as app_service
from backend.context import Context
from backend.errors import BackendError
from supervisor.api.support import ok, path_int, query_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of

FOLLOW_MAX_SECONDS = 600.0
FOLLOW_POLL = 0.25


async def logs(ctx: Context, request: web.Request) -> web.StreamResponse:
    app_id, user = path_int(request, "app_id"), user_of(request)
    kind = request.query.get("kind", "app")
    first = await call(app_logs.read_tail, ctx, user, app_id, kind,
                       query_int(request, "max_bytes", 64_000, 1, 1_000_000))
    if request.query.get("follow", "") not in ("1", "true", "yes"):
        return ok(first)
    max_seconds = min(float(query_int(request, "max_seconds", int(FOLLOW_MAX_SECONDS),
                                      1, int(FOLLOW_MAX_SECONDS))), FOLLOW_MAX_SECONDS)
    return await follow(ctx, request, app_id, kind, first, max_seconds)


async def follow(ctx: Context, request: web.Request, app_id: int, kind: str,
                 first: app_logs.LogTail, max_seconds: float) -> web.StreamResponse:
    """Stream the log as text: the tail `first`, then whole new lines as they are written
    (as `backend.apps.logs` shows them: secrets masked), until the client goes or
    `max_seconds` pass."""
    user = user_of(request)
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
                text, offset = await call(app_logs.read_more, ctx, user, app_id, kind, offset)
            except BackendError:  # the app was deleted, or the user lost access: the end
                break
            if text:
                await resp.write(text.encode())
            await asyncio.sleep(FOLLOW_POLL)  # polling the file, not a synchronisation
    except (ConnectionResetError, asyncio.CancelledError):
        return resp
    await resp.write_eof()
    return resp


async def events(ctx: Context, request: web.Request) -> web.Response:
    rows = await call(app_service.app_events, ctx, user_of(request),
                      path_int(request, "app_id"), query_int(request, "limit", 50, 1, 500))
    return ok({"events": [{"id": e.id, "time": e.time, "from_state": e.from_state,
                           "to_state": e.to_state, "reason": e.reason} for e in rows]})


ENDPOINTS = [
    Endpoint("GET", "/apps/{app_id}/logs", logs, "read",
             "Log tail (?kind=app|build); ?follow=1 streams text/plain until disconnect "
             "or ?max_seconds=", produces=("application/json", "text/plain")),
    Endpoint("GET", "/apps/{app_id}/events", events, "read", "State transitions, newest "
             "first"),
]
