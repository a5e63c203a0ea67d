"""GitHub integration end to end through the real PyGithub client against
tests/support/fake_github.py: connecting (token and OAuth), scopes, workspaces and roles from
GitHub, the deploy form's pickers, deploys of public and private repositories (deploy key,
webhook or polling), webhook delivery through our API, and each failure: rate limit (403
and 429), revoked token, renamed and deleted repositories, lost admin rights.

A private repository is cloned over SSH from a real sshd that accepts only the deploy key
the fake GitHub was given (supervisor/sources/git_auth.py provides git's environment). That test
skips when sshd is missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from backend import workspaces
from backend.accounts import auth
from backend.apps import service as apps
from backend.context import Context
from backend.errors import NotFound, PermissionDenied, ValidationError
from backend.github import accounts as github
from backend.github import deploy as github_deploy
from backend.github import sync as github_sync
from backend.github.client import (
    Conn,
    GithubError,
    GithubRateLimited,
    GithubRevoked,
    forget,
    known_hosts_path,
)
from backend.platform.settings import Settings
from models import App, AppEvent, Membership, Workspace, make_engine, migrate, session_scope, utcnow
from models.github import AppGithub, GithubAccount, GithubGrant
from supervisor.api import make_api_app
from supervisor.proxy import make_proxy_app
from supervisor.routes import RouteTable
from supervisor.sources import git_auth, gitsync
from tests.conftest import free_port
from tests.support.fake_github import FakeGithub

TOKEN = "ghp_alice_token"
ALL_SCOPES = "repo, admin:repo_hook, read:org"


def github_settings(base: Settings, **values: Any) -> Settings:
    """`base` plus the github_* settings (whether or not Settings declares them yet)."""
    extra = [("github_base_url", str, dataclasses.field(default="")),
             ("github_client_id", str, dataclasses.field(default="")),
             ("github_client_secret", str, dataclasses.field(default="")),
             ("github_refresh_minutes", float, dataclasses.field(default=30.0))]
    cls = dataclasses.make_dataclass("GithubSettings", extra, bases=(Settings,), frozen=True)
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)}
    return cls(**{**current, **values})  # type: ignore[no-any-return]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGithub]:
    server = FakeGithub(tmp_path / "github").start()
    forget()
    yield server
    server.stop()
    forget()


@pytest.fixture
def gctx(ctx: Context, fake: FakeGithub) -> Context:
    settings = github_settings(ctx.settings, github_base_url=fake.base_url,
                               github_client_id=fake.client_id,
                               github_client_secret=fake.client_secret)
    return Context(settings=settings, engine=ctx.engine)


@pytest.fixture
def alice(gctx: Context, fake: FakeGithub):  # type: ignore[no-untyped-def]
    fake.add_user("alice", TOKEN, ALL_SCOPES, orgs=("acme",))
    return auth.create_user(gctx, "alice", "password123", email="alice@example.com")


def later(minutes: float = 31) -> datetime:
    """A time past github_refresh_minutes (30 in these tests), so the refresh is due."""
    return utcnow() + timedelta(minutes=minutes)


def memberships(ctx: Context, user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {ws.name: role for ws, role in workspaces.list_workspaces(ctx, user)}


def app_row(ctx: Context, app_id: int) -> tuple[App, AppGithub | None, list[str]]:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        row = s.exec(select(AppGithub).where(AppGithub.app_id == app_id)).first()
        events = [e.reason for e in s.exec(select(AppEvent).where(
            AppEvent.app_id == app_id).order_by(AppEvent.id))]  # type: ignore[arg-type]
        return app, row, events


# Models ---------------------------------------------------------------------------------------
def test_migration_0004_matches_the_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


# Connecting -----------------------------------------------------------------------------------
def test_connect_token_explains_scopes_and_encrypts(gctx, fake, alice) -> None:
    fake.add_user("bob", "ghp_bob", "public_repo")
    fake.add_user("carol", "github_pat_carol", None)
    status = github.connect_token(gctx, alice, f"  {TOKEN}\n")
    assert (status.login, status.token_kind, status.status, status.message) == \
        ("alice", "classic", "ok", "")
    assert {n.scope: n.granted for n in status.scopes} == \
        {"repo": True, "admin:repo_hook": True, "read:org": True}
    assert all(n.why and n.without for n in status.scopes)
    assert "rather not" in next(n.why for n in status.scopes if n.scope == "repo")
    with session_scope(gctx.engine) as s:
        row = s.exec(select(GithubAccount)).one()
        assert TOKEN not in row.token_ciphertext and row.token_ciphertext
    bob = auth.create_user(gctx, "bob", "password123")
    notes = {n.scope: n.granted for n in github.connect_token(gctx, bob, "ghp_bob").scopes}
    assert notes == {"repo": False, "admin:repo_hook": False, "read:org": False}
    carol = auth.create_user(gctx, "carol", "password123")
    status = github.connect_token(gctx, carol, "github_pat_carol")
    assert status.token_kind == "fine-grained"
    assert {n.granted for n in status.scopes} == {None}
    with pytest.raises(ValidationError, match="Bad credentials"):
        github.connect_token(gctx, carol, "ghp_wrong")
    with pytest.raises(ValidationError, match="already connected"):
        github.connect_token(gctx, carol, TOKEN)
    github.disconnect(gctx, bob)
    assert github.github_status(gctx, bob) is None


def test_oauth_flow(gctx, fake, alice) -> None:
    state = github.oauth_state(gctx, alice)
    url = github.oauth_authorize_url(gctx, state)
    assert url.startswith(f"{fake.base_url}/login/oauth/authorize?")
    assert f"client_id={fake.client_id}" in url and f"state={state}" in url
    assert "scope=repo+admin%3Arepo_hook+read%3Aorg" in url
    assert "redirect_uri=" + "http%3A%2F%2Flocalhost" in url
    assert github.oauth_state_user(gctx, state) == alice.id
    other = auth.create_user(gctx, "mallory", "password123")
    code = fake.new_oauth_code(TOKEN)
    for bad, user in (("1.2.forged", alice), (state, other),
                      (f"{alice.id}.1.{state.split('.')[2]}", alice)):
        with pytest.raises(ValidationError):
            github.oauth_exchange(gctx, user, code, state=bad)
    status = github.oauth_exchange(gctx, alice, code, state=state)
    assert (status.login, status.token_kind, status.status) == ("alice", "oauth", "ok")
    with pytest.raises(ValidationError, match="expired or was used"):
        github.oauth_exchange(gctx, alice, code, state=state)
    unconfigured = Context(settings=github_settings(gctx.settings, github_client_id=""),
                           engine=gctx.engine)
    assert not github.oauth_configured(unconfigured)
    with pytest.raises(Exception, match="not configured"):
        github.oauth_authorize_url(unconfigured, state)


# Workspaces -----------------------------------------------------------------------------------
def test_workspaces_and_roles_follow_github(gctx, fake, admin, alice) -> None:
    fake.add_user("bob", "ghp_bob", ALL_SCOPES)
    fake.orgs |= {"acme", "beta"}
    fake.users["alice"]["orgs"] = ["acme", "beta"]
    fake.add_repo("acme", "dash", permissions={"alice": "push"})
    fake.add_repo("bob", "shared", permissions={"bob": "admin", "alice": "triage"})
    fake.add_repo("carol", "elsewhere", permissions={"alice": "admin"})
    for i in range(120):  # more than one page of 100
        fake.add_repo("alice", f"repo{i:03}")
    with session_scope(gctx.engine) as s:  # bob's workspace exists: someone deployed there
        s.add(Workspace(name="bob"))
        gamma = Workspace(name="gamma")
        s.add(gamma)
    github.connect_token(gctx, alice, TOKEN)
    assert memberships(gctx, alice) == {"alice": "admin", "acme": "developer",
                                        "beta": "viewer", "bob": "viewer"}
    assert any("page=2" in path for _, path in fake.calls("/user/repos"))
    # Cached: a sign-in within github_refresh_minutes asks GitHub nothing.
    before = len(fake.requests)
    assert ("acme", "developer") in github.refresh_user(gctx, alice)
    assert len(fake.requests) == before
    # A role given by hand is kept: GitHub only adds to it.
    with session_scope(gctx.engine) as s:
        gamma_id = s.exec(select(Workspace.id).where(Workspace.name == "gamma")).one()
    workspaces.set_member(gctx, admin, gamma_id, "alice", "developer")
    fake.add_repo("gamma", "tool", permissions={"alice": "pull"})
    fake.set_permission("acme/dash", "alice", "admin")
    forget()
    github.refresh_user(gctx, alice, force=True)
    assert memberships(gctx, alice)["acme"] == "admin"
    assert memberships(gctx, alice)["gamma"] == "developer"
    # GitHub takes access away: GitHub-made memberships go, hand-made ones stay.
    fake.users["alice"]["orgs"] = []
    fake.set_permission("acme/dash", "alice", None)
    fake.set_permission("gamma/tool", "alice", None)
    fake.set_permission("bob/shared", "alice", None)
    forget()
    github.refresh_user(gctx, alice, force=True)
    assert memberships(gctx, alice) == {"alice": "admin", "gamma": "developer"}
    with session_scope(gctx.engine) as s:
        assert {g.workspace_id for g in s.exec(select(GithubGrant))} == {
            s.exec(select(Workspace.id).where(Workspace.name == "alice")).one()}


# Pickers --------------------------------------------------------------------------------------
def test_pickers(gctx, fake, alice) -> None:
    fake.add_repo("alice", "dashboards", files=["streamlit_app.py", "lib/util.py",
                                                  "pages/1_Map.py", "README.md", "app.py"],
                  branches={"main": "a" * 40, "dev": "b" * 40, "feature/x": "c" * 40})
    fake.add_repo("alice", "notes", private=True)
    fake.add_repo("acme", "readonly", permissions={"alice": "push"})
    github.connect_token(gctx, alice, TOKEN)
    names = [r.full_name for r in github_deploy.list_admin_repos(gctx, alice)]
    assert sorted(names) == ["alice/dashboards", "alice/notes"]
    assert [r.full_name for r in github_deploy.list_admin_repos(gctx, alice, "DASH")] == \
        ["alice/dashboards"]
    assert github_deploy.list_branches(gctx, alice, "alice/dashboards") == \
        ["main", "dev", "feature/x"]
    files = github_deploy.list_python_files(gctx, alice, "alice/dashboards", "feature/x")
    assert files == ["streamlit_app.py", "app.py", "lib/util.py", "pages/1_Map.py"]
    assert any("recursive=1" in p for _, p in fake.calls("/repos/alice/dashboards/git/trees"))
    before = len(fake.requests)
    github_deploy.list_python_files(gctx, alice, "alice/dashboards", "feature/x")
    github_deploy.list_admin_repos(gctx, alice, "notes")
    assert len(fake.requests) == before  # cached
    with pytest.raises(NotFound, match="does not exist on GitHub"):
        github_deploy.list_branches(gctx, alice, "alice/missing")
    with pytest.raises(ValidationError, match="branch"):
        github_deploy.list_python_files(gctx, alice, "alice/dashboards", "nope")
    with pytest.raises(ValidationError):
        github_deploy.list_branches(gctx, alice, "not a repo")


# Deploy: public repository, webhook delivered through our API ---------------------------------
class RecordingReconciler:
    class runtime:
        name = "fake"

    def __init__(self) -> None:
        self.pushes: list[tuple[int, str]] = []

    def push_detected(self, app_id: int, source: str) -> None:
        self.pushes.append((app_id, source))


def test_deploy_public_repo_with_webhook(gctx, fake, alice) -> None:
    repo = fake.add_repo("alice", "hello", files=["streamlit_app.py"])
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main",
                                            "streamlit_app.py", subdomain="hello")
    app, row, events = app_row(gctx, view.id)
    assert app.repo_url == f"{fake.base_url}/alice/hello.git" and app.state == "queued"
    assert row is not None and (row.mode, row.private, row.deploy_key_id) == \
        ("webhook", False, None)
    assert not repo.keys
    (hook,) = repo.hooks.values()
    assert hook["id"] == row.hook_id and hook["events"] == ["push"]
    assert hook["config"]["url"] == gctx.settings.public_url() + "/api/v1/hooks/github"
    assert hook["config"]["content_type"] == "json"
    assert hook["secret"] == app.webhook_secret
    assert "Pushes reach the app by webhook" in events[-1]
    info = github_deploy.app_github_info(gctx, alice, view.id)
    assert info is not None and info.mode == "webhook" and not info.has_deploy_key
    assert github_deploy.deploy_key_for_app(gctx, view.id) is None
    # GitHub delivers a push to our API (through the proxy), which verifies the signature.
    reconciler = RecordingReconciler()
    fake.serve_app(make_proxy_app(gctx.settings, RouteTable(),
                                  api=make_api_app(gctx, reconciler)), gctx.settings.port)
    assert fake.deliver_push("alice/hello", "main") == [(202, {"ok": True, "apps": [view.id]})]
    assert reconciler.pushes == [(view.id, "github webhook")]
    # Deleting the app removes the webhook from GitHub.
    apps.delete_app(gctx, alice, view.id)
    github_deploy.on_app_deleted(gctx, view.id)
    assert repo.hooks == {}
    _, row, events = app_row(gctx, view.id)
    assert row is None and "Removed the webhook from GitHub alice/hello." in events


def test_deploy_needs_admin_and_a_real_branch(gctx, fake, alice) -> None:
    fake.add_repo("acme", "dash", permissions={"alice": "push"})
    fake.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    with pytest.raises(PermissionDenied, match="admin permission on acme/dash"):
        github_deploy.deploy_from_github(gctx, alice, "acme/dash", "main", "app.py")
    with pytest.raises(ValidationError, match="branch 'dev' does not exist"):
        github_deploy.deploy_from_github(gctx, alice, "alice/hello", "dev", "app.py")
    with pytest.raises(NotFound):
        github_deploy.deploy_from_github(gctx, alice, "alice/gone", "main", "app.py")
    github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py",
                                     subdomain="taken")
    with pytest.raises(ValidationError, match="taken"):
        github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py",
                                         subdomain="taken")
    assert len(fake.find("alice/hello").hooks) == 1  # the refused deploy added nothing


def test_polling_when_no_webhook_can_be_added(gctx, fake, alice) -> None:
    fake.add_user("bob", "ghp_bob", "public_repo, read:org")
    bob = auth.create_user(gctx, "bob", "password123")
    fake.add_repo("bob", "hello")
    github.connect_token(gctx, bob, "ghp_bob")
    view = github_deploy.deploy_from_github(gctx, bob, "bob/hello", "main", "app.py")
    _, row, events = app_row(gctx, view.id)
    assert (row.mode, row.hook_id) == ("polling", None)
    assert "admin:repo_hook" in row.mode_reason and "by polling" in events[-1]
    # A private repository needs `repo`: bob's token cannot even see one.
    fake.add_repo("bob", "secret", private=True)
    with pytest.raises(NotFound, match="`repo` scope"):
        github_deploy.deploy_from_github(gctx, bob, "bob/secret", "main", "app.py")


def test_no_webhook_when_github_cannot_reach_us(gctx) -> None:
    """github.com cannot deliver to http://localhost: polling, and the reason says why."""
    account = GithubAccount(user_id=1, login="a", base_url="https://api.github.com",
                            scopes="repo")
    mode, reason, hook_id = github_deploy._add_webhook(
        gctx, Conn(account, None), None, 1)  # type: ignore[arg-type]
    assert (mode, hook_id) == ("polling", None)
    assert "cannot reach this server's public address http://localhost" in reason


