"""What every resource module of the REST API shares: the endpoint description (a handler
that takes the backend context), the authenticated user of a request, and running a
blocking backend call off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from backend.context import Context
from models import User
from supervisor.api.support import ApiRoute, Handler

USER_KEY = web.RequestKey("api_user", User)
SCOPES_KEY = web.RequestKey("api_scopes", frozenset)
DEFAULT_LIMIT, MAX_LIMIT = 50, 200

ContextHandler = Callable[[Context, web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


@dataclass(frozen=True)
class Endpoint:
    """One route of a resource; `scope` None needs no token (see `ApiRoute`)."""

    method: str
    path: str
    handler: ContextHandler
    scope: str | None
    summary: str
    body: str = ""  # "json" | "toml" | ""
    produces: tuple[str, ...] = ("application/json",)

    def bound(self, ctx: Context) -> Handler:
        """The aiohttp handler of this endpoint for the backend context `ctx`."""
        handler = self.handler

        async def bound(request: web.Request) -> web.StreamResponse:
            return await handler(ctx, request)
        bound.__doc__ = handler.__doc__
        return bound

    def route(self, handler: Handler) -> ApiRoute:
        """This endpoint served by `handler` (the bound, guarded one)."""
        return ApiRoute(self.method, self.path, handler, self.scope, self.summary, self.body,
                     self.produces)


def user_of(request: web.Request) -> User:
    """The user the request's API token belongs to (set by the guard)."""
    return request[USER_KEY]


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Awaitable[T]:
    """Run a blocking backend call in a worker thread."""
    return asyncio.to_thread(fn, *args, **kwargs)
