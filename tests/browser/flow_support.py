"""The dashboard flows' setup and helpers: one supervisor on the process runtime with a site
admin and a local git repository to deploy (`start_flow`, the `flow` fixture in conftest.py
runs it once per module), one Chromium page at 1280×800, and the waits and clicks the flows
share. Waits poll a condition (the database, a page text), never a fixed time."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from backend.accounts import auth
from backend.context import Context, open_context
from backend.platform.settings import PROJECT_ROOT, Settings
from models import App
from tests.browser.docs_shots import docs_shot
from tests.conftest import CACHE_ROOT, GitRepo, free_port
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_until

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
PASSWORD = "flow-admin-password"
APP_SOURCE = '''import os

import streamlit as st

st.title("Flow app")
try:
    value = st.secrets["greeting"]
except Exception:  # no secrets yet
    value = "(none)"
st.write(f"secret: {value}")
st.write(f"env: {os.environ.get('greeting', '(none)')}")
'''
UI_TIMEOUT = 30_000  # ms, for the dashboard to show something
BUILD_TIMEOUT = 240  # s, a first build of the app's environment


@dataclass
class Flow:
    settings: Settings
    ctx: Context
    admin: Any
    supervisor: SupervisorProcess
    page: Any
    repo: GitRepo
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.settings.public_url()

    def app_url(self, subdomain: str) -> str:
        return self.settings.public_url(subdomain)

    def shot(self, name: str, docs: str | None = None) -> None:
        """A full-page screenshot in test-artifacts/, and the docs screenshot `docs` when
        they are on (tests/browser/docs_shots.py)."""
        if docs is not None:
            docs_shot(self.page, docs)
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)

    def app_id(self) -> int:
        if "app_id" not in self.state:
            pytest.skip("the deploy flow did not run")
        return int(self.state["app_id"])

    def row(self) -> App:
        app = load_app(self.ctx, self.app_id())
        assert app is not None
        return app


def start_flow(root: Path, envs_dir: Path, database_url: str, chromium: str,
               chromium_args: list[str]) -> Iterator[Flow]:
    """The supervisor, the admin `admin` and the repository `flow` (branch main), and a
    browser page on the signed-out dashboard; stops them all when the generator closes."""
    from playwright.sync_api import sync_playwright
    settings = Settings(data_dir=root / "data", envs_dir=envs_dir,
                        uv_cache_dir=CACHE_ROOT / "uv", port=free_port(), runtime="process",
                        reconcile_interval=0.2, health_timeout=60.0, git_poll_interval=0,
                        hibernation_interval=1.0, database_url=database_url)
    ctx = open_context(settings)
    admin = auth.create_user(ctx, "admin", PASSWORD, name="Ada Admin", is_admin=True,
                             email="admin@example.com")
    repo = GitRepo(root / "repos" / "flow", branch="main")
    repo.commit({"streamlit_app.py": APP_SOURCE}, "initial")
    supervisor = SupervisorProcess(settings, root / "supervisor.log").start()
    wait_until(lambda: http_status(settings, "localhost")[0] == 200, 60,
               "the dashboard to answer", supervisor)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=chromium_args)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(UI_TIMEOUT)
        page = context.new_page()
        try:
            yield Flow(settings, ctx, admin, supervisor, page, repo)
        finally:
            context.close()
            browser.close()
            supervisor.stop()


def http_status(settings: Settings, host: str, path: str = "/") -> tuple[int, str]:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", settings.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": f"{host}:{settings.port}"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()
    except OSError:
        return 0, ""


def app_serves(flow: Flow, subdomain: str) -> bool:
    code, body = http_status(flow.settings, f"{subdomain}.localhost", "/_stcore/health")
    return code == 200 and "ok" in body


def expect() -> Any:
    """Playwright's `expect`, waiting up to UI_TIMEOUT (its own default is 5 s)."""
    from playwright.sync_api import expect as pw_expect
    pw_expect.set_options(timeout=UI_TIMEOUT)
    return pw_expect


def wait_text(flow: Flow, text: str, timeout: int = UI_TIMEOUT) -> None:
    expect()(flow.page.get_by_text(text).first).to_be_visible(timeout=timeout)


def open_my_apps(flow: Flow) -> None:
    flow.page.goto(flow.base + "/")
    expect()(flow.page.get_by_role("heading", name="My apps").first).to_be_visible(
        timeout=UI_TIMEOUT)


def row_order(flow: Flow) -> list[int]:
    classes = flow.page.locator('[class*="st-key-app_"]').evaluate_all(
        "els => els.map(e => [...e.classList].find(c => c.startsWith('st-key-app_')))")
    return [int(c.removeprefix("st-key-app_")) for c in classes]


def button(flow: Flow, key: str, text: str | None = None) -> Any:
    """The visible button of widget `key` (with `text`) in the current run: a rerun keeps
    the previous run's element, marked data-stale, until the new one replaces it, and
    Streamlit renders a hidden copy of each button label."""
    locator = flow.page.locator(f'.st-key-{key}:not([data-stale="true"]) button:visible')
    if text is not None:
        locator = locator.filter(has_text=text)
    expect()(locator.first).to_be_visible()
    return locator.last


def click_key(flow: Flow, key: str) -> None:
    button(flow, key).click()


def wait_order(flow: Flow, expected: list[int]) -> None:
    wait_until(lambda: row_order(flow) == expected, 10, f"the rows in order {expected}")


def open_menu(flow: Flow, app_id: int) -> None:
    flow.page.keyboard.press("Escape")  # close a menu left open
    expect()(flow.page.locator('[data-testid="stPopoverBody"]')).to_have_count(0)
    click_key(flow, f"menu_{app_id}")
    expect()(button(flow, f"favmenu_{app_id}")).to_be_visible()


def sign_in_admin(flow: Flow) -> None:
    """Sign in as the site admin on the dashboard's form; My apps shows, and the browser
    holds the sign-in cookie (set by a component after the first run: a page opened
    before it would show the sign-in form again)."""
    page = flow.page
    page.goto(flow.base + "/")
    page.get_by_role("textbox", name="Username", exact=True).fill("admin")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # .first: while Streamlit reruns, the previous run's heading can still be in the page
    expect()(page.get_by_role("heading", name="My apps").first).to_be_visible(
        timeout=UI_TIMEOUT)
    wait_until(lambda: any(c["name"] == "stcloud_dashboard"
                           for c in page.context.cookies()), 30, "the sign-in cookie")
