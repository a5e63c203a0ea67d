"""Deploys from GitHub through the real PyGithub client against tests/support/fake_github.py:
a public repository with its webhook delivered through our API, who may deploy which
branch, polling when no webhook can be added, and a private repository's deploy key made
before the app is queued.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from backend.accounts import auth
from backend.apps import service as apps
from backend.apps.service import AppView
from backend.context import Context
from backend.errors import NotFound, PermissionDenied, ValidationError
from backend.github import accounts as github
from backend.github import deploy as github_deploy
from backend.github import deploy_keys
from backend.github.client import (
    Conn,
)
from models import User, session_scope
from models.github import AppGithub, GithubAccount
from supervisor.api import make_api_app
from supervisor.proxy import make_proxy_app
from supervisor.routes import RouteTable
from tests.support.api_world import StubReconciler
from tests.support.github_env import (
    TOKEN,
    app_row,
)


# Deploy: public repository, webhook delivered through our API ---------------------------------
def test_deploy_public_repo_with_webhook(gctx, fake_github, alice) -> None:
    repo = fake_github.add_repo("alice", "hello", files=["streamlit_app.py"])
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main",
                                            "streamlit_app.py", subdomain="hello")
    app, row, events = app_row(gctx, view.id)
    assert app.repo_url == f"{fake_github.base_url}/alice/hello.git" and app.state == "queued"
    assert row is not None and (row.mode, row.private, row.deploy_key_id) == \
        ("webhook", False, None)
    assert not repo.keys
    (hook,) = repo.hooks.values()
    assert hook["id"] == row.hook_id and hook["events"] == ["push", "pull_request"]
    assert hook["config"]["url"] == gctx.settings.public_url() + "/api/v1/hooks/github"
    assert hook["config"]["content_type"] == "json"
    assert hook["secret"] == app.webhook_secret
    assert "Pushes reach the app by webhook" in events[-1]
    info = github_deploy.app_github_info(gctx, alice, view.id)
    assert info is not None and info.mode == "webhook" and not info.has_deploy_key
    assert deploy_keys.deploy_key_for_app(gctx, view.id) is None
    # GitHub delivers a push to our API (through the proxy), which verifies the signature.
    reconciler = StubReconciler(runtime_name="fake")
    fake_github.serve_app(make_proxy_app(gctx.settings, RouteTable(),
                                         api=make_api_app(gctx, reconciler)), gctx.settings.port)
    assert fake_github.deliver_push("alice/hello", "main") == [
        (202, {"ok": True, "apps": [view.id]})]
    assert reconciler.pushes == [(view.id, "github webhook")]
    # Deleting the app removes the webhook from GitHub.
    apps.delete_app(gctx, alice, view.id)
    github_deploy.on_app_deleted(gctx, view.id)
    assert repo.hooks == {}
    _, row, events = app_row(gctx, view.id)
    assert row is None and "Removed the webhook from GitHub alice/hello." in events


def test_deploy_needs_admin_and_a_real_branch(gctx, fake_github, alice) -> None:
    fake_github.add_repo("acme", "dash", permissions={"alice": "push"})
    fake_github.add_repo("alice", "hello")
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
    assert len(fake_github.find("alice/hello").hooks) == 1  # the refused deploy added nothing


def test_polling_when_no_webhook_can_be_added(gctx, fake_github, alice) -> None:
    fake_github.add_user("bob", "ghp_bob", "public_repo, read:org")
    bob = auth.create_user(gctx, "bob", "password123")
    fake_github.add_repo("bob", "hello")
    github.connect_token(gctx, bob, "ghp_bob")
    view = github_deploy.deploy_from_github(gctx, bob, "bob/hello", "main", "app.py")
    _, row, events = app_row(gctx, view.id)
    assert (row.mode, row.hook_id) == ("polling", None)
    assert "admin:repo_hook" in row.mode_reason and "by polling" in events[-1]
    # A private repository needs `repo`: bob's token cannot even see one.
    fake_github.add_repo("bob", "secret", private=True)
    with pytest.raises(NotFound, match="`repo` scope"):
        github_deploy.deploy_from_github(gctx, bob, "bob/secret", "main", "app.py")


def test_no_webhook_when_github_cannot_reach_us(gctx: Context) -> None:
    """github.com cannot deliver to http://localhost: polling, and the reason says why."""
    account = GithubAccount(user_id=1, login="a", base_url="https://api.github.com",
                            scopes="repo")
    mode, reason, hook_id = github_deploy._add_webhook(
        gctx, Conn(account, None), None, 1)  # type: ignore[arg-type]  # repo is never reached
    assert (mode, hook_id) == ("polling", None)
    assert "cannot reach this server's public address http://localhost" in reason


def test_private_deploy_key_exists_before_the_app_is_queued(gctx, fake_github, alice,
                                                            monkeypatch) -> None:
    repo = fake_github.add_repo("alice", "secret", private=True)
    github.connect_token(gctx, alice, TOKEN)
    seen: dict[str, Any] = {}
    original = apps.deploy_app

    def deploy_and_look(ctx: Context, user: User, **kw: Any) -> AppView:
        view = original(ctx, user, **kw)
        seen["key"] = deploy_keys.deploy_key_for_app(ctx, view.id)  # as the supervisor would
        return view

    monkeypatch.setattr(apps, "deploy_app", deploy_and_look)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/secret", "main", "app.py")
    assert seen["key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    app, row, events = app_row(gctx, view.id)
    assert app.repo_url == fake_github.ssh_url(repo)
    (key,) = repo.keys.values()
    assert key["read_only"] is True and key["id"] == row.deploy_key_id
    assert "read-only" in key["title"] and view.subdomain in key["title"]
    assert "PRIVATE KEY" not in row.private_key_ciphertext
    assert deploy_keys.deploy_key_for_app(gctx, view.id) == seen["key"]
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