def test_private_deploy_key_exists_before_the_app_is_queued(gctx, fake, alice,
                                                            monkeypatch) -> None:
    repo = fake.add_repo("alice", "secret", private=True)
    github.connect_token(gctx, alice, TOKEN)
    seen: dict[str, Any] = {}
    original = apps.deploy_app

    def deploy_and_look(ctx, user, **kw):  # type: ignore[no-untyped-def]
        view = original(ctx, user, **kw)
        seen["key"] = github_deploy.deploy_key_for_app(ctx, view.id)  # as the supervisor would
        return view

    monkeypatch.setattr(apps, "deploy_app", deploy_and_look)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/secret", "main", "app.py")
    assert seen["key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    app, row, events = app_row(gctx, view.id)
    assert app.repo_url == fake.ssh_url(repo)
    (key,) = repo.keys.values()
    assert key["read_only"] is True and key["id"] == row.deploy_key_id
    assert "read-only" in key["title"] and view.subdomain in key["title"]
    assert "PRIVATE KEY" not in row.private_key_ciphertext
    assert github_deploy.deploy_key_for_app(gctx, view.id) == seen["key"]
    assert "read-only deploy key was added" in events[-1]
    # A failed deploy takes its key back off GitHub.
    monkeypatch.setattr(apps, "deploy_app", lambda *a, **k: (_ for _ in ()).throw(
        ValidationError("subdomain", "boom")))
    with pytest.raises(ValidationError, match="boom"):
        github_deploy.deploy_from_github(gctx, alice, "alice/secret", "main", "app.py",
                                         subdomain="other")
    assert list(repo.keys) == [row.deploy_key_id]
    with session_scope(gctx.engine) as s:
        assert len(s.exec(select(AppGithub)).all()) == 1


# Failures -------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_backs_off_until_reset(gctx, fake, alice, status) -> None:
    fake.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    reset = int(utcnow().timestamp()) + 600
    fake.rate_limit(reset, status)
    forget()
    with pytest.raises(GithubRateLimited) as e:
        github_deploy.list_admin_repos(gctx, alice)
    assert abs(e.value.until.timestamp() - reset) <= 2
    assert "rate limit" in str(e.value) and "UTC" in str(e.value)
    calls = len(fake.requests)
    with pytest.raises(GithubRateLimited):  # backing off: GitHub is not asked again
        github_deploy.list_branches(gctx, alice, "alice/hello")
    with pytest.raises(GithubRateLimited):
        github.refresh_user(gctx, alice, force=True)
    report = github_sync.refresh_all(gctx, later(1))
    assert "rate limited" in report.skipped["alice"]
    assert len(fake.requests) == calls
    status_view = github.github_status(gctx, alice)
    assert status_view.status == "rate_limited" and "used up" in status_view.message
    fake.rate_limit(None)
    report = github_sync.refresh_all(gctx, e.value.until + timedelta(minutes=31))
    assert report.refreshed == ["alice"]
    assert github.github_status(gctx, alice).status == "ok"


def test_revoked_token(gctx, fake, alice) -> None:
    fake.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    fake.revoke(TOKEN)
    for _ in range(2):
        report = github_sync.refresh_all(gctx, later())
    assert "revoked" in report.skipped["alice"]
    app, row, events = app_row(gctx, view.id)
    assert app.state == "queued"  # nothing running is touched
    assert "revoked" in row.last_error
    assert sum("revoked" in e for e in events) == 1
    status = github.github_status(gctx, alice)
    assert status.status == "revoked" and "Connect GitHub again" in status.message
    with pytest.raises(GithubRevoked):
        github_deploy.list_admin_repos(gctx, alice)
    fake.add_user("alice", "ghp_new", ALL_SCOPES, orgs=("acme",))
    assert github.connect_token(gctx, alice, "ghp_new").status == "ok"
    github_sync.refresh_all(gctx, later())
    _, row, events = app_row(gctx, view.id)
    assert row.last_error == "" and events[-1].startswith("GitHub problem solved")


def test_renamed_and_deleted_repository(gctx, fake, alice) -> None:
    repo = fake.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    fake.rename_repo("alice/hello", "alice", "greetings")
    report = github_sync.refresh_all(gctx, later())
    assert report.apps_checked == 1
    assert ("GET", f"/repositories/{repo.id}") in fake.requests  # PyGithub followed the 301
    app, row, events = app_row(gctx, view.id)
    assert row.repo_full_name == "alice/greetings"
    assert app.repo_url == f"{fake.base_url}/alice/greetings.git"
    assert "alice/hello is now alice/greetings" in events[-1]
    fake.delete_repo("alice/greetings")
    github_sync.refresh_all(gctx, later(62))
    app, row, events = app_row(gctx, view.id)
    assert "was deleted" in row.last_error and events[-1] == row.last_error
    assert app.state == "queued"
    apps.delete_app(gctx, alice, view.id)
    github_deploy.on_app_deleted(gctx, view.id)
    _, row, events = app_row(gctx, view.id)
    assert row is None and "repository was deleted or its deployer cannot see it" in events[-1]


def test_lost_admin_rights(gctx, fake, alice) -> None:
    fake.add_repo("acme", "dash", permissions={"alice": "admin"})
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "acme/dash", "main", "app.py")
    assert memberships(gctx, alice)["acme"] == "admin"
    fake.set_permission("acme/dash", "alice", "push")
    github_sync.refresh_all(gctx, later())
    app, row, events = app_row(gctx, view.id)
    assert "no longer has admin permission on acme/dash" in row.last_error
    assert memberships(gctx, alice)["acme"] == "developer"
    fake.set_permission("acme/dash", "alice", "admin")
    github_sync.refresh_all(gctx, later(62))
    _, row, events = app_row(gctx, view.id)
    assert row.last_error == "" and events[-1] == "GitHub problem solved for acme/dash."


