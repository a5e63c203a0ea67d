"""Who is visiting an app host, and what they may do there, answered fast.

The proxy asks these questions on the request path, so every answer that needs the
database is cached for `CACHE_SECONDS` (a few seconds) and computed in a worker thread:
the user behind a session (by id), the user's role in a workspace, `can_view` per (user,
app) for private apps, and a user's favorites. A static asset of a private app costs an
HMAC check of the session cookie and a dict lookup; no query.

A session cookie names a user id; the user must still exist (an account deleted from the
dashboard stops working within `CACHE_SECONDS`). Site admins count as admin of every
workspace (`backend.workspaces.role_in`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from aiohttp import web

from backend import read_model
from backend.accounts import auth, identity
from backend.apps import favorites, sharing
from backend.context import Context
from models import User

CACHE_SECONDS = 5.0
T = TypeVar("T")
_CACHE_MAX = 20_000


class TTLCache:
    """key -> value for `ttl` seconds; cleared whole when it grows past `max_size`."""

    def __init__(self, ttl: float = CACHE_SECONDS, max_size: int = _CACHE_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._data: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        found = self._data.get(key)
        if found is None or found[0] < self._clock():
            return False, None
        return True, found[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) >= self.max_size:
            self._data.clear()
        self._data[key] = (self._clock() + self.ttl, value)

    def forget(self, key: Any) -> None:
        self._data.pop(key, None)


@dataclass(frozen=True)
class Visitor:
    """The visitor of one request on an app host."""

    session: identity.Session | None  # a valid stcloud_session cookie (maybe anonymous)
    user: User | None  # the signed-in user, when the session names one that exists
    visitor_id: str | None  # a valid stcloud_visitor cookie

    def viewer_key(self) -> str:
        """"u:<user id>", else "v:<visitor id>" (a one-off id without a visitor cookie)."""
        if self.user is not None:
            return f"u:{self.user.id}"
        return f"v:{self.visitor_id or identity.new_visitor_id()}"


ANONYMOUS = Visitor(None, None, None)


class Access:
    def __init__(self, ctx: Context, key: bytes | None = None) -> None:
        self.ctx = ctx
        self.key = key or identity.server_key(ctx)
        self.users = TTLCache()
        self.roles = TTLCache()
        self.views = TTLCache()
        self.favorites = TTLCache()

    async def _cached(self, cache: TTLCache, key: Any, compute: Callable[[], T]) -> T:
        hit, value = cache.get(key)
        if hit:
            return cast(T, value)
        computed = await asyncio.to_thread(compute)
        cache.put(key, computed)
        return computed

    # Who --------------------------------------------------------------------------------
    async def visitor(self, request: web.BaseRequest, subdomain: str) -> Visitor:
        session = identity.read_session(
            self.key, request.cookies.get(identity.SESSION_COOKIE), subdomain)
        user = None
        if session is not None and not session.anonymous:
            user = await self.user(session.user_id)
            if user is not None and user.username != session.username:
                user = None  # the id was reused by another account
            # A password change signs out every session issued before it (the cookie's
            # issue time is in whole seconds: one second of grace).
            if user is not None and not auth.session_is_current(user, session.issued + 1):
                user = None
        visitor_id = request.cookies.get(identity.VISITOR_COOKIE)
        return Visitor(session, user, visitor_id if identity.valid_visitor_id(visitor_id)
                       else None)

    async def user(self, user_id: int) -> User | None:
        return await self._cached(self.users, user_id,
                                  lambda: read_model.user_by_id(self.ctx, user_id))

    async def user_by_name(self, username: str) -> User | None:
        return await asyncio.to_thread(read_model.user_by_name, self.ctx, username)

    # What they may do ------------------------------------------------------------------
    async def role(self, user: User | None, workspace_id: int) -> str | None:
        """admin | developer | viewer | None (not a member, or anonymous)."""
        if user is None:
            return None

        return await self._cached(self.roles, (user.id, workspace_id),
                                  lambda: read_model.role_of(self.ctx, user, workspace_id))

    async def can_view(self, user: User | None, app_id: int) -> bool:
        return await self._cached(self.views, (user.id if user else 0, app_id),
                                  lambda: sharing.can_view(self.ctx, user, app_id))

    async def is_favorite(self, user: User, app_id: int) -> bool:
        ids = await self._cached(self.favorites, user.id,
                                 lambda: favorites.favorite_ids(self.ctx, user))
        return app_id in ids

    def forget_favorites(self, user: User) -> None:
        self.favorites.forget(user.id)


def can_manage(role: str | None) -> bool:
    """Developer (push) access: the Manage app button, logs, reboot, the in-app star."""
    return role in ("developer", "admin")


def client_key(request: web.BaseRequest) -> str:
    """A coarse id of the client (address and user agent) for rate limits and loop guards."""
    agent = request.headers.get("User-Agent", "")
    return f"{request.remote}|{hashlib.sha1(agent.encode()).hexdigest()[:12]}"


class RateLimit:
    """At most `limit` events per key in `period` seconds (a sliding window)."""

    def __init__(self, limit: int, period: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._hits: dict[Any, list[float]] = {}

    def allow(self, key: Any) -> bool:
        now = self._clock()
        if len(self._hits) > _CACHE_MAX:
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.period}
        hits = [t for t in self._hits.get(key, []) if t > now - self.period]
        if len(hits) >= self.limit:
            self._hits[key] = hits
            return False
        hits.append(now)
        self._hits[key] = hits
        return True
