"""GitHub `pull_request` events (through `POST /hooks/github`, already verified against
the app's webhook secret): a pull request into an app's branch opens, updates or deletes
its preview app (`backend.apps.previews`), and the pull request is told the preview's URL
(`backend.github.previews`: a comment once, a commit status per head)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiohttp import web

from backend.apps import hooks, previews
from backend.context import Context
from backend.github import previews as github_previews

log = logging.getLogger("supervisor.api")
OPEN_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")


class SyncReceiver(Protocol):
    def push_detected(self, app_id: int, source: str) -> None: ...


def _obj(value: Any, key: str) -> dict[str, Any]:
    """`value[key]` when both are JSON objects, else {}."""
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


async def pull_request(ctx: Context, reconciler: SyncReceiver, payload: dict[str, Any],
                       verified: list[hooks.HookTarget]) -> web.Response:
    action = str(payload.get("action", ""))
    pr = payload.get("pull_request")
    number = payload.get("number")
    if not isinstance(pr, dict) or not isinstance(number, int) or number <= 0:
        return web.json_response({"ok": True, "ignored": "pull_request without a number"})
    head, base = _obj(pr, "head"), _obj(pr, "base")
    branch, sha = str(head.get("ref", "")), str(head.get("sha", ""))
    head_repo = _obj(head, "repo")
    from_fork = head_repo.get("full_name") != _obj(base, "repo").get("full_name")
    fork_url = str(head_repo.get("clone_url", "")) if from_fork else ""
    if from_fork and not fork_url:
        return web.json_response({"ok": True, "ignored": "fork without a clone URL"})
    targets = [t for t in verified if str(base.get("ref", "")) == t.branch and
               await asyncio.to_thread(previews.previews_enabled, ctx, t.app_id)]
    done: list[int] = []
    for target in targets:
        if action == "closed":
            closed = await asyncio.to_thread(previews.close_preview, ctx, target.app_id,
                                             number=number, branch=branch)
            if closed is not None:
                done.append(closed)
            continue
        if action not in OPEN_ACTIONS or not branch:
            continue
        opened = await asyncio.to_thread(
            previews.open_preview, ctx, target.app_id, number=number, branch=branch,
            head_sha=sha, head_repo_url=fork_url, from_fork=from_fork,
            title=str(pr.get("title", "")))
        if opened is None:
            continue
        if not opened.created:
            reconciler.push_detected(opened.preview_app_id, "pull request push")
        done.append(opened.preview_app_id)
        await asyncio.to_thread(github_previews.report_opened, ctx, target.app_id, number,
                                sha, opened.url, opened.created)
    log.info("pull_request #%s %s previews=%s", number, action, done)
    return web.json_response({"ok": True, "previews": done}, status=202 if done else 200)


PREVIEW_BRANCHES = "refs/heads/preview/"


async def branch_previews(ctx: Context, reconciler: SyncReceiver,
                          verified: list[hooks.HookTarget], pushed: tuple[str, ...],
                          deleted: tuple[str, ...]) -> list[int]:
    """A push of a `preview/<name>` branch, on any git host, opens or updates its preview
    (`<sub>-br-preview-<name>`) for each verified app with previews on; deleting the
    branch deletes the preview. The preview apps acted on."""
    done: list[int] = []
    for target in verified:
        if not await asyncio.to_thread(previews.previews_enabled, ctx, target.app_id):
            continue
        for ref in (r for r in pushed if r.startswith(PREVIEW_BRANCHES)):
            opened = await asyncio.to_thread(previews.open_preview, ctx, target.app_id,
                                             number=0, branch=ref.removeprefix("refs/heads/"))
            if opened is not None:
                if not opened.created:
                    reconciler.push_detected(opened.preview_app_id, "preview branch push")
                done.append(opened.preview_app_id)
        for ref in (r for r in deleted if r.startswith(PREVIEW_BRANCHES)):
            closed = await asyncio.to_thread(previews.close_preview, ctx, target.app_id,
                                             number=0, branch=ref.removeprefix("refs/heads/"))
            if closed is not None:
                done.append(closed)
    return done
