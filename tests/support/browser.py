"""What the browser tests share: Debian's Chromium for Playwright (or a skip), its arguments,
screenshots to test-artifacts/, the dashboard's sign-in form, the `cloud` fixture's world
(tests/browser/conftest.py) and a poll that makes hibernation put an app to sleep."""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from backend.context import Context
from backend.platform.settings import PROJECT_ROOT, Settings
from models import App, session_scope
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_until

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "password123"  # every user the `cloud` and watch supervisors create


def chromium_path() -> str:
    """Chromium's path, or skip (fail under CI=true) when it or Playwright is missing."""
    strict = os.environ.get("CI") == "true"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if strict:
            pytest.fail("CI=true but Playwright is not installed")
        pytest.skip("Playwright is not installed")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    if path is None:
        if strict:
            pytest.fail("CI=true but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return path


def screenshot(page: Any, name: str) -> None:
    """A full-page screenshot of a Playwright page in test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


class Site(Protocol):
    """A running supervisor as the browser tests address it."""

    def url(self, sub: str | None = None, path: str = "/") -> str: ...


@dataclasses.dataclass
class Cloud:
    """The `cloud` fixture: a supervisor with the apps `overlay` (public) and `secret`
    (private) of `dev`, `vera` a viewer of their workspace, `otto` a stranger."""

    settings: Settings
    ctx: Context
    supervisor: SupervisorProcess
    public_id: int
    private_id: int

    def url(self, sub: str | None = None, path: str = "/") -> str:
        return self.settings.public_url(sub) + path


def sign_in(page: Any, site: Site, username: str, *, goto: bool = True) -> None:
    """Sign in on the dashboard's form (opened first unless `goto` is False) with PASSWORD
    and wait until its cookie is stored."""
    if goto:
        page.goto(site.url())
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    wait_until(lambda: any(c["name"] == "stcloud_dashboard" for c in page.context.cookies()),
               30, "the dashboard's sign-in cookie")


def asleep_after_idle(ctx: Context, app_id: int) -> Callable[[], bool]:
    """A poll for wait_until: is the app sleeping yet? Until it is, each call dates its last
    view, deploy and creation 8 days back, so the supervisor's hibernation pass finds it
    idle. Set again on each poll, because a view flushed meanwhile moves last_viewed_at
    forward."""
    def asleep() -> bool:
        app = load_app(ctx, app_id)
        if app is not None and app.state == "sleeping":
            return True
        past = datetime.now(UTC) - timedelta(days=8)
        with session_scope(ctx.engine) as s:
            row = s.get(App, app_id)
            assert row is not None, f"app {app_id} is gone"
            row.last_viewed_at = row.last_deployed_at = row.created_at = past
        return False
    return asleep
