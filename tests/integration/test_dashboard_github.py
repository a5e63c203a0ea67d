"""The dashboard's GitHub connection, API tokens and deploy-from-GitHub pickers, under
AppTest (as tests/integration/test_dashboard.py) against tests/support/fake_github.py's server (as
tests/integration/test_github.py): STCLOUD_GITHUB_BASE_URL points PyGithub at it."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts import api_tokens
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.github import accounts as github
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    Dash,
    click,
    open_dashboard,
    text,
)
from tests.support.fake_github import FakeGithub
from tests.support.github_env import ALL_SCOPES, TOKEN


@pytest.fixture
def dash_gctx(dash: Dash, fake_github: FakeGithub, monkeypatch: pytest.MonkeyPatch) -> Context:
    """The dashboard's settings, with GitHub at the fake server and alice on it."""
    monkeypatch.setenv("STCLOUD_GITHUB_BASE_URL", fake_github.base_url)
    fake_github.add_user("alice", TOKEN, ALL_SCOPES, orgs=("acme",))
    return open_context()


def account(dash: Dash) -> AppTest:
    return open_dashboard(dash.admin, ui.ACCOUNT)


def test_connect_with_a_token_shows_the_login_and_scopes(dash: Dash, dash_gctx: Context) -> None:
    at = account(dash)
    assert "Not connected" in text(at)
    at.text_input(key="gh_token").input(TOKEN)
    at = click(at, "gh_connect")
    page = text(at)
    assert "@alice" in page and "GitHub connected as @alice." in page
    assert "`admin:repo_hook`" in page and "webhook" in page  # the scope explained
    assert at.text_input(key="gh_token").value == ""
    status = github.github_status(dash_gctx, dash.admin)
    assert status is not None and status.login == "alice"
    at = click(at, "gh_disconnect")
    assert github.github_status(dash_gctx, dash.admin) is None
    assert "Not connected" in text(at)


def test_a_bad_token_shows_the_error(dash: Dash, dash_gctx: Context) -> None:
    at = account(dash)
    at.text_input(key="gh_token").input("ghp_wrong")
    at = click(at, "gh_connect")
    assert any("Bad credentials" in e.value for e in at.error)
    assert github.github_status(dash_gctx, dash.admin) is None


def test_oauth_link_and_callback_messages(dash: Dash, fake_github: FakeGithub,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STCLOUD_GITHUB_BASE_URL", fake_github.base_url)
    monkeypatch.setenv("STCLOUD_GITHUB_CLIENT_ID", fake_github.client_id)
    monkeypatch.setenv("STCLOUD_GITHUB_CLIENT_SECRET", fake_github.client_secret)
    at = open_dashboard(dash.admin, ui.ACCOUNT, query={"github_error": "GitHub said no."})
    [button] = [b for b in at.get("link_button") if "Sign in with GitHub" in str(b.proto)]
    assert "client_id=fake-client-id" in button.proto.url and "state=" in button.proto.url
    assert any("GitHub said no." in e.value for e in at.error)
    at = open_dashboard(dash.admin, ui.ACCOUNT, query={"github": "connected"})
    assert any("GitHub is connected" in s.value for s in at.success)


def test_api_token_is_shown_once_authenticates_and_can_be_revoked(dash: Dash) -> None:
    at = account(dash)
    at.text_input(key="api_token_name").input("laptop")
    at.multiselect(key="api_token_scopes").set_value(["deploy"])
    at = click(at, "FormSubmitter:create_api_token-Create token")
    [plaintext] = [c.value for c in at.code if c.value.startswith(api_tokens.PREFIX)]
    assert "will not be shown again" in text(at)
    found = api_tokens.authenticate_token(dash.ctx, plaintext)
    assert found is not None and found[0].username == dash.admin.username
    assert found[1] == {"read", "deploy"}
    [token] = api_tokens.list_tokens(dash.ctx, dash.admin)
    assert "laptop" in text(at)
    at.run()  # any rerun: the plaintext is gone
    assert plaintext not in text(at)
    at = click(at, f"api_token_revoke_{token.id}")
    assert api_tokens.authenticate_token(dash.ctx, plaintext) is None
    assert "revoked" in text(at)
    assert f"api_token_revoke_{token.id}" not in {b.key for b in at.button}


def test_api_token_needs_a_name(dash: Dash) -> None:
    at = account(dash)
    at = click(at, "FormSubmitter:create_api_token-Create token")
    assert any("Name the token" in e.value for e in at.error)
    assert api_tokens.list_tokens(dash.ctx, dash.admin) == []


def test_deploy_from_github_pickers(dash: Dash, dash_gctx: Context,
                                    fake_github: FakeGithub) -> None:
    fake_github.add_repo("alice", "dashboards",
                         files=["streamlit_app.py", "lib/util.py", "app.py"],
                         branches={"main": "a" * 40, "dev": "b" * 40})
    fake_github.add_repo("alice", "notes")
    fake_github.add_repo("acme", "readonly", permissions={"alice": "push"})
    github.connect_token(dash_gctx, dash.admin, TOKEN)
    at = open_dashboard(dash.admin, ui.DEPLOY)
    assert at.radio(key="deploy_source").value == "github"
    assert sorted(at.selectbox(key="deploy_gh_repo").options) == \
        ["alice/dashboards", "alice/notes"]
    at.text_input(key="deploy_gh_query").input("dash").run()
    assert at.selectbox(key="deploy_gh_repo").options == ["alice/dashboards"]
    assert at.selectbox(key="deploy_gh_branch").options == ["main", "dev"]
    assert at.selectbox(key="deploy_gh_main_file").options == \
        ["streamlit_app.py", "app.py", "lib/util.py"]
    assert at.selectbox(key="deploy_gh_main_file").value == "streamlit_app.py"
    at.selectbox(key="deploy_gh_branch").select("dev")
    at.selectbox(key="deploy_gh_main_file").select("app.py")
    at.text_input(key="deploy_subdomain").input("from-gh")
    at = click(at, "deploy_submit")
    [app] = apps.list_apps(dash_gctx, dash.admin)
    assert (app.subdomain, app.branch, app.main_file) == ("from-gh", "dev", "app.py")
    assert app.repo_url.endswith("/alice/dashboards.git")
    assert "from-gh" in text(at)
    at = open_dashboard(dash.admin, ui.SETTINGS, query={"app": str(app.id)})
    assert "alice/dashboards" in text(at) and "updates arrive by" in text(at)


def test_deploy_from_github_shows_errors(dash: Dash, dash_gctx: Context,
                                         fake_github: FakeGithub) -> None:
    fake_github.add_repo("alice", "hello", files=["streamlit_app.py"])
    github.connect_token(dash_gctx, dash.admin, TOKEN)
    apps.deploy_app(dash_gctx, dash.admin, repo_url="https://github.com/owner/x", subdomain="taken")
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.text_input(key="deploy_subdomain").input("taken")
    at = click(at, "deploy_submit")
    assert any("is taken" in e.value for e in at.error)
    assert len(apps.list_apps(dash_gctx, dash.admin)) == 1


def test_git_url_mode_still_offered_when_connected(dash: Dash, dash_gctx: Context) -> None:
    github.connect_token(dash_gctx, dash.admin, TOKEN)
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.radio(key="deploy_source").set_value("url").run()
    assert at.text_input(key="deploy_repo") is not None
    assert not at.selectbox(key="deploy_python").disabled
