"""`/notifications`: your notices (over limit, crashed, ...) and marking them read."""

from __future__ import annotations

from aiohttp import web

from backend.context import Context
from backend.platform import inbox
from supervisor.api.support import MAX_ID, ApiError, json_body, ok, query_int
from supervisor.api.v1.endpoint import DEFAULT_LIMIT, Endpoint, call, user_of


async def list_notifications(ctx: Context, request: web.Request) -> web.Response:
    user = user_of(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, inbox.MAX_LIST)
    unread_only = request.query.get("unread", "0") in ("1", "true", "yes")
    rows = await call(inbox.list_notices, ctx, user, limit, unread_only)
    unread = await call(inbox.unread_count, ctx, user)
    return ok({"unread": unread, "notifications": [
        {"id": n.id, "app_id": n.app_id, "app": n.app_subdomain or None, "kind": n.kind,
         "subject": n.subject, "text": n.body_text, "emailed": n.emailed,
         "created_at": n.created_at, "read": n.read} for n in rows]})


async def read_notifications(ctx: Context, request: web.Request) -> web.Response:
    body = await json_body(request)
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


ENDPOINTS = [
    Endpoint("GET", "/notifications", list_notifications, "read",
             "Your notices (over limit, crashed, ...), newest first, and the unread count "
             "(?limit=, ?unread=1)"),
    Endpoint("POST", "/notifications/read", read_notifications, "read",
             "Mark your notices read: {\"ids\": [...]} or {\"all\": true}", "json"),
]
