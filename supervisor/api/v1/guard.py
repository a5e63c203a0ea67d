"""Authentication, token scopes and the rate limit in front of every REST API handler (the
rules are in the package docstring, `supervisor/api/v1/__init__.py`)."""

from __future__ import annotations

import hashlib
import math

from aiohttp import web

from backend.accounts import api_tokens
from backend.context import Context
from backend.errors import BackendError
from supervisor.api.support import ApiError, Handler, TokenBucket, backend_error, bearer, error
from supervisor.api.v1.endpoint import SCOPES_KEY, USER_KEY, call


class Guard:
    """Wraps handlers: rate limit per presented token (or client address), then the token
    and its scope, then backend errors in the API's error shape."""

    def __init__(self, ctx: Context, limiter: TokenBucket) -> None:
        self.ctx = ctx
        self.limiter = limiter

    def wrap(self, scope: str | None, handler: Handler) -> Handler:
        ctx, limiter = self.ctx, self.limiter

        async def wrapped(request: web.Request) -> web.StreamResponse:
            token = bearer(request)
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
