"""The REST API for people and scripts (`/api/v1/...` on the dashboard host), as used by the
CLI (`python -m supervisor.cli`): one module per resource (`apps`, `logs`, `secrets`,
`analytics`, `notifications`, `workspaces`, `accounts`), `guard` in front of every
handler, and `make_routes` here, the router. Every handler calls `backend/`, which enforces
workspace roles; this package adds authentication, token scopes, rate limiting, JSON and
errors.

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

import time
from collections.abc import Callable

from backend.context import Context
from supervisor.api.openapi import openapi_document
from supervisor.api.support import ApiRoute, TokenBucket, json_errors
from supervisor.api.v1 import (
    accounts,
    analytics,
    apps,
    git_credential,
    identity_headers,
    logs,
    notifications,
    previews,
    secrets,
    server_settings,
    sleep_policy,
    workspaces,
)
from supervisor.api.v1.endpoint import Endpoint
from supervisor.api.v1.guard import Guard

__all__ = ["ApiRoute", "TokenBucket", "json_errors", "make_routes", "openapi_document"]

# The order of the OpenAPI document's paths.
ENDPOINTS: list[Endpoint] = [
    *accounts.ME, *apps.ENDPOINTS, *sleep_policy.ENDPOINTS, *git_credential.ENDPOINTS,
    *previews.ENDPOINTS,
    *identity_headers.ENDPOINTS,
    *logs.ENDPOINTS, *secrets.ENDPOINTS,
    *analytics.ENDPOINTS, *notifications.ENDPOINTS, *workspaces.ENDPOINTS, *accounts.USERS,
    *server_settings.ENDPOINTS,
]


def make_routes(ctx: Context, *, rate: float = 20.0, burst: int = 40,
                clock: Callable[[], float] = time.monotonic) -> list[ApiRoute]:
    """The token-authenticated routes, each handler bound to `ctx` and guarded (rate
    limit `rate`/s with bursts of `burst` per token, then the token's scope)."""
    guard = Guard(ctx, TokenBucket(rate, burst, clock))
    return [e.route(guard.wrap(e.scope, e.bound(ctx))) for e in ENDPOINTS]
