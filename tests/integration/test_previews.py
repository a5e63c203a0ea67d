"""Preview apps of pull requests, through the real PyGithub client against the local
GitHub stand-in (tests/support/fake_github.py) and our webhook endpoint: a pull request
into the app's branch makes a private preview app at `<sub>-pr-<n>` with the app's secrets,
an idle sleep policy and a comment and commit status on GitHub; a push to it syncs the
preview; closing it deletes the preview; a fork's pull request gets no secrets; an app
without previews on gets none; a forged event changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from backend.accounts import auth
from backend.apps import previews
from backend.apps import secrets as app_secrets
from backend.errors import PermissionDenied, ValidationError
from backend.github import accounts as github
from backend.github import deploy as github_deploy
from backend.github import previews as github_previews
from backend.workspaces import get_or_create_workspace
from models import App, AppSleepPolicy, Membership, session_scope
from supervisor.api import make_api_app
from supervisor.proxy import make_proxy_app
from supervisor.routes import RouteTable
from tests.support.api_world import StubReconciler
from tests.support.github_env import TOKEN

SECRETS = 'api_key = "preview-visible-secret"\n'
SHA1, SHA2 = "a" * 40, "b" * 40


def deployed(gctx: Any, fake_github: Any, alice: Any) -> tuple[Any, Any, StubReconciler]:
    repo = fake_github.add_repo("alice", "dash", files=["streamlit_app.py"])
    github.connect_token(gctx, alice, TOKEN)
    view = github_deploy.deploy_from_github(gctx, alice, "alice/dash", "main",
                                            "streamlit_app.py", subdomain="dash")
    app_secrets.set_secrets(gctx, alice, view.id, SECRETS, False)
    reconciler = StubReconciler(runtime_name="fake")
    fake_github.serve_app(make_proxy_app(gctx.settings, RouteTable(),
                                         api=make_api_app(gctx, reconciler)), gctx.settings.port)
    return repo, view, reconciler


def app_of(gctx: Any, app_id: int) -> App:
    with session_scope(gctx.engine) as s:
        app = s.get(App, app_id)
        assert app is not None
        return app


def test_a_pull_request_opens_updates_and_closes_its_preview(gctx, fake_github, alice) -> None:
    repo, view, reconciler = deployed(gctx, fake_github, alice)
    # Previews are off by default: the pull request makes nothing.
    assert fake_github.deliver_pull_request("alice/dash", 7, "opened", "feature", SHA1) == [
        (200, {"ok": True, "previews": []})]
    previews.set_config(gctx, alice, view.id, enabled=True, idle_minutes=20)

    [(status, body)] = fake_github.deliver_pull_request("alice/dash", 7, "opened", "feature",
                                                        SHA1, title="Add a chart")
    assert status == 202
    [preview_id] = body["previews"]
    preview = app_of(gctx, preview_id)
    assert (preview.subdomain, preview.branch, preview.visibility, preview.state) == (
        "dash-pr-7", "feature", "private", "queued")
    assert preview.workspace_id == app_of(gctx, view.id).workspace_id
    assert app_secrets.secrets_text_of(gctx, preview_id) == SECRETS
    with session_scope(gctx.engine) as s:
        policy = s.get(AppSleepPolicy, preview_id)
        assert policy is not None and (policy.kind, policy.idle_minutes,
                                       policy.wake_on_visit) == ("idle", 20.0, True)
    [listed] = previews.list_previews(gctx, alice, view.id)
    assert (listed.number, listed.title, listed.url) == (
        7, "Add a chart", gctx.settings.public_url("dash-pr-7"))
    url = gctx.settings.public_url("dash-pr-7")
    assert [(c["issue"], url in c["body"]) for c in repo.comments] == [(7, True)]
    assert [(st["sha"], st["state"], st["target_url"], st["context"])
            for st in repo.statuses] == [(SHA1, "pending", url, "stcloud/preview")]

    # A push to the pull request: the same preview, synced; a new pending status, no comment.
    [(status, body)] = fake_github.deliver_pull_request("alice/dash", 7, "synchronize",
                                                        "feature", SHA2)
    assert (status, body["previews"]) == (202, [preview_id])
    assert reconciler.pushes == [(preview_id, "pull request push")]
    assert len(repo.comments) == 1 and repo.statuses[-1]["sha"] == SHA2

    # It runs: the status says so, once.
    with session_scope(gctx.engine) as s:
        row = s.get(App, preview_id)
        assert row is not None
        row.state = "running"
        s.add(row)
    assert github_previews.report_states(gctx) == 1
    assert github_previews.report_states(gctx) == 0
    assert (repo.statuses[-1]["sha"], repo.statuses[-1]["state"]) == (SHA2, "success")

    # Closed: the preview app is deleted (the supervisor removes it) and no longer listed.
    [(status, body)] = fake_github.deliver_pull_request("alice/dash", 7, "closed", "feature",
                                                        SHA2)
    assert (status, body["previews"]) == (202, [preview_id])
    assert app_of(gctx, preview_id).desired_state == "deleted"
    assert previews.list_previews(gctx, alice, view.id) == []


def test_a_forks_pull_request_gets_no_secrets_and_no_credential(gctx, fake_github,
                                                                alice) -> None:
    _, view, _ = deployed(gctx, fake_github, alice)
    previews.set_config(gctx, alice, view.id, enabled=True)
    # Forks are off unless the developers turn them on.
    assert fake_github.deliver_pull_request("alice/dash", 9, "opened", "patch", SHA1,
                                            head_repo="mallory/dash") == [
        (200, {"ok": True, "previews": []})]
    previews.set_config(gctx, alice, view.id, enabled=True, allow_forks=True)
    [(status, body)] = fake_github.deliver_pull_request("alice/dash", 9, "opened", "patch",
                                                        SHA1, head_repo="mallory/dash")
    assert status == 202
    [preview_id] = body["previews"]
    preview = app_of(gctx, preview_id)
    assert preview.repo_url == f"{fake_github.base_url}/mallory/dash.git"
    assert app_secrets.secrets_text_of(gctx, preview_id) == ""
    assert previews.credential_source(gctx, preview_id) == preview_id


def test_a_forged_pull_request_event_changes_nothing(gctx, fake_github, alice) -> None:
    repo, view, _ = deployed(gctx, fake_github, alice)
    previews.set_config(gctx, alice, view.id, enabled=True)
    for hook in repo.hooks.values():
        hook["secret"] = "not-the-apps-secret"
    [(status, _)] = fake_github.deliver_pull_request("alice/dash", 3, "opened", "x", SHA1)
    assert status == 403
    assert previews.list_previews(gctx, alice, view.id) == []
    with session_scope(gctx.engine) as s:
        assert [a.subdomain for a in s.exec(select(App)).all()] == ["dash"]


def test_preview_settings_are_for_developers_and_checked(gctx, fake_github, alice) -> None:
    _, view, _ = deployed(gctx, fake_github, alice)
    with pytest.raises(ValidationError, match="minutes"):
        previews.set_config(gctx, alice, view.id, enabled=True, idle_minutes=1)
    with pytest.raises(ValidationError, match="secrets"):
        previews.set_config(gctx, alice, view.id, enabled=True, secrets_mode="all")
    with pytest.raises(app_secrets.SecretsError):
        previews.set_config(gctx, alice, view.id, enabled=True, secrets_mode="own",
                            own_secrets="broken = ")
    previews.set_config(gctx, alice, view.id, enabled=True, secrets_mode="own",
                        own_secrets='api_key = "for-previews-only"\n')
    assert previews.get_config(gctx, alice, view.id).has_own_secrets
    [(_, body)] = fake_github.deliver_pull_request("alice/dash", 4, "opened", "own", SHA1)
    [preview_id] = body["previews"]
    assert app_secrets.secrets_text_of(gctx, preview_id) == 'api_key = "for-previews-only"\n'
    with pytest.raises(ValidationError, match="itself a preview"):
        previews.set_config(gctx, alice, preview_id, enabled=True)
    viewer = auth.create_user(gctx, "vic", "password-vic-1")
    with session_scope(gctx.engine) as s:
        ws = get_or_create_workspace(s, "alice", alice)
        s.add(Membership(user_id=viewer.id, workspace_id=ws.id, role="viewer"))
    with pytest.raises(PermissionDenied):
        previews.set_config(gctx, viewer, view.id, enabled=False)
    assert previews.get_config(gctx, viewer, view.id).enabled is True  # viewers may read
