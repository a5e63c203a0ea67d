"""Plumbing of the REST API (`supervisor/api/v1/`): the JSON error shape and the mapping
of backend errors to it, JSON encoding of dataclasses, the per-token rate limiter, the
route description shared by the router and the OpenAPI document (`openapi.py`), request
parsing helpers, and the middleware that answers unknown routes in the error shape."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from aiohttp import web

from backend.apps import secrets as app_secrets
from backend.errors import (
    BackendError,
    Conflict,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationError,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Errors and JSON -----------------------------------------------------------------------------
def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    headers = extra.pop("headers", None) or {}
    return web.json_response({"error": {"code": code, "message": message, **extra}},
                             status=status, headers=headers)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple, frozenset, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(_jsonable(data), status=status)


def backend_error(e: BackendError) -> web.Response:
    if isinstance(e, Conflict):
        return error(409, "conflict", str(e), field=e.field)
    if isinstance(e, ValidationError):
        extra: dict[str, Any] = {"field": e.field}
        if isinstance(e, app_secrets.SecretsError) and e.line:
            extra.update(line=e.line, column=e.column)
        return error(422, "invalid", str(e), **extra)
    if isinstance(e, NotFound):
        return error(404, "not_found", str(e))
    if isinstance(e, PermissionDenied):
        return error(403, "forbidden", str(e))
    if isinstance(e, InvalidTransition):
        return error(409, "conflict", str(e))
    return error(400, "bad_request", str(e))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.response = error(status, code, message, **extra)


# Rate limiting -------------------------------------------------------------------------------
class TokenBucket:
    """Per-key token buckets: `rate` requests per second, bursts of `burst`."""

    def __init__(self, rate: float = 20.0, burst: int = 40,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.clock, self.max_keys = rate, burst, clock, max_keys
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = self.clock()
        tokens, last = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            if len(self.buckets) >= self.max_keys and key not in self.buckets:
                self.buckets.clear()  # bounded memory; forgets old clients only
            self.buckets[key] = (tokens - 1, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate


# Routes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiRoute:
    """One route of the API: what the router serves and the OpenAPI document describes."""

    method: str
    path: str
    handler: Handler
    scope: str | None  # None: no token needed
    summary: str
    body: str = ""  # "json" | "toml" | ""
    produces: tuple[str, ...] = ("application/json",)  # () : answers with a redirect


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


MAX_ID = 2**31 - 1  # ids are INTEGER columns: 32 bits on PostgreSQL, 64 on SQLite


def path_int(request: web.Request, name: str) -> int:
    """A path id; 404 for anything that cannot be a row id (not a number, < 1, too big for
    the database, which would otherwise fail with an overflow: a 500)."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, "not_found", f"No such {name.removesuffix('_id')}.")
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise ApiError(422, "invalid", f"{name} is a whole number from {lo} to {hi}.",
                       field=name)
    return value


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "The body must be a JSON object.")
    return data


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods, and bodies over the size limit, answer in the API's
    JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error(413, "body_too_large", f"The request body is larger than "
                     f"{request.client_max_size} bytes, the most this API accepts.")
    except web.HTTPMethodNotAllowed:
        return error(405, "method_not_allowed", f"{request.method} is not allowed here.")
    except web.HTTPNotFound:
        return error(404, "not_found", "No such API route; see /api/v1/openapi.json.")
