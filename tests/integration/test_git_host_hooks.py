"""Push webhooks of GitLab, Gitea/Forgejo and Bitbucket (Cloud and Data Center) through the
proxy's API mount, with payloads as those hosts send them (tests/support/webhooks/): each
proof is checked against the secrets of the apps deployed from the event's repository
before anything acts; only the apps whose branch was pushed sync."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from backend.apps import previews, push_formats
from backend.apps import service as apps
from supervisor.api import make_api_app
from supervisor.proxy import make_proxy_app
from supervisor.routes import RouteTable
from tests.support.api_world import StubReconciler
from tests.support.supervisor_harness import load_app

PAYLOADS = Path(__file__).parent.parent / "support" / "webhooks"


def payload(name: str, branch: str = "main") -> bytes:
    """A recorded payload with its pushed branch set to `branch`."""
    return (PAYLOADS / name).read_bytes().replace(b"refs/heads/main",
                                                  f"refs/heads/{branch}".encode()).replace(
        b'"name": "main"', f'"name": "{branch}"'.encode()).replace(
        b'"displayId": "main"', f'"displayId": "{branch}"'.encode())


def secret_of(ctx: Any, app_id: int) -> str:
    app = load_app(ctx, app_id)
    assert app is not None
    return app.webhook_secret


def gitlab_proof(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}


def gitea_proof(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Gitea-Event": "push", "X-Gitea-Signature": push_formats.hmac_hex(secret, body)}


def forgejo_proof(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Forgejo-Event": "push",
            "X-Forgejo-Signature": push_formats.hmac_hex(secret, body)}


def bitbucket_proof(event: str) -> Callable[[str, bytes], dict[str, str]]:
    def proof(secret: str, body: bytes) -> dict[str, str]:
        return {"X-Event-Key": event,
                "X-Hub-Signature": "sha256=" + push_formats.hmac_hex(secret, body)}
    return proof


# (endpoint, payload file, the URL a developer deploys from, the proof's headers)
HOSTS: dict[str, tuple[str, str, str, Callable[[str, bytes], dict[str, str]]]] = {
    "gitlab": ("gitlab", "gitlab_push.json",
               "https://gitlab.example.com/analytics/reports/diaspora.git", gitlab_proof),
    "gitlab-ssh": ("gitlab", "gitlab_push.json",
                   "git@gitlab.example.com:analytics/reports/diaspora.git", gitlab_proof),
    "gitea": ("gitea", "gitea_push.json", "https://git.example.org/team/dash.git",
              gitea_proof),
    "forgejo": ("gitea", "gitea_push.json", "git@git.example.org:team/dash.git",
                forgejo_proof),
    "bitbucket-cloud": ("bitbucket", "bitbucket_cloud_push.json",
                        "git@bitbucket.org:team/dash.git", bitbucket_proof("repo:push")),
    "bitbucket-server": ("bitbucket", "bitbucket_server_push.json",
                         "https://bitbucket.example.com/scm/team/dash.git",
                         bitbucket_proof("repo:refs_changed")),
}


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_a_host_push_syncs_only_the_apps_it_proves_and_pushed(ctx: Any, admin: Any,
                                                              host: str) -> None:
    endpoint, name, repo_url, proof = HOSTS[host]
    main = apps.deploy_app(ctx, admin, repo_url=repo_url, subdomain="hooked")
    dev = apps.deploy_app(ctx, admin, repo_url=repo_url, branch="dev", subdomain="hooked-dev")
    other = apps.deploy_app(ctx, admin, repo_url="https://git.example.net/x/other.git",
                            subdomain="other")
    secret_main = secret_of(ctx, main.id)
    secret_dev = secret_of(ctx, dev.id)
    secret_other = secret_of(ctx, other.id)
    reconciler = StubReconciler(runtime_name="fake")
    body = payload(name)

    async def scenario() -> None:
        proxy = make_proxy_app(ctx.settings, RouteTable(), api=make_api_app(ctx, reconciler))
        async with TestClient(TestServer(proxy)) as client:
            host_header = {"Host": f"localhost:{ctx.settings.port}",
                           "Content-Type": "application/json"}

            async def hook(data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
                resp = await client.post(f"/api/v1/hooks/{endpoint}", data=data,
                                         headers={**host_header, **headers})
                return resp.status, await resp.json()

            unproved = {k: v for k, v in proof(secret_main, body).items()
                        if "Token" not in k and "Signature" not in k}
            assert (await hook(body, unproved))[0] == 401
            assert (await hook(body, proof("not-the-secret", body)))[0] == 403
            assert (await hook(body, proof(secret_other, body)))[0] == 403  # another repo's
            if endpoint != "gitlab":  # a token proves no body; signatures cover the body
                tampered = payload(name, "dev")
                assert (await hook(tampered, proof(secret_dev, body)))[0] == 403
            assert (await hook(b"not json", proof(secret_main, b"not json")))[0] == 400
            assert reconciler.pushes == []  # nothing acted on a bad request
            status, data = await hook(body, proof(secret_main, body))
            assert (status, data["apps"]) == (202, [main.id])
            status, data = await hook(body, proof(secret_dev, body))  # verified, not its branch
            assert (status, data["apps"]) == (200, [])
            pushed_dev = payload(name, "dev")
            status, data = await hook(pushed_dev, proof(secret_dev, pushed_dev))
            assert (status, data["apps"]) == (202, [dev.id])
            # On an app host /api/v1 is the app's, never ours.
            app_host = {"Host": f"hooked.localhost:{ctx.settings.port}"}
            resp = await client.post(f"/api/v1/hooks/{endpoint}", data=body,
                                     headers={**app_host, **proof(secret_main, body)})
            assert resp.status != 202

    asyncio.run(scenario())
    assert reconciler.pushes == [(main.id, f"{endpoint} webhook"),
                                 (dev.id, f"{endpoint} webhook")]


def test_other_events_and_pings_act_on_nothing(ctx: Any, admin: Any) -> None:
    view = apps.deploy_app(ctx, admin, repo_url="https://git.example.org/team/dash.git",
                           subdomain="dash")
    secret = secret_of(ctx, view.id)
    reconciler = StubReconciler(runtime_name="fake")
    body = payload("gitea_push.json")
    issue = json.dumps({"action": "opened", "repository": json.loads(body)["repository"]})
    ping = json.dumps({"test": True}).encode()

    async def scenario() -> None:
        proxy = make_proxy_app(ctx.settings, RouteTable(), api=make_api_app(ctx, reconciler))
        async with TestClient(TestServer(proxy)) as client:
            host = {"Host": f"localhost:{ctx.settings.port}"}
            resp = await client.post("/api/v1/hooks/gitea", data=issue.encode(), headers={
                **host, "X-Gitea-Event": "issues",
                "X-Gitea-Signature": push_formats.hmac_hex(secret, issue.encode())})
            assert (resp.status, await resp.json()) == (200, {"ok": True, "ignored": "issues"})
            resp = await client.post("/api/v1/hooks/bitbucket", data=ping, headers={
                **host, "X-Event-Key": "diagnostics:ping",
                "X-Hub-Signature": "sha256=" + push_formats.hmac_hex(secret, ping)})
            # Bitbucket's test connection names no repository: answered, nothing acts.
            assert (resp.status, await resp.json()) == (200, {"ok": True, "apps": []})

    asyncio.run(scenario())
    assert reconciler.pushes == []


def test_a_preview_branch_push_opens_a_preview_and_deleting_it_closes_it(ctx: Any,
                                                                       admin: Any) -> None:
    """On any git host, a push of `preview/<name>` makes a preview app of each verified app
    with previews on; the push that deletes the branch (GitLab: `after` of zeros) deletes it."""
    repo_url = "https://gitlab.example.com/analytics/reports/diaspora.git"
    view = apps.deploy_app(ctx, admin, repo_url=repo_url, subdomain="dia")
    secret = secret_of(ctx, view.id)
    reconciler = StubReconciler(runtime_name="fake")
    pushed = payload("gitlab_push.json", "preview/charts")
    gone = pushed.replace(b'"after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"',
                          b'"after": "' + b"0" * 40 + b'"')
    assert gone != pushed

    async def scenario() -> list[tuple[int, Any]]:
        proxy = make_proxy_app(ctx.settings, RouteTable(), api=make_api_app(ctx, reconciler))
        answers = []
        async with TestClient(TestServer(proxy)) as client:
            for n, body in enumerate((pushed, pushed, pushed, gone)):
                if n == 1:
                    previews.set_config(ctx, admin, view.id, enabled=True)
                resp = await client.post("/api/v1/hooks/gitlab", data=body, headers={
                    "Host": f"localhost:{ctx.settings.port}", **gitlab_proof(secret, body)})
                answers.append((resp.status, await resp.json()))
        return answers

    off, opened, again, closed = asyncio.run(scenario())
    assert off == (200, {"ok": True, "apps": []})  # previews are off by default
    assert opened[0] == 202
    [preview_id] = opened[1]["previews"]
    assert again == (202, {"ok": True, "apps": [], "previews": [preview_id]})
    assert reconciler.pushes == [(preview_id, "preview branch push")]
    assert closed == (202, {"ok": True, "apps": [], "previews": [preview_id]})
    preview = load_app(ctx, preview_id)
    assert preview is not None and preview.subdomain == "dia-br-preview-charts"
    assert preview.desired_state == "deleted"
    assert previews.list_previews(ctx, admin, view.id) == []
