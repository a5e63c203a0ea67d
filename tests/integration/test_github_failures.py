"""GitHub failures, each through the real PyGithub client against
tests/support/fake_github.py: rate limits (403 and 429) backed off until the reset, a revoked
token, renamed and deleted repositories, lost admin rights, a public repository made
private, GitHub's errors as messages, and cleanup that waits for the rate limit.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.apps import service as apps
from backend.github import accounts as github
from backend.github import deploy as github_deploy
from backend.github import sync as github_sync
from backend.github.client import (
    GithubError,
    GithubRateLimited,
    GithubRevoked,
    forget,
)
from models import utcnow
from tests.support.github_env import (
    ALL_SCOPES,
    TOKEN,
    app_row,
    later,
    memberships,
)


# Failures -------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [403, 429])
def test_rate_limit_backs_off_until_reset(gctx, fake_github, alice, status) -> None:
    fake_github.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    reset = int(utcnow().timestamp()) + 600
    fake_github.rate_limit(reset, status)
    forget()
    with pytest.raises(GithubRateLimited) as e:
        github_deploy.list_admin_repos(gctx, alice)
    assert abs(e.value.until.timestamp() - reset) <= 2
    assert "rate limit" in str(e.value) and "UTC" in str(e.value)
    calls = len(fake_github.requests)
    with pytest.raises(GithubRateLimited):  # backing off: GitHub is not asked again
        github_deploy.list_branches(gctx, alice, "alice/hello")
    with pytest.raises(GithubRateLimited):
        github.refresh_user(gctx, alice, force=True)
    report = github_sync.refresh_all(gctx, later(1))
    assert "rate limited" in report.skipped["alice"]
    assert len(fake_github.requests) == calls
    status_view = github.github_status(gctx, alice)
    assert status_view.status == "rate_limited" and "used up" in status_view.message
    fake_github.rate_limit(None)
    report = github_sync.refresh_all(gctx, e.value.until + timedelta(minutes=31))
    assert report.refreshed == ["alice"]
    assert github.github_status(gctx, alice).status == "ok"


def test_revoked_token(gctx, fake_github, alice) -> None:
    fake_github.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    fake_github.revoke(TOKEN)
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
    fake_github.add_user("alice", "ghp_new", ALL_SCOPES, orgs=("acme",))
    assert github.connect_token(gctx, alice, "ghp_new").status == "ok"
    github_sync.refresh_all(gctx, later())
    _, row, events = app_row(gctx, view.id)
    assert row.last_error == "" and events[-1].startswith("GitHub problem solved")


def test_renamed_and_deleted_repository(gctx, fake_github, alice) -> None:
    repo = fake_github.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    fake_github.rename_repo("alice/hello", "alice", "greetings")
    report = github_sync.refresh_all(gctx, later())
    assert report.apps_checked == 1
    assert ("GET", f"/repositories/{repo.id}") in fake_github.requests  # PyGithub followed the 301
    app, row, events = app_row(gctx, view.id)
    assert row.repo_full_name == "alice/greetings"
    assert app.repo_url == f"{fake_github.base_url}/alice/greetings.git"
    assert "alice/hello is now alice/greetings" in events[-1]
    fake_github.delete_repo("alice/greetings")
    github_sync.refresh_all(gctx, later(62))
    app, row, events = app_row(gctx, view.id)
    assert "was deleted" in row.last_error and events[-1] == row.last_error
    assert app.state == "queued"
    apps.delete_app(gctx, alice, view.id)
    github_deploy.on_app_deleted(gctx, view.id)
    _, row, events = app_row(gctx, view.id)
    assert row is None and "repository was deleted or its deployer cannot see it" in events[-1]


def test_lost_admin_rights(gctx, fake_github, alice) -> None:
    fake_github.add_repo("acme", "dash", permissions={"alice": "admin"})
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "acme/dash", "main", "app.py")
    assert memberships(gctx, alice)["acme"] == "admin"
    fake_github.set_permission("acme/dash", "alice", "push")
    github_sync.refresh_all(gctx, later())
    app, row, events = app_row(gctx, view.id)
    assert "no longer has admin permission on acme/dash" in row.last_error
    assert memberships(gctx, alice)["acme"] == "developer"
    fake_github.set_permission("acme/dash", "alice", "admin")
    github_sync.refresh_all(gctx, later(62))
    _, row, events = app_row(gctx, view.id)
    assert row.last_error == "" and events[-1] == "GitHub problem solved for acme/dash."


def test_public_repository_made_private(gctx, fake_github, alice) -> None:
    repo = fake_github.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    repo.private = True
    github_sync.refresh_all(gctx, later())
    app, row, events = app_row(gctx, view.id)
    assert "is private now" in row.last_error and events[-1] == row.last_error
    assert app.state == "queued"


def test_github_errors_become_messages(gctx, fake_github, alice) -> None:
    fake_github.add_repo("alice", "hello")
    github.connect_token(gctx, alice, TOKEN)
    github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main", "app.py")
    fake_github.failing = 502
    for call in (lambda: github_deploy.list_branches(gctx, alice, "alice/hello"),
                 lambda: github.refresh_user(gctx, alice, force=True),
                 lambda: github_deploy.deploy_from_github(gctx, alice, "alice/hello", "main",
                                                          "app.py")):
        with pytest.raises(GithubError, match="GitHub answered 502"):
            call()
    report = github_sync.refresh_all(gctx, later())
    assert "502" in report.problems["alice"]
    fake_github.failing = None
    assert github_sync.refresh_all(gctx, later()).refreshed == ["alice"]


def test_cleanup_waits_for_the_rate_limit(gctx, fake_github, alice) -> None:
    repo = fake_github.add_repo("alice", "secret", private=True)
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/secret", "main", "app.py")
    reset = int(utcnow().timestamp()) + 600
    fake_github.rate_limit(reset)
    apps.delete_app(gctx, alice, view.id)
    github_deploy.on_app_deleted(gctx, view.id)
    _, row, events = app_row(gctx, view.id)
    assert row.mode == "cleanup" and row.private_key_ciphertext == ""
    assert "will be removed from GitHub when GitHub can be asked again" in events[-1]
    assert repo.keys and repo.hooks
    fake_github.rate_limit(None)
    report = github_sync.refresh_all(gctx, later(20))
    assert report.cleanups_pending == 0
    assert repo.keys == {} and repo.hooks == {}
    _, row, events = app_row(gctx, view.id)
    assert row is None and events[-1].startswith("Removed the webhook and deploy key")
