"""The supervisor's own HTTP endpoints, mounted by the proxy under `/api/v1` on the
dashboard host (`start_proxy(settings, routes, api=make_api_app(ctx, reconciler))`):

- `GET /github/callback`: the GitHub OAuth app's callback (backend.github.accounts).
- `POST /hooks/github`: GitHub push webhooks. 401 without `X-Hub-Signature-256`, 403 when
  no app deploying that repository has a secret that verifies it (the answer does not say
  which); `ping` answers 200; a `push` to an app's branch asks the reconciler to sync that
  app (202 with the app ids). Nothing else acts.
- `POST /hooks/apps/{app_id}`: the same for any git host, authorised by the app's secret
  (`?token=`, `X-Stcloud-Token` or `Authorization: Bearer`): 401 without, 403 wrong.
- `GET /health`: `{"status": "ok", "engine", "apps": {state: count}}` for monitoring.
- The token-authenticated REST API (apps, logs, secrets, analytics, workspaces, members,
  `GET /openapi.json`): `supervisor/api/v1/`.

A push only wakes the app's worker: the worker asks the remote for the branch's commit
itself (`supervisor/updates.py`), so a forged or replayed payload cannot choose what runs.
No handler logs a secret, a token or a signature.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web

from backend import hooks, read_model, status
from backend.context import Context
from backend.errors import BackendError
from backend.github import accounts as github_service
from supervisor.api import v1
from supervisor.api.openapi import openapi_document
from supervisor.api.support import MAX_ID, Route, json_errors
from supervisor.api.support import error as api_error

log = logging.getLogger("supervisor.api")
OPENAPI_KEY = web.AppKey("openapi", dict)  # the document `GET /openapi.json` serves
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def _error(status: int, code: str, message: str) -> web.Response:
    """The REST API's error shape (`{"error": {"code", "message"}}`), for hooks too."""
    return api_error(status, code, message)


def make_api_app(ctx: Context, reconciler, *, rate: float = 20.0,  # type: ignore[no-untyped-def]
                 burst: int = 40, clock=None) -> web.Application:
    """The API sub-application; `reconciler` needs `push_detected(app_id, source)` and
    `runtime.name`. `rate`/`burst`/`clock` tune the REST API's per-token rate limit."""

    async def github(request: web.Request) -> web.Response:
        signature = request.headers.get("X-Hub-Signature-256", "")
        if not signature:
            return _error(401, "signature_missing", "X-Hub-Signature-256 is required; set "
                          "the app's webhook secret in the GitHub webhook.")
        body = await request.read()
        try:
            payload = json.loads(body)
            repo = payload["repository"]
            urls = [repo.get(k, "") for k in ("clone_url", "ssh_url", "html_url", "git_url",
                                               "url")]
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "bad_payload", "Expected a GitHub event with a repository "
                          "(content type application/json).")
        verified = [t for t in hooks.apps_for_repo(ctx, urls)
                    if hooks.signature_valid(t.secret, body, signature)]
        if not verified:
            log.warning("webhook rejected: no app with a matching secret")
            return _error(403, "signature_invalid", "The signature does not match the "
                          "secret of any app deployed from this repository.")
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return web.json_response({"ok": True, "apps": [t.app_id for t in verified]})
        if event != "push":
            return web.json_response({"ok": True, "ignored": event or "unknown"})
        ref = str(payload.get("ref", ""))
        synced = [t.app_id for t in verified if ref == f"refs/heads/{t.branch}"]
        for app_id in synced:
            reconciler.push_detected(app_id, "github webhook")
        log.info("webhook push ref=%s apps=%s", ref, synced)
        return web.json_response({"ok": True, "apps": synced}, status=202 if synced else 200)

    async def generic(request: web.Request) -> web.Response:
        try:
            app_id = int(request.match_info["app_id"])
        except ValueError:
            app_id = 0
        if not 1 <= app_id <= MAX_ID:  # a bigger number would overflow the database: 500
            return _error(404, "not_found", "No such app.")
        token = (request.query.get("token") or request.headers.get("X-Stcloud-Token")
                 or request.headers.get("Authorization", "").removeprefix("Bearer ").strip())
        if not token:
            return _error(401, "token_missing", "Send the app's webhook secret as ?token=, "
                          "an X-Stcloud-Token header or a Bearer token.")
        target = hooks.app_target(ctx, app_id)
        if target is None or not hooks.token_valid(target.secret, token):
            log.warning("push hook rejected for app=%s", app_id)
            return _error(403, "token_invalid", "The token is not this app's webhook secret.")
        reconciler.push_detected(app_id, "push hook")
        return web.json_response({"ok": True, "apps": [app_id]}, status=202)

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
    extra = [Route("GET", "/github/callback", github_callback, None,
                   "GitHub OAuth callback (redirects to the Account page)", produces=()),
             Route("POST", "/hooks/github", github, None,
                   "GitHub push webhook (X-Hub-Signature-256)", "json"),
             Route("POST", "/hooks/apps/{app_id}", generic, None,
                   "Generic push hook (the app's webhook secret)"),
             Route("GET", "/health", health, None, "Health and app counts")]
    document: dict[str, Any] = {}

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    extra.append(Route("GET", "/openapi.json", openapi, None, "This OpenAPI 3.1 document"))
    document.update(openapi_document(routes, extra))
    app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
    app[OPENAPI_KEY] = document
    for r in routes + extra:
        app.router.add_route(r.method, r.path, r.handler)
    return app
