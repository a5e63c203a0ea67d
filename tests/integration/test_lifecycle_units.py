"""Lifecycle parts without a supervisor process: webhook verification through the proxy's
API mount, and hibernation with a fake clock (the plan, the day-five warning, waking).
The email outbox is in test_lifecycle_mail.py, the in-place file swap and env sharing in
test_lifecycle_checkouts.py."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from backend.accounts import auth
from backend.apps import hooks
from backend.apps import service as apps
from backend.context import Context
from backend.errors import NotFound, PermissionDenied
from models import App, AppEvent, EmailOutbox, Membership, User, session_scope, utcnow
from supervisor.api import make_api_app
from supervisor.control import hibernation
from supervisor.proxy import make_proxy_app
from supervisor.routes import RouteTable
from tests.support.api_world import StubReconciler
from tests.support.lifecycle_support import (
    github_push,
    set_email,
)
from tests.support.supervisor_harness import load_app


# Webhooks ---------------------------------------------------------------------------------
def test_normalised_repo_urls() -> None:
    same = ["https://github.com/Owner/Repo.git", "git@github.com:owner/repo.git",
            "ssh://git@github.com/owner/repo", "https://github.com/owner/repo/",
            "http://github.com/owner/repo"]
    assert {hooks.normalise_repo_url(u) for u in same} == {"github.com/owner/repo"}
    assert hooks.normalise_repo_url("file:///srv/git/a/b.git") == "/srv/git/a/b"
    assert hooks.normalise_repo_url("/srv/git/a/b.git") == "/srv/git/a/b"
    assert hooks.normalise_repo_url("https://gitlab.com/a/b") != "github.com/a/b"


def test_webhooks_verify_before_acting(ctx, admin) -> None:
    one = apps.deploy_app(ctx, admin, repo_url="https://github.com/team/dash.git",
                          subdomain="dash")
    two = apps.deploy_app(ctx, admin, repo_url="git@github.com:team/dash.git", branch="dev",
                          subdomain="dash-dev")
    other = apps.deploy_app(ctx, admin, repo_url="https://github.com/team/other",
                            subdomain="other")
    secret_one = load_app(ctx, one.id).webhook_secret
    secret_two = load_app(ctx, two.id).webhook_secret
    assert len(secret_one) >= 30 and secret_one != secret_two
    reconciler = StubReconciler(runtime_name="fake")
    body = github_push("https://github.com/team/dash.git", "main")

    async def scenario() -> None:
        proxy = make_proxy_app(ctx.settings, RouteTable(), api=make_api_app(ctx, reconciler))
        async with TestClient(TestServer(proxy)) as client:
            host = {"Host": f"localhost:{ctx.settings.port}", "X-GitHub-Event": "push"}

            async def hook(data: bytes, **headers: str) -> tuple[int, Any]:
                resp = await client.post("/api/v1/hooks/github", data=data,
                                         headers={**host, **headers})
                return resp.status, await resp.json()

            assert (await hook(body))[0] == 401
            assert (await hook(body, **{"X-Hub-Signature-256": "sha256=" + "0" * 64}))[0] == 403
            assert (await hook(body, **{"X-Hub-Signature-256":
                                        hooks.sign("not-the-secret", body)}))[0] == 403
            tampered = body.replace(b"main", b"dev")
            assert (await hook(tampered, **{"X-Hub-Signature-256":
                                            hooks.sign(secret_one, body)}))[0] == 403
            assert reconciler.pushes == []  # nothing acted on a bad request
            # Signed with app one's secret: only app one (same repo, its branch) syncs.
            status, data = await hook(body, **{"X-Hub-Signature-256": hooks.sign(secret_one,
                                                                                 body)})
            assert (status, data["apps"]) == (202, [one.id])
            # Signed with app two's secret but for main: verified, not its branch.
            status, data = await hook(body, **{"X-Hub-Signature-256": hooks.sign(secret_two,
                                                                                 body)})
            assert (status, data["apps"]) == (200, [])
            dev = github_push("git@github.com:team/dash.git", "dev")
            status, data = await hook(dev, **{"X-Hub-Signature-256": hooks.sign(secret_two,
                                                                                dev)})
            assert (status, data["apps"]) == (202, [two.id])
            ping = {**host, "X-GitHub-Event": "ping",
                    "X-Hub-Signature-256": hooks.sign(secret_one, body)}
            assert (await client.post("/api/v1/hooks/github", data=body,
                                      headers=ping)).status == 200
            # The generic hook: token in the query, a header, or a bearer token.
            path = f"/api/v1/hooks/apps/{other.id}"
            assert (await client.post(path, headers=host)).status == 401
            assert (await client.post(path + "?token=wrong", headers=host)).status == 403
            assert (await client.post(f"/api/v1/hooks/apps/999?token={secret_one}",
                                      headers=host)).status == 403
            secret_other = load_app(ctx, other.id).webhook_secret
            assert (await client.post(path, headers={**host, "X-Stcloud-Token":
                                                     secret_other})).status == 202
            assert (await client.post(path, headers={**host, "Authorization":
                                                     f"Bearer {secret_other}"})).status == 202
            health = await client.get("/api/v1/health", headers=host)
            assert await health.json() == {"status": "ok", "engine": "fake",
                                           "apps": {"queued": 3}}
            # On an app host /api/v1 is the app's, never ours.
            app_host = {"Host": f"dash.localhost:{ctx.settings.port}"}
            assert (await client.post(path, headers=app_host)).status != 202

    asyncio.run(scenario())
    assert reconciler.pushes == [(one.id, "github webhook"), (two.id, "github webhook"),
                                 (other.id, "push hook"), (other.id, "push hook")]


def test_webhook_info_is_for_developers(ctx, admin) -> None:
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git")
    info = hooks.webhook_info(ctx, admin, view.id)
    assert info.github_url.endswith("/api/v1/hooks/github")
    assert info.secret == load_app(ctx, view.id).webhook_secret
    viewer = auth.create_user(ctx, "viewer", "password-viewer")
    with session_scope(ctx.engine) as s:
        s.add(Membership(user_id=viewer.id, workspace_id=view.workspace_id, role="viewer"))
    with pytest.raises(PermissionDenied):
        hooks.webhook_info(ctx, viewer, view.id)
    assert "webhook_secret" not in repr(load_app(ctx, view.id))


# Hibernation -------------------------------------------------------------------------------
def running_app(ctx: Context, admin: User, name: str, visibility: str = "public") -> int:
    view = apps.deploy_app(ctx, admin, repo_url=f"/srv/git/team/{name}.git", subdomain=name)
    with session_scope(ctx.engine) as s:
        app = s.get(App, view.id)
        app.state, app.visibility = "running", visibility
        app.last_deployed_at = utcnow()
        s.add(app)
    return view.id


def test_hibernation_plan_with_a_fake_clock(ctx, admin) -> None:
    settings = ctx.settings
    public = running_app(ctx, admin, "pub")
    private = running_app(ctx, admin, "priv", "private")
    t0 = load_app(ctx, public).last_deployed_at
    everyone = lambda: [load_app(ctx, public), load_app(ctx, private)]  # noqa: E731

    def at(days: float) -> hibernation.Plan:
        return hibernation.plan(everyone(), t0 + timedelta(days=days), settings)

    assert at(4.9) == hibernation.Plan([], [])
    assert at(5.0) == hibernation.Plan([public], [])
    assert at(7.0) == hibernation.Plan([], [public])
    assert at(70) == hibernation.Plan([], [public])  # private apps never sleep
    allowed = dataclasses.replace(settings, hibernate_private_apps=True)
    assert hibernation.plan(everyone(), t0 + timedelta(days=8), allowed).sleep == \
        [public, private]
    # A visit on day 6 restarts the clock: warned again on day 11, asleep on day 13.
    with session_scope(ctx.engine) as s:
        app = s.get(App, public)
        app.last_viewed_at = t0 + timedelta(days=6)
        s.add(app)
    assert at(7.0) == hibernation.Plan([], [])
    assert at(11.0) == hibernation.Plan([public], [])
    assert at(13.0) == hibernation.Plan([], [public])
    # The clock is the last view or deploy, not the (newer) creation of the row.
    with session_scope(ctx.engine) as s:
        app = s.get(App, private)
        app.visibility, app.last_viewed_at = "public", None
        app.last_deployed_at = app.created_at - timedelta(days=8)
        s.add(app)
    assert hibernation.plan([load_app(ctx, private)], load_app(ctx, private).created_at,
                            settings).sleep == [private]
    off = dataclasses.replace(settings, hibernate_after_days=0)
    assert hibernation.plan(everyone(), t0 + timedelta(days=99), off) == hibernation.Plan()


def test_day_five_warning_once_per_idle_period(ctx, admin) -> None:
    set_email(ctx, "admin", "admin@example.com")
    public = running_app(ctx, admin, "pub")
    running_app(ctx, admin, "priv", "private")
    t0 = load_app(ctx, public).last_deployed_at
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=5, hours=1)) == []
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=6)) == []  # no repeat
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=7)) == [public]

    def warnings() -> list[EmailOutbox]:
        with session_scope(ctx.engine) as s:
            return list(s.exec(select(EmailOutbox).where(EmailOutbox.kind == "sleep_warning")))

    first = warnings()
    assert len(first) == 1 and first[0].app_id == public
    assert first[0].subject == "Your Streamlit app pub will go to sleep soon"
    assert "visit the app" in first[0].body_text and "--allow-empty" in first[0].body_text
    # A push (a deploy) on day 6.5 restarts the clock: a second warning for the new period.
    with session_scope(ctx.engine) as s:
        app = s.get(App, public)
        app.last_deployed_at = t0 + timedelta(days=6, hours=12)
        s.add(app)
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=12)) == []
    assert len(warnings()) == 2


def test_wake_app_permissions_and_intent(ctx, admin) -> None:
    public = running_app(ctx, admin, "pub")
    private = running_app(ctx, admin, "priv", "private")
    assert apps.wake_app(ctx, None, public) == "running"  # awake: nothing to do
    with session_scope(ctx.engine) as s:
        for app_id in (public, private):
            app = s.get(App, app_id)
            app.state = "sleeping"
            s.add(app)
    assert apps.wake_app(ctx, None, public) == "starting"
    assert load_app(ctx, public).last_viewed_at is not None  # waking counts as a view
    with pytest.raises(NotFound):
        apps.wake_app(ctx, None, private)  # a visitor cannot see a private app
    outsider = auth.create_user(ctx, "outsider", "password-out")
    with pytest.raises(NotFound):
        apps.wake_app(ctx, outsider, private)
    assert apps.wake_app(ctx, admin, private) == "starting"
    with session_scope(ctx.engine) as s:
        reasons = s.exec(select(AppEvent.reason).where(AppEvent.to_state == "starting")).all()
    assert sorted(reasons) == ["Waking up (requested by a visitor)",
                               "Waking up (requested by admin)"]