def test_public_repository_made_private(gctx, fake, alice) -> None:
    repo = fake.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    repo.private = True
    github_sync.refresh_all(gctx, later())
    app, row, events = app_row(gctx, view.id)
    assert "is private now" in row.last_error and events[-1] == row.last_error
    assert app.state == "queued"


def test_github_errors_become_messages(gctx, fake, alice) -> None:
    fake.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    fake.failing = 502
    for call in (lambda: github_deploy.list_branches(gctx, alice, "alice/hello"),
                 lambda: github.refresh_user(gctx, alice, force=True),
                 lambda: github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main",
                                                          "app.py")):
        with pytest.raises(GithubError, match="GitHub answered 502"):
            call()
    report = github_sync.refresh_all(gctx, later())
    assert "502" in report.problems["alice"]
    fake.failing = None
    assert github_sync.refresh_all(gctx, later()).refreshed == ["alice"]


def test_cleanup_waits_for_the_rate_limit(gctx, fake, alice) -> None:
    repo = fake.add_repo("alice", "secret", private=True)
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/secret", "main", "app.py")
    reset = int(utcnow().timestamp()) + 600
    fake.rate_limit(reset)
    apps.delete_app(gctx, alice, view.id)
    github_deploy.on_app_deleted(gctx, view.id)
    _, row, events = app_row(gctx, view.id)
    assert row.mode == "cleanup" and row.private_key_ciphertext == ""
    assert "will be removed from GitHub when GitHub can be asked again" in events[-1]
    assert repo.keys and repo.hooks
    fake.rate_limit(None)
    report = github_sync.refresh_all(gctx, later(20))
    assert report.cleanups_pending == 0
    assert repo.keys == {} and repo.hooks == {}
    _, row, events = app_row(gctx, view.id)
    assert row is None and events[-1].startswith("Removed the webhook and deploy key")


