"""GitHub integration through the real PyGithub client against tests/support/fake_github.py:
the tables' migration, connecting (token and OAuth) with scopes explained, workspaces and
roles that follow GitHub, the deploy form's pickers, and membership rows. Deploys are in
test_github_deploy.py, failures in test_github_failures.py, git over SSH with the deploy key
in test_github_ssh.py. The fixtures (`fake_github`, `gctx`, `alice`) are in
tests/integration/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from backend import workspaces
from backend.accounts import auth
from backend.context import Context
from backend.errors import NotFound, ValidationError
from backend.github import accounts as github
from backend.github import deploy as github_deploy
from backend.github.client import (
    forget,
)
from models import Membership, Workspace, make_engine, migrate, session_scope
from models.github import GithubAccount, GithubGrant
from tests.support.github_env import (
    ALL_SCOPES,
    TOKEN,
    github_settings,
    memberships,
)


# Models ---------------------------------------------------------------------------------------
def test_migration_0004_matches_the_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


# Connecting -----------------------------------------------------------------------------------
def test_connect_token_explains_scopes_and_encrypts(gctx, fake_github, alice) -> None:
    fake_github.add_user("bob", "ghp_bob", "public_repo")
    fake_github.add_user("carol", "github_pat_carol", None)
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


def test_oauth_flow(gctx, fake_github, alice) -> None:
    state = github.oauth_state(gctx, alice)
    url = github.oauth_authorize_url(gctx, state)
    assert url.startswith(f"{fake_github.base_url}/login/oauth/authorize?")
    assert f"client_id={fake_github.client_id}" in url and f"state={state}" in url
    assert "scope=repo+admin%3Arepo_hook+read%3Aorg" in url
    assert "redirect_uri=" + "http%3A%2F%2Flocalhost" in url
    assert github.oauth_state_user(gctx, state) == alice.id
    other = auth.create_user(gctx, "mallory", "password123")
    code = fake_github.new_oauth_code(TOKEN)
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
def test_workspaces_and_roles_follow_github(gctx, fake_github, admin, alice) -> None:
    fake_github.add_user("bob", "ghp_bob", ALL_SCOPES)
    fake_github.orgs |= {"acme", "beta"}
    fake_github.users["alice"]["orgs"] = ["acme", "beta"]
    fake_github.add_repo("acme", "dash", permissions={"alice": "push"})
    fake_github.add_repo("bob", "shared", permissions={"bob": "admin", "alice": "triage"})
    fake_github.add_repo("carol", "elsewhere", permissions={"alice": "admin"})
    for i in range(120):  # more than one page of 100
        fake_github.add_repo("alice", f"repo{i:03}")
    with session_scope(gctx.engine) as s:  # bob's workspace exists: someone deployed there
        s.add(Workspace(name="bob"))
        gamma = Workspace(name="gamma")
        s.add(gamma)
    github.connect_token(gctx, alice, TOKEN)
    assert memberships(gctx, alice) == {"alice": "admin", "acme": "developer",
                                        "beta": "viewer", "bob": "viewer"}
    assert any("page=2" in path for _, path in fake_github.calls("/user/repos"))
    # Cached: a sign-in within github_refresh_minutes asks GitHub nothing.
    before = len(fake_github.requests)
    assert ("acme", "developer") in github.refresh_user(gctx, alice)
    assert len(fake_github.requests) == before
    # A role given by hand is kept: GitHub only adds to it.
    with session_scope(gctx.engine) as s:
        gamma_id = s.exec(select(Workspace.id).where(Workspace.name == "gamma")).one()
    workspaces.set_member(gctx, admin, gamma_id, "alice", "developer")
    fake_github.add_repo("gamma", "tool", permissions={"alice": "pull"})
    fake_github.set_permission("acme/dash", "alice", "admin")
    forget()
    github.refresh_user(gctx, alice, force=True)
    assert memberships(gctx, alice)["acme"] == "admin"
    assert memberships(gctx, alice)["gamma"] == "developer"
    # GitHub takes access away: GitHub-made memberships go, hand-made ones stay.
    fake_github.users["alice"]["orgs"] = []
    fake_github.set_permission("acme/dash", "alice", None)
    fake_github.set_permission("gamma/tool", "alice", None)
    fake_github.set_permission("bob/shared", "alice", None)
    forget()
    github.refresh_user(gctx, alice, force=True)
    assert memberships(gctx, alice) == {"alice": "admin", "gamma": "developer"}
    with session_scope(gctx.engine) as s:
        assert {g.workspace_id for g in s.exec(select(GithubGrant))} == {
            s.exec(select(Workspace.id).where(Workspace.name == "alice")).one()}


# Pickers --------------------------------------------------------------------------------------
def test_pickers(gctx, fake_github, alice) -> None:
    fake_github.add_repo("alice", "dashboards", files=["streamlit_app.py", "lib/util.py",
                                                  "pages/1_Map.py", "README.md", "app.py"],
                         branches={"main": "a" * 40, "dev": "b" * 40, "feature/x": "c" * 40})
    fake_github.add_repo("alice", "notes", private=True)
    fake_github.add_repo("acme", "readonly", permissions={"alice": "push"})
    github.connect_token(gctx, alice, TOKEN)
    names = [r.full_name for r in github_deploy.list_admin_repos(gctx, alice)]
    assert sorted(names) == ["alice/dashboards", "alice/notes"]
    assert [r.full_name for r in github_deploy.list_admin_repos(gctx, alice, "DASH")] == \
        ["alice/dashboards"]
    assert github_deploy.list_branches(gctx, alice, "alice/dashboards") == \
        ["main", "dev", "feature/x"]
    files = github_deploy.list_python_files(gctx, alice, "alice/dashboards", "feature/x")
    assert files == ["streamlit_app.py", "app.py", "lib/util.py", "pages/1_Map.py"]
    trees = fake_github.calls("/repos/alice/dashboards/git/trees")
    assert any("recursive=1" in p for _, p in trees)
    before = len(fake_github.requests)
    github_deploy.list_python_files(gctx, alice, "alice/dashboards", "feature/x")
    github_deploy.list_admin_repos(gctx, alice, "notes")
    assert len(fake_github.requests) == before  # cached
    with pytest.raises(NotFound, match="does not exist on GitHub"):
        github_deploy.list_branches(gctx, alice, "alice/missing")
    with pytest.raises(ValidationError, match="branch"):
        github_deploy.list_python_files(gctx, alice, "alice/dashboards", "nope")
    with pytest.raises(ValidationError):
        github_deploy.list_branches(gctx, alice, "not a repo")


def test_membership_rows_only_for_github_workspaces(gctx, fake_github, alice) -> None:
    github.connect_token(gctx, alice, TOKEN)
    with session_scope(gctx.engine) as s:
        rows = s.exec(select(Workspace.name, Membership.role).join(
            Membership, Membership.workspace_id == Workspace.id).where(
            Membership.user_id == alice.id)).all()
    assert sorted(rows) == [("acme", "viewer"), ("alice", "admin")]
