"""The dashboard's deploy form under Streamlit's AppTest on the real Home.py
(tests/support/dashboard.py): errors under their fields, checks of the branch, main file
and subdomain before anything is queued, a valid deploy followed to its end, and a viewer
who may not deploy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.apps.log_files import build_log_path
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    REPO,
    Dash,
    add_member,
    db_app,
    error_under,
    fill_deploy,
    local_repo,
    move,
    open_dashboard,
    text,
)

# Deploy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "label", "message"), [
    ({"repo": REPO, "subdomain": "Bad_Name!"}, "App URL (custom subdomain)",
     "is not a valid subdomain"),
    ({"repo": "not-a-url"}, "Repository", "is not a git URL"),
    ({"repo": REPO, "main_file": "app.txt"}, "Main file path", "ending in .py"),
    ({"repo": REPO, "branch": "bad..branch"}, "Branch", "is not a valid branch name"),
    ({"repo": REPO, "secrets": "key = 'ok'\nbroken line"}, "Secrets",
     "Line 2, column 8"),
])
def test_deploy_form_shows_the_error_under_its_field(dash: Dash, fields: dict[str, str],
                                                     label: str, message: str) -> None:
    at = fill_deploy(open_dashboard(dash.admin, ui.DEPLOY), **fields)
    assert message in error_under(at, label)
    assert apps.list_apps(dash.ctx, dash.admin) == []


def test_deploy_checks_the_branch_and_main_file_before_anything_is_queued(
        dash: Dash, tmp_path: Path) -> None:
    repo = local_repo(tmp_path, {"app.py": "print()\n", "pages/other.py": ""})
    at = fill_deploy(open_dashboard(dash.admin, ui.DEPLOY), repo=repo, main_file="main.py")
    message = error_under(at, "Main file path")
    assert "no file 'main.py' on branch 'main'" in message and "app.py" in message
    at = fill_deploy(at, main_file="app.py", branch="nope")
    assert "branch 'nope' does not exist" in error_under(at, "Branch")
    at = fill_deploy(at, repo=str(tmp_path / "missing.git"), branch="main")
    assert "There is no git repository at" in error_under(at, "Repository")
    assert apps.list_apps(dash.ctx, dash.admin) == []
    at = fill_deploy(at, repo=repo)
    assert [a.main_file for a in apps.list_apps(dash.ctx, dash.admin)] == ["app.py"]


def test_deploy_says_as_you_type_whether_the_subdomain_is_free(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="taken")
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.text_input(key="deploy_subdomain").input("taken").run()
    assert "**taken** is taken" in text(at)
    at.text_input(key="deploy_subdomain").input("free-one").run()
    assert "✓ available" in text(at) and "free-one.cloud.test" in text(at)
    at = fill_deploy(at, repo=REPO, subdomain="taken")
    assert "is taken" in error_under(at, "App URL (custom subdomain)")


def test_deploy_suggests_a_free_subdomain_and_shows_the_url(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO)  # takes "hello"
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.text_input(key="deploy_repo").input(REPO).run()
    assert at.text_input(key="deploy_subdomain").value == "hello-2"
    assert "http\\://hello-2.cloud.test\\:8080" in text(at)


def test_valid_deploy_queues_the_app_with_python_and_secrets_and_follows_it(
        dash: Dash, tmp_path: Path) -> None:
    ctx = dash.ctx
    repo = local_repo(tmp_path, {"app/main.py": "import streamlit\n"}, branch="dev")
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.selectbox(key="deploy_python").select(ctx.settings.default_python)
    at = fill_deploy(at, repo=repo, branch="dev", main_file="app/main.py", subdomain="fresh",
                     secrets='token = "s3cret-value"\n')
    [app] = apps.list_apps(ctx, dash.admin)
    assert (app.subdomain, app.repo_url, app.branch, app.main_file, app.state) == \
        ("fresh", repo, "dev", "app/main.py", "queued")
    assert app_secrets.get_secrets(ctx, dash.admin, app.id) == 'token = "s3cret-value"\n'
    assert app_secrets.runtime_env_vars(ctx.settings, app.id) == {"token": "s3cret-value"}
    assert db_app(ctx, app.id).restart_generation == 0  # queued: no reboot needed
    assert "🍳 Your app is in the oven" in text(at)

    log = build_log_path(ctx.settings, app.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Cloning the repository\nInstalling streamlit\n")
    move(ctx, app.id, "building", reason="Building the environment")
    at.run()
    assert "Installing streamlit" in text(at)
    move(ctx, app.id, "starting", "running")
    at.run()
    assert [b.proto.url for b in at.get("link_button")] == [dash.url("fresh")]
    assert "Your app is live" in text(at)


def test_failed_deploy_shows_the_reason_and_the_log_tail(dash: Dash, tmp_path: Path) -> None:
    at = fill_deploy(open_dashboard(dash.admin, ui.DEPLOY), repo=local_repo(tmp_path))
    [app] = apps.list_apps(dash.ctx, dash.admin)
    log = build_log_path(dash.ctx.settings, app.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Resolving\nerror: No matching distribution for pandas==9.9\n")
    move(dash.ctx, app.id, "building", "build_failed", reason="Installing packages failed")
    at.run()
    assert any("Build failed: Installing packages failed" in e.value for e in at.error)
    assert any("No matching distribution for pandas==9.9" in c.value for c in at.code)


def test_viewer_cannot_deploy_into_a_workspace(dash: Dash, tmp_path: Path) -> None:
    repo = local_repo(tmp_path)  # owner "owner" (…/repos/hello/owner/hello.git)
    apps.deploy_app(dash.ctx, dash.admin, repo_url=repo, subdomain="first")
    carol = add_member(dash.ctx, "carol", "owner", "viewer")
    at = fill_deploy(open_dashboard(carol, ui.DEPLOY), repo=repo, subdomain="second")
    assert any("need the developer role" in e.value for e in at.error)
    assert [a.subdomain for a in apps.list_apps(dash.ctx, dash.admin)] == ["first"]
