"""Push webhooks (`/hooks/...`): a verified push asks the reconciler to sync the app; the
rules are in `app.py`'s docstring."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from backend.apps import hooks, push_formats
from backend.context import Context
from supervisor.api import preview_hooks
from supervisor.api.support import MAX_ID
from supervisor.api.support import error as api_error

log = logging.getLogger("supervisor.api")
web_handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EngineName(Protocol):
    @property
    def name(self) -> str: ...


class PushReceiver(Protocol):
    """What the API needs of a reconciler (the supervisor's, or a standalone proxy's
    database-backed stand-in)."""

    @property
    def runtime(self) -> EngineName: ...

    def push_detected(self, app_id: int, source: str) -> None: ...


def preview_field(shown: list[int]) -> dict[str, list[int]]:
    """The answer's `previews` when a push acted on preview apps (left out otherwise, so a
    plain push answers as before)."""
    return {"previews": shown} if shown else {}


def hook_error(status: int, code: str, message: str) -> web.Response:
    """The REST API's error shape (`{"error": {"code", "message"}}`), for hooks too."""
    return api_error(status, code, message)


class PushHooks:
    def __init__(self, ctx: Context, reconciler: PushReceiver) -> None:
        self.ctx = ctx
        self.reconciler = reconciler

    async def github(self, request: web.Request) -> web.Response:
        """`POST /hooks/github`, signed with an app's webhook secret."""
        signature = request.headers.get("X-Hub-Signature-256", "")
        if not signature:
            return hook_error(401, "signature_missing", "X-Hub-Signature-256 is required; "
                              "set the app's webhook secret in the GitHub webhook.")
        body = await request.read()
        try:
            payload = json.loads(body)
            repo = payload["repository"]
            urls = [repo.get(k, "") for k in ("clone_url", "ssh_url", "html_url", "git_url",
                                               "url")]
        except (ValueError, KeyError, TypeError, AttributeError):
            return hook_error(400, "bad_payload", "Expected a GitHub event with a repository "
                              "(content type application/json).")
        verified = [t for t in hooks.apps_for_repo(self.ctx, urls)
                    if hooks.signature_valid(t.secret, body, signature)]
        if not verified:
            log.warning("webhook rejected: no app with a matching secret")
            return hook_error(403, "signature_invalid", "The signature does not match the "
                              "secret of any app deployed from this repository.")
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return web.json_response({"ok": True, "apps": [t.app_id for t in verified]})
        if event == "pull_request":
            return await preview_hooks.pull_request(self.ctx, self.reconciler, payload,
                                                    verified)
        if event != "push":
            return web.json_response({"ok": True, "ignored": event or "unknown"})
        ref = str(payload.get("ref", ""))
        deleted = payload.get("deleted") is True
        return await self._push(verified, "github", () if deleted else (ref,),
                                (ref,) if deleted else ())

    async def _push(self, verified: list[hooks.HookTarget], host: str,
                    pushed: tuple[str, ...], deleted: tuple[str, ...]) -> web.Response:
        """A verified push of `host`: sync the apps whose branch was pushed, open, update or
        close the preview branches' apps (`preview_hooks.branch_previews`)."""
        synced = [t.app_id for t in verified if f"refs/heads/{t.branch}" in pushed]
        for app_id in synced:
            self.reconciler.push_detected(app_id, f"{host} webhook")
        shown = await preview_hooks.branch_previews(self.ctx, self.reconciler, verified,
                                                    pushed, deleted)
        log.info("%s webhook push refs=%s apps=%s previews=%s", host, list(pushed)[:5],
                 synced, shown)
        return web.json_response({"ok": True, "apps": synced, **preview_field(shown)},
                                 status=202 if synced or shown else 200)

    def host_hook(self, key: str) -> web_handler:
        """The handler of `POST /hooks/<key>` for a host of `push_formats.FORMATS`: the
        proof checked against the secrets of the apps deployed from the event's repository,
        then the same as GitHub's push."""
        fmt = push_formats.FORMATS[key]

        async def handle(request: web.Request) -> web.Response:
            proof = push_formats.proof_of(fmt, request.headers)
            if not proof:
                return hook_error(401, "signature_missing", fmt.missing)
            body = await request.read()
            try:
                event = push_formats.read_event(fmt, request.headers, body)
            except push_formats.PayloadError as e:
                return hook_error(400, "bad_payload", str(e))
            if event.kind == "ping" and not event.repo_urls:
                # Bitbucket's "Test connection" names no repository: it can prove nothing,
                # and answering it acts on nothing.
                return web.json_response({"ok": True, "apps": []})
            verified = [t for t in hooks.apps_for_repo(self.ctx, list(event.repo_urls))
                        if fmt.proves(t.secret, body, proof)]
            if not verified:
                log.warning("%s webhook rejected: no app with a matching secret", key)
                return hook_error(403, "signature_invalid", "The secret does not match the "
                                  "webhook secret of any app deployed from this repository.")
            if event.kind == "ping":
                return web.json_response({"ok": True, "apps": [t.app_id for t in verified]})
            if event.kind != "push":
                return web.json_response({"ok": True, "ignored": event.kind})
            return await self._push(verified, key, event.refs, event.deleted)
        return handle

    async def generic(self, request: web.Request) -> web.Response:
        """`POST /hooks/apps/{app_id}`, authorised by the app's webhook secret."""
        try:
            app_id = int(request.match_info["app_id"])
        except ValueError:
            app_id = 0
        if not 1 <= app_id <= MAX_ID:  # a bigger number would overflow the database: 500
            return hook_error(404, "not_found", "No such app.")
        token = (request.query.get("token") or request.headers.get("X-Stcloud-Token")
                 or request.headers.get("Authorization", "").removeprefix("Bearer ").strip())
        if not token:
            return hook_error(401, "token_missing", "Send the app's webhook secret as "
                              "?token=, an X-Stcloud-Token header or a Bearer token.")
        target = hooks.app_target(self.ctx, app_id)
        if target is None or not hooks.token_valid(target.secret, token):
            log.warning("push hook rejected for app=%s", app_id)
            return hook_error(403, "token_invalid",
                              "The token is not this app's webhook secret.")
        self.reconciler.push_detected(app_id, "push hook")
        return web.json_response({"ok": True, "apps": [app_id]}, status=202)
