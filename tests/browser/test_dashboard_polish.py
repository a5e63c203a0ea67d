"""In Chromium, against the real supervisor (process runtime): the dashboard details people
notice first. Status keeps the signed-in session on a reload; the workspace choice survives
a reload and a new tab; the sign-in page names no server file and, reached from a private
app, says so and goes back to the app after signing in; private apps carry a lock in My
apps; a failed build's row stays one line tall; Analytics' daily chart ends on today.

The apps' builds fail on purpose (an unparseable requirements.txt), which is quick and
gives a real failure reason full of the server's paths; nothing here needs an app to run.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend.accounts import auth
from backend.analytics.store import record_views
from backend.apps import service as apps
from backend.apps.sharing import set_visibility
from backend.context import Context, open_context
from backend.platform.settings import Settings
from tests.browser.docs_shots import docs_shot
from tests.browser.flow_support import http_status
from tests.conftest import CACHE_ROOT, GitRepo, free_port
from tests.support.browser import CHROMIUM_ARGS, chromium_path, screenshot
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

PASSWORD = "polish-password"
TIMEOUT = 30_000
TIMEZONE = "Asia/Tokyo"
LINE_HEIGHT = 32  # px: one line of a caption
ROW_HEIGHT = 160  # px: the name and the three lines the test's long repository path takes
BROKEN_REQUIREMENTS = "streamlit\nthis is not a requirement !!\n"


@dataclasses.dataclass
class Polish:
    settings: Settings
    ctx: Context
    browser: Any
    broken: int  # public, build failed, workspace alpha
    hidden: int  # private, build failed, workspace alpha
    other: int  # workspace beta

    def url(self, sub: str | None = None, path: str = "/") -> str:
        return self.settings.public_url(sub) + path


@pytest.fixture(scope="module")
def polish(tmp_path_factory: pytest.TempPathFactory, shared_envs_dir: Path,
           module_database_url: str) -> Iterator[Polish]:
    path = chromium_path()
    root = tmp_path_factory.mktemp("polish")
    settings = Settings(data_dir=root / "data", envs_dir=shared_envs_dir,
                        uv_cache_dir=CACHE_ROOT / "uv", port=free_port(), runtime="process",
                        reconcile_interval=0.2, health_timeout=60.0, git_poll_interval=0,
                        hibernation_interval=1.0, database_url=module_database_url)
    ctx = open_context(settings)
    assert auth.ensure_first_admin(ctx) is not None  # its password file stays on disk
    dev = auth.create_user(ctx, "dev", PASSWORD, email="dev@example.com")
    repo = GitRepo(root / "repos" / "app")
    repo.commit({"streamlit_app.py": "import streamlit as st\nst.title('x')\n",
                 "requirements.txt": BROKEN_REQUIREMENTS}, "app")
    repos = {}
    for owner in ("alpha", "beta"):  # a repository's owner (its folder) is its workspace
        bare = root / "owners" / owner / "app.git"
        shutil.copytree(repo.bare, bare)
        repos[owner] = str(bare)
    broken = apps.deploy_app(ctx, dev, repo_url=repos["alpha"], subdomain="broken")
    hidden = apps.deploy_app(ctx, dev, repo_url=repos["alpha"], subdomain="hidden")
    other = apps.deploy_app(ctx, dev, repo_url=repos["beta"], subdomain="other")
    assert broken.workspace != other.workspace
    set_visibility(ctx, dev, hidden.id, "private")
    sup = SupervisorProcess(settings, root / "supervisor.log").start()
    from playwright.sync_api import sync_playwright
    try:
        for view in (broken, hidden, other):
            app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"},
                                 sup=sup)
            assert app.state == "build_failed", app.state
        wait_until(lambda: http_status(settings, "localhost")[0] == 200, 60,
                   "the dashboard to answer", sup)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
            try:
                yield Polish(settings, ctx, b, broken.id, hidden.id, other.id)
            finally:
                b.close()
    finally:
        sup.stop()


def new_page(polish: Polish, timezone: str = "UTC") -> Any:
    context = polish.browser.new_context(viewport={"width": 1280, "height": 800},
                                         timezone_id=timezone)
    context.set_default_timeout(TIMEOUT)
    return context.new_page()


def expect() -> Any:
    from playwright.sync_api import expect as pw_expect
    pw_expect.set_options(timeout=TIMEOUT)
    return pw_expect


def fill_sign_in(page: Any) -> None:
    page.get_by_role("textbox", name="Username", exact=True).fill("dev")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_in(page: Any, polish: Polish) -> None:
    page.goto(polish.url())
    fill_sign_in(page)
    expect()(page.get_by_role("heading", name="My apps").first).to_be_visible()
    wait_until(lambda: any(c["name"] == "stcloud_dashboard" for c in page.context.cookies()),
               30, "the dashboard's sign-in cookie")


def test_status_keeps_the_session_on_reload(polish: Polish) -> None:
    page = new_page(polish)
    sign_in(page, polish)
    page.goto(polish.url(path="/status"))
    sidebar = page.get_by_text("Signed in as")
    expect()(page.get_by_role("heading", name="Status").first).to_be_visible()
    expect()(sidebar.first).to_be_visible()
    page.reload()
    expect()(page.get_by_role("heading", name="Status").first).to_be_visible()
    expect()(sidebar.first).to_be_visible()
    expect()(page.get_by_role("link", name="Sign in")).to_have_count(0)
    page.context.close()


def test_the_sign_in_page_names_no_file_and_says_the_app_is_private(polish: Polish) -> None:
    page = new_page(polish)
    page.goto(polish.url("hidden"))  # a private app, signed out: sent to sign in
    notice = page.get_by_text("hidden is a private app")
    expect()(notice).to_be_visible()
    assert "signin_for=hidden" in page.url
    body = page.locator("body").inner_text()
    assert "initial_admin_password" not in body and str(polish.settings.data_dir) not in body
    expect()(page.get_by_role("textbox", name="Password")).to_be_visible()
    docs_shot(page, "sign-in-private-app")
    screenshot(page, "polish-sign-in-private-app")
    fill_sign_in(page)
    # back on the app's host after signing in (its build failed: our page for that)
    page.wait_for_url(polish.url("hidden") + "**", timeout=TIMEOUT)
    page.context.close()


def test_private_marker_and_one_line_failed_row(polish: Polish) -> None:
    page = new_page(polish)
    sign_in(page, polish)
    switch_workspace(page, "alpha")
    hidden = page.locator(f".st-key-app_{polish.hidden}")
    broken = page.locator(f".st-key-app_{polish.broken}")
    for row in (hidden, broken):  # once the rerun after the switch has replaced the list
        expect()(row).to_have_count(1)
    expect()(hidden).to_contain_text("hidden 🔒")
    assert "🔒" not in broken.inner_text()
    expect()(broken.get_by_text("Build failed").first).to_be_visible()
    reason = page.locator(f'.st-key-reason_{polish.broken}:not([data-stale="true"])')
    line = reason.bounding_box()
    assert line is not None and line["height"] <= LINE_HEIGHT, line  # one line
    row = broken.bounding_box()
    assert row is not None and row["height"] <= ROW_HEIGHT, row  # the name's lines
    text = broken.inner_text()
    assert str(polish.settings.envs_dir) not in text and str(polish.settings.data_dir) \
        not in text, text
    screenshot(page, "polish-my-apps")
    page.context.close()


WORKSPACE = '.st-key-current_workspace:not([data-stale="true"])'


def workspace_box(page: Any) -> Any:
    box = page.locator(WORKSPACE).get_by_role("combobox")
    expect()(box).to_be_visible()
    return box


def switch_workspace(page: Any, name: str) -> None:
    box = workspace_box(page)
    if box.input_value() == name:
        return
    box.click()
    page.get_by_role("option", name=name, exact=True).click()
    expect()(workspace_box(page)).to_have_value(name)
    expect()(page.get_by_role("heading", name="My apps").first).to_be_visible()


def test_the_workspace_survives_a_reload_and_a_new_tab(polish: Polish) -> None:
    page = new_page(polish)
    sign_in(page, polish)
    first = "beta" if workspace_box(page).input_value() == "alpha" else "alpha"
    switch_workspace(page, first)
    expect()(page.locator(".st-key-app_" + str(
        polish.other if first == "beta" else polish.broken))).to_be_visible()
    page.reload()
    expect()(workspace_box(page)).to_have_value(first)
    tab = page.context.new_page()
    tab.goto(polish.url(path="/analytics"))
    expect()(tab.get_by_role("heading", name="Analytics").first).to_be_visible()
    expect()(workspace_box(tab)).to_have_value(first)
    page.context.close()


def test_the_daily_chart_ends_today(polish: Polish) -> None:
    now = datetime.now(UTC)
    record_views(polish.ctx, [(polish.broken, "u:1", now)])
    page = new_page(polish, TIMEZONE)  # ahead of UTC: local midnights fall inside UTC days
    sign_in(page, polish)
    page.goto(polish.url(path=f"/analytics?app={polish.broken}"))
    expect()(page.get_by_role("heading", name="Daily views, last 30 days")).to_be_visible()
    texts = page.locator('[data-testid="stVegaLiteChart"] svg text')
    expect()(texts.first).to_be_attached()
    days = [t for t in texts.all_text_contents() if re.fullmatch(r"[A-Z][a-z]{2} \d{2}", t)]
    assert days and days[-1] == now.strftime("%b %d"), days
    page.context.close()


def test_signing_out_says_so(polish: Polish) -> None:
    page = new_page(polish)
    sign_in(page, polish)
    page.get_by_role("button", name="Sign out").click()
    expect()(page.get_by_role("textbox", name="Password")).to_be_visible()
    expect()(page.get_by_text("You are signed out.")).to_be_visible()
    page.context.close()


def test_no_focus_ring_on_the_chosen_workspace_and_even_menu_rows(polish: Polish) -> None:
    """The workspace select keeps no red focus ring once a workspace is chosen, and the
    entries of an app row's ︙ menu share one height and one gap (the dashboard's CSS)."""
    page = new_page(polish)
    sign_in(page, polish)
    first = "beta" if workspace_box(page).input_value() == "alpha" else "alpha"
    switch_workspace(page, first)
    control = page.locator(WORKSPACE).locator('[role="group"]:visible').first
    style = control.evaluate("e => [getComputedStyle(e).borderTopColor, "
                             "getComputedStyle(e).boxShadow]")
    assert "255, 75, 75" not in style[0] and style[1] == "none", style  # primary red
    switch_workspace(page, "alpha")
    page.locator(f".st-key-menu_{polish.broken} button").first.click()
    body = page.locator('[data-testid="stPopoverBody"]')
    expect()(body).to_be_visible()
    entries = body.locator('[data-testid="stPageLink"] a, [data-testid="stLinkButton"] a, '
                           '[data-testid="stBaseButton-tertiary"]')
    # The menu renders its entries one by one: Delete is among the last.
    expect()(body.get_by_role("button", name="Delete")).to_be_visible()
    boxes = [b for b in (e.bounding_box() for e in entries.all()) if b]
    assert len(boxes) >= 3, boxes
    heights = {round(b["height"]) for b in boxes}
    assert max(heights) - min(heights) <= 1, heights
    tops = sorted(b["y"] for b in boxes)
    gaps = sorted(round(b - a - boxes[0]["height"]) for a, b in zip(tops, tops[1:],
                                                                    strict=False))
    rows = gaps[:-1]  # the largest: the app's URL (a code block) under Open app
    assert rows and max(rows) - min(rows) <= 1 and min(rows) >= 0, gaps
    page.context.close()
