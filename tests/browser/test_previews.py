"""Preview apps in Chromium against a real supervisor (process runtime): the app's
developer turns previews on in Settings → Previews; a pull request's preview (made as the
verified GitHub webhook makes it, tests/integration/test_previews.py) builds and runs the
pull request's branch at `flow-pr-7`, private; App details lists it with its link; opening
it shows the branch's code. Docs screenshots `settings-previews` and `app-previews`."""

from __future__ import annotations

import subprocess

from backend.apps import previews
from backend.apps import service as apps
from models import App, session_scope
from tests.browser.flow_support import (
    BUILD_TIMEOUT,
    UI_TIMEOUT,
    Flow,
    expect,
    sign_in_admin,
    wait_text,
)
from tests.support.supervisor_harness import wait_for_state

FEATURE = "import streamlit as st\nst.title('Preview of a change')\n"


def push_branch(flow: Flow, branch: str, source: str) -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=flow.repo.work, check=True,
                              capture_output=True, text=True).stdout.strip()
    git("checkout", "-q", "-b", branch)
    (flow.repo.work / "streamlit_app.py").write_text(source)
    git("commit", "-q", "-am", "a change")
    git("push", "-q", "origin", branch)
    sha = git("rev-parse", "HEAD")
    git("checkout", "-q", "main")
    return sha


def test_turn_previews_on_and_open_a_pull_requests_preview(flow: Flow) -> None:
    view = apps.deploy_app(flow.ctx, flow.admin, repo_url=flow.repo.url, subdomain="flow")
    wait_for_state(flow.ctx, view.id, {"running"}, timeout=BUILD_TIMEOUT,
                   sup=flow.supervisor)
    page = flow.page
    sign_in_admin(flow)
    page.goto(f"{flow.base}/settings?app={view.id}")
    expect()(page.get_by_role("heading", name="App settings")).to_be_visible()
    page.get_by_role("tab", name="Previews").click()
    page.get_by_text("Deploy a preview of each pull request").click()
    page.get_by_role("button", name="Save preview settings").click()
    wait_text(flow, "Saved.")
    assert previews.get_config(flow.ctx, flow.admin, view.id).enabled
    flow.shot("settings-previews", docs="settings-previews")

    sha = push_branch(flow, "feature", FEATURE)
    opened = previews.open_preview(flow.ctx, view.id, number=7, branch="feature",
                                   head_sha=sha, title="Add a title")
    assert opened is not None and opened.created
    wait_for_state(flow.ctx, opened.preview_app_id, {"running"}, timeout=BUILD_TIMEOUT,
                   sup=flow.supervisor)
    with session_scope(flow.ctx.engine) as s:
        preview = s.get(App, opened.preview_app_id)
        assert preview is not None and preview.visibility == "private"

    page.goto(f"{flow.base}/app?app={view.id}")
    expect()(page.get_by_role("heading", name="Previews")).to_be_visible(
        timeout=2 * UI_TIMEOUT)
    link = page.get_by_role("link", name="flow-pr-7")
    expect()(link).to_be_visible()
    assert link.get_attribute("href") == flow.app_url("flow-pr-7")
    link.scroll_into_view_if_needed()
    flow.shot("app-previews", docs="app-previews")
    page.goto(flow.app_url("flow-pr-7"))
    expect()(page.get_by_role("heading", name="Preview of a change")).to_be_visible(
        timeout=4 * UI_TIMEOUT)
