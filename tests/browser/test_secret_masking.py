"""In Chromium, against the real supervisor: no secret value of an app, current or
rotated, in the Manage app panel's Cloud logs, the panel's log download, or the dashboard's
Logs page and its download.

The app prints its secrets on every run, and the token it kept from before (a copy in its
repository). It ran once on `OLD`; its secrets were then rotated to `NEW` and a nested
`NEW_DB`, so its log holds all three in clear (checked), and every view must show `****`
where they were."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.accounts import auth
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.apps.log_files import app_log_path
from backend.context import open_context
from backend.platform.settings_load import load_settings
from tests.conftest import CACHE_ROOT, GitRepo, free_port
from tests.support.browser import PASSWORD, Cloud, chromium_path, screenshot, sign_in
from tests.support.instances import instance_id
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

TIMEOUT = 60_000  # ms, for Playwright's waits
OLD = "old-browser-token-5e8a1c"
NEW = "new-browser-token-9b2d4f"
NEW_DB = "new-browser-dbpw-7c3e6a"
VALUES = (OLD, NEW, NEW_DB)
DOWNLOAD = re.compile(r"Download logs?$")  # the ︙ menu's item
APP_SOURCE = '''import pathlib

import streamlit as st

st.title("Secret printer")
print("token is", st.secrets["token"], flush=True)
if "db" in st.secrets:
    print("db password is", st.secrets["db"]["password"], flush=True)
    print("all of them:", st.secrets.to_dict(), flush=True)
    kept = pathlib.Path(__file__).with_name("kept.txt").read_text().strip()
    print("the token I kept from before:", kept, flush=True)
'''


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory, module_database_url: str
            ) -> Iterator[Cloud]:
    """A supervisor with `dev`'s app `printer`, run once on OLD, then rotated to NEW."""
    chromium_path()  # skip before starting anything
    root = tmp_path_factory.mktemp("masking")
    settings = load_settings(env={}, data_dir=root / "data", envs_dir=root / "envs",
                             uv_cache_dir=CACHE_ROOT / "uv", port=free_port(),
                             runtime="process", reconcile_interval=0.2, health_timeout=60.0,
                             git_poll_interval=0.0, database_url=module_database_url)
    ctx = open_context(settings)
    dev = auth.create_user(ctx, "dev", PASSWORD, email="dev@example.com")
    repo = GitRepo(root / "repos" / "printer")
    repo.commit({"streamlit_app.py": APP_SOURCE, "kept.txt": OLD + "\n",
                 "requirements.txt": f"streamlit=={settings.default_streamlit}\n"}, "app")
    view = apps.deploy_app(ctx, dev, repo_url=repo.url, subdomain="printer")
    app_secrets.set_secrets(ctx, dev, view.id, f'token = "{OLD}"\n', restart=False)
    sup = SupervisorProcess(settings, root / "supervisor.log").start()
    log = app_log_path(settings, view.id)

    def run_once() -> None:
        host = f"printer.localhost:{settings.port}"
        asyncio.run(open_streamlit_session(f"ws://127.0.0.1:{settings.port}", host, 30))

    try:
        app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, sup=sup)
        assert app.state == "running", app.state_reason
        run_once()
        wait_until(lambda: log.exists() and OLD in log.read_text(), 60, "OLD printed", sup)
        first = instance_id(ctx, view.id)
        app_secrets.set_secrets(ctx, dev, view.id,
                                f'token = "{NEW}"\n[db]\npassword = "{NEW_DB}"\n')
        wait_until(lambda: instance_id(ctx, view.id) not in (None, first)
                   and apps.get_app(ctx, dev, view.id).state == "running", 180,
                   "the restart on the rotated secrets", sup)
        run_once()
        wait_until(lambda: NEW_DB in log.read_text(), 60, "the new values printed", sup)
        assert all(v in log.read_text() for v in VALUES)  # in clear in the file itself
        yield Cloud(settings, ctx, sup, view.id, 0)
    finally:
        sup.stop()


def assert_masked(where: str, text: str) -> None:
    found = [v for v in VALUES if v in text]
    assert not found, f"{where} shows {found}: {text[-3000:]}"
    assert "token is ****" in text and "db password is ****" in text, (where, text[-3000:])
    assert "the token I kept from before: ****" in text, (where, text[-3000:])


def downloaded(download: Any) -> str:
    path = download.path()
    assert path is not None
    return Path(path).read_text()


def test_panel_logs_and_download_mask_current_and_rotated_secrets(rotated: Cloud,
                                                                  browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860},
                                  accept_downloads=True)
    page = context.new_page()
    try:
        sign_in(page, rotated, "dev")
        page.goto(rotated.url("printer"))
        page.get_by_role("heading", name="Secret printer").wait_for(timeout=TIMEOUT)
        page.get_by_role("button", name="Manage app").click()
        frame = page.frame_locator("iframe[title^='Manage app']")
        frame.get_by_text("Cloud logs").wait_for(timeout=TIMEOUT)
        frame.get_by_text("the token I kept from before:").first.wait_for(timeout=TIMEOUT)
        screenshot(page, "panel-logs-masked")
        assert_masked("the panel's Cloud logs", frame.locator("body").inner_text())

        frame.locator(".st-key-panel_menu button:visible").click()
        item = frame.get_by_role("button", name=DOWNLOAD)
        item.wait_for(timeout=TIMEOUT)
        with page.expect_download(timeout=TIMEOUT) as got:
            item.click()
        assert_masked("the panel's download", downloaded(got.value))
    finally:
        context.close()


def test_dashboard_logs_page_and_download_mask_them(rotated: Cloud, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860},
                                  accept_downloads=True)
    page = context.new_page()
    try:
        sign_in(page, rotated, "dev")
        page.goto(rotated.url(path=f"/logs?app={rotated.public_id}"))
        page.get_by_text("the token I kept from before:").first.wait_for(timeout=TIMEOUT)
        assert_masked("the Logs page", page.locator("body").inner_text())
        button = page.locator(".st-key-download_app button")
        button.wait_for(timeout=TIMEOUT)
        with page.expect_download(timeout=TIMEOUT) as got:
            button.click()
        assert_masked("the Logs page's download", downloaded(got.value))
    finally:
        context.close()