# git over SSH with the deploy key -------------------------------------------------------------
def test_ssh_command_and_key_file(gctx) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    with git_auth.key_env(gctx, key, port=2222) as env:
        cmd = env["GIT_SSH_COMMAND"]
        path = Path(cmd.split(" -i ")[1].split(" ")[0])
        assert path.read_text() == key + "\n"
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=accept-new",
                       f"UserKnownHostsFile={known_hosts_path(gctx)}", "-p 2222"):
            assert option in cmd
    assert not path.exists()
    with git_auth.deploy_key_env(gctx, 12345) as env:
        assert env == {}


class Sshd:
    """A non-daemon sshd on 127.0.0.1 accepting only keys listed in `authorized_keys`."""

    def __init__(self, root: Path, authorized_keys: Path) -> None:
        binary = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(binary):
            if os.environ.get("CI") == "true":
                pytest.fail("sshd is missing (apt-get install -y openssh-server)")
            pytest.skip("sshd is not installed (apt-get install -y openssh-server)")
        root.mkdir(parents=True, exist_ok=True)
        host_key = root / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                       check=True)
        self.host_public = host_key.with_suffix(".pub").read_text().split()[:2]
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        self.user = getpass.getuser()
        config = root / "sshd_config"
        config.write_text(f"""ListenAddress 127.0.0.1
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers {self.user}
LogLevel VERBOSE
""")
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config), "-p",
                                      str(self.port)], stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # blocks until sshd says it listens (or exits)
            self.log.append(line)
            if f"Server listening on 127.0.0.1 port {self.port}" in line:
                break
        else:
            raise RuntimeError("sshd did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr or []),
                         daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _bare_repo(root: Path, owner: str, name: str, files: dict[str, str]) -> Path:
    bare, work = root / owner / f"{name}.git", root / f"{name}-work"
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    for args in (["add", "-A"], ["commit", "-q", "-m", "initial"],
                 ["push", "-q", str(bare), "main"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    return bare


def _clone(url: str, dest: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**gitsync._git_env(), **extra_env}  # how gitsync runs git, plus git_auth's part
    return subprocess.run([*gitsync.GIT_BASE, "clone", "--quiet", "--depth", "1", "--", url,
                           str(dest)], env=env, capture_output=True, text=True, timeout=60)


def test_private_repo_cloned_over_ssh_with_the_deploy_key_only(gctx, fake, alice,
                                                               tmp_path) -> None:
    sshd = Sshd(tmp_path / "sshd", fake.authorized_keys)
    try:
        fake.ssh_user, fake.ssh_port = sshd.user, sshd.port
        fake.ssh_host_keys = [" ".join(sshd.host_public)]
        bare = _bare_repo(tmp_path / "git", "alice", "secret",
                          {"streamlit_app.py": "import streamlit as st\nst.write('hi')\n",
                           "pages/more.py": "x = 1\n"})
        other = _bare_repo(tmp_path / "git", "alice", "other", {"x.py": ""})
        fake.add_repo("alice", "secret", private=True, git_dir=bare)
        fake.add_repo("alice", "other", private=True, git_dir=other)
        github.connect_token(gctx, alice, TOKEN)
        assert github_deploy.list_python_files(gctx, alice, "alice/secret", "main") == \
            ["streamlit_app.py", "pages/more.py"]
        view = github_deploy.deploy_from_github(gctx, alice, "alice/secret", "main",
                                                "streamlit_app.py", subdomain="secret")
        app, _, _ = app_row(gctx, view.id)
        assert app.repo_url == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{bare}"
        pinned = known_hosts_path(gctx).read_text()
        assert f"[127.0.0.1]:{sshd.port} {' '.join(sshd.host_public)}" in pinned
        with git_auth.deploy_key_env(gctx, view.id) as env:
            done = _clone(app.repo_url, tmp_path / "clone", env)
            assert done.returncode == 0, done.stderr + "".join(sshd.log[-20:])
            assert "st.write('hi')" in (tmp_path / "clone" / "streamlit_app.py").read_text()
            # The key fetches only its own repository.
            wrong_repo = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{other}"
            assert _clone(wrong_repo, tmp_path / "other", env).returncode != 0
        # Any other key is refused.
        stranger, _ = github_deploy.new_key_pair("stranger")
        with git_auth.key_env(gctx, stranger) as env:
            refused = _clone(app.repo_url, tmp_path / "stranger", env)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        # Deleting the app deletes the deploy key on GitHub: the key no longer works.
        key = github_deploy.deploy_key_for_app(gctx, view.id)
        apps.delete_app(gctx, alice, view.id)
        github_deploy.on_app_deleted(gctx, view.id)
        assert fake.find("alice/secret").keys == {}
        with git_auth.key_env(gctx, key) as env:  # type: ignore[arg-type]
            assert _clone(app.repo_url, tmp_path / "after", env).returncode != 0
    finally:
        sshd.stop()


def test_membership_rows_only_for_github_workspaces(gctx, fake, alice) -> None:
    github.connect_token(gctx, alice, TOKEN)
    with session_scope(gctx.engine) as s:
        rows = s.exec(select(Workspace.name, Membership.role).join(
            Membership, Membership.workspace_id == Workspace.id).where(
            Membership.user_id == alice.id)).all()
    assert sorted(rows) == [("acme", "viewer"), ("alice", "admin")]
