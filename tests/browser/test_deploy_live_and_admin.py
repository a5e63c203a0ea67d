"""In Chromium: the deploy form checks the branch and the main file as they are typed (the
branch list, the branch's Python files with subfolders, a wrong branch flagged before
Deploy), and the Server settings page shows the settings to the site admin. With
STCLOUD_SCREENSHOTS set it writes the docs' screenshots (tests/browser/docs_shots.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.apps import service as apps
from tests.browser.docs_shots import docs_shot
from tests.browser.flow_support import Flow, expect, sign_in_admin, wait_text
from tests.conftest import GitRepo, _git

pytestmark = pytest.mark.browser


def test_deploy_form_checks_branch_and_main_file_as_typed(flow: Flow, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repos" / "nested", branch="main")
    repo.commit({"streamlit_app.py": "import streamlit\n",
                 "apps/deep/inner/main.py": "import streamlit\n"})
    _git("checkout", "-q", "-b", "dev", cwd=repo.work)
    repo.branch = "dev"
    repo.commit({"dev_app.py": "import streamlit\n"})

    sign_in_admin(flow)
    page = flow.page
    page.get_by_role("link", name="Deploy an app").first.click()
    expect()(page.get_by_role("button", name="Deploy", exact=True)).to_be_visible()
    expect()(page.get_by_role("textbox", name="Branch", exact=True)).to_have_value("main")
    page.get_by_role("textbox", name="Repository", exact=True).fill(repo.url)
    page.get_by_role("textbox", name="Repository", exact=True).press("Tab")
    wait_text(flow, "✓ branch found")
    # the branch's Python files, subfolders too
    page.get_by_role("combobox", name="Python files on this branch").click()
    expect()(page.get_by_role("option", name="apps/deep/inner/main.py")).to_be_visible()
    page.get_by_role("option", name="apps/deep/inner/main.py").click()
    expect()(page.get_by_role("textbox", name="Main file path", exact=True)).to_have_value(
        "apps/deep/inner/main.py")
    wait_text(flow, "✓ file found")
    docs_shot(page, "deploy-live-checks")

    branch = page.get_by_role("textbox", name="Branch", exact=True)
    branch.fill("nope")
    branch.press("Tab")
    wait_text(flow, "There is no branch 'nope' in this repository. Branches: dev, main.")
    assert apps.list_apps(flow.ctx, flow.admin) == []  # flagged before any Deploy


def test_server_settings_page_for_the_admin(flow: Flow) -> None:
    page = flow.page
    page.goto(flow.base + "/server-settings")
    expect()(page.get_by_role("heading", name="Server settings")).to_be_visible()
    expect()(page.get_by_role("button", name="Send a test email")).to_be_visible()
    expect()(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    docs_shot(page, "server-settings")
