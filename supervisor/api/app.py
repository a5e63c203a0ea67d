"""The supervisor's own HTTP endpoints, mounted by the proxy under `/api/v1` on the
dashboard host (`start_proxy(settings, routes, api=make_api_app(ctx, reconciler))`):

- `GET /github/callback`: the GitHub OAuth app's callback (backend.github.accounts).
- `POST /hooks/github`: GitHub push webhooks. 401 without `X-Hub-Signature-256`, 403 when
  no app deploying that repository has a secret that verifies it (the answer does not say
  which); `ping` answers 200; a `push` to an app's branch asks the reconciler to sync that
  app (202 with the app ids). Nothing else acts.
- `POST /hooks/gitlab`, `/hooks/gitea` (Gitea and Forgejo), `/hooks/bitbucket` (Cloud and
  Data Center): the same for those hosts' push events and proofs (`backend.apps.push_formats`).
- `POST /hooks/apps/{app_id}`: the same for any git host, authorised by the app's secret
  (`?token=`, `X-Stcloud-Token` or `Authorization: Bearer`): 401 without, 403 wrong.
- `GET /health`: `{"status": "ok", "engine", "apps": {state: count}}` for monitoring.
- The token-authenticated REST API (apps, logs, secrets, analytics, workspaces, members,
  `GET /openapi.json`): `supervisor/api/v1/`.

A push only wakes the app's worker: the worker asks the remote for the branch's commit
itself (`supervisor/sources/updates.py`), so a forged or replayed payload cannot choose what runs.
No handler logs a secret, a token or a signature.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from backend import read_model
from backend.apps import push_formats
from backend.context import Context
from backend.errors import BackendError
from backend.github import accounts as github_service
from backend.platform import status
from supervisor.api import v1
from supervisor.api.hooks import PushHooks, PushReceiver
from supervisor.api.openapi import openapi_document
from supervisor.api.support import ApiRoute, json_errors

log = logging.getLogger("supervisor.api")
OPENAPI_KEY = web.AppKey("openapi", dict)  # the document `GET /openapi.json` serves
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def make_api_app(ctx: Context, reconciler: PushReceiver, *, rate: float = 20.0,
                 burst: int = 40, clock: Callable[[], float] | None = None) -> web.Application:
    """The API sub-application; `reconciler` needs `push_detected(app_id, source)` and
    `runtime.name`. `rate`/`burst`/`clock` tune the REST API's per-token rate limit."""
    push = PushHooks(ctx, reconciler)

    async def health(request: web.Request) -> web.Response:
        states = await asyncio.to_thread(status.app_state_counts, ctx)
        return web.json_response({"status": "ok", "engine": reconciler.runtime.name,
                                  "apps": states})

    async def github_callback(request: web.Request) -> web.Response:
        """The GitHub OAuth app's callback: the `state` names the user who started it."""
        code, state = request.query.get("code", ""), request.query.get("state", "")
        back = ctx.settings.public_url() + "/account"
        try:
            user_id = github_service.oauth_state_user(ctx, state)
            user = read_model.user_by_id(ctx, user_id)
            if user is None or not code:
                raise BackendError("The GitHub sign-in did not come back complete.")
            await asyncio.to_thread(github_service.oauth_exchange, ctx, user, code, state)
        except BackendError as e:
            log.warning("GitHub OAuth callback refused: %s", e)
            raise web.HTTPFound(back + "?github_error=" + quote(str(e)[:200])) from None
        raise web.HTTPFound(back + "?github=connected")

    routes = v1.make_routes(ctx, rate=rate, burst=burst,
                            **({"clock": clock} if clock else {}))
    extra = [
        ApiRoute("GET", "/github/callback", github_callback, None,
                 "GitHub OAuth callback (redirects to the Account page)", produces=()),
        ApiRoute("POST", "/hooks/github", push.github, None,
                 "GitHub push webhook (X-Hub-Signature-256)", "json"),
        *(ApiRoute("POST", f"/hooks/{key}", push.host_hook(key), None,
                   f"{fmt.name} push webhook ({' or '.join(fmt.proof_headers)})", "json")
          for key, fmt in push_formats.FORMATS.items()),
        ApiRoute("POST", "/hooks/apps/{app_id}", push.generic, None,
                 "Generic push hook (the app's webhook secret)"),
        ApiRoute("GET", "/health", health, None, "Health and app counts"),
    ]
    document: dict[str, Any] = {}

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    extra.append(ApiRoute("GET", "/openapi.json", openapi, None,
                          "This OpenAPI 3.1 document"))
    document.update(openapi_document(routes, extra))
    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
    app[OPENAPI_KEY] = document
    for r in routes + extra:
        app.router.add_route(r.method, r.path, r.handler)
    return app
