"""In Chromium, against the real supervisor: a tab left open on an app follows what happens to
the app, without anyone reloading it. Over its memory limit (a real allocation past a
256 MiB cgroup limit), crashed, asleep or rebooted, the tab shows our page for that state
in place of Streamlit's "Connection error" dialog; a push with new dependencies (a new
instance) reloads it onto the new code, and a code-only push reruns in place without a
reload. The watch is the overlay script's long-poll of `/__stcloud/state`
(supervisor/proxy/watch.py); a private app's state is answered only to those who may see it.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.accounts.auth import get_user
from backend.apps import service as apps
from backend.apps.sharing import set_visibility
from tests.support.browser import asleep_after_idle, chromium_path, screenshot, sign_in
from tests.support.lifecycle_support import send_github_push
from tests.support.supervisor_harness import load_app, wait_for_state, wait_until
from tests.support.watch_cloud import (
    TIMEOUT,
    WatchCloud,
    app_files,
    mark_document,
    open_app,
    start_watch_cloud,
    still_same_document,
)

APPS = {"pushed": "pushed", "hog": "states", "crashy": "states", "sleepy": "states",
        "rebooted": "states"}


@pytest.fixture(scope="module")
def wcloud(tmp_path_factory: pytest.TempPathFactory, shared_envs_dir: Path,
           module_database_url: str) -> Iterator[WatchCloud]:
    chromium_path()  # skip before starting anything
    # No restarts after a crash (the crash page at once); a short drain after a redeploy.
    yield from start_watch_cloud(tmp_path_factory.mktemp("watch"), shared_envs_dir,
                                 module_database_url, APPS, memory_mb={"hog": 256},
                                 crash_backoff="", redeploy_drain=0.5,
                                 process_memory_limit="cgroup")


def new_page(browser: Any) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    return context, context.new_page()


def test_over_limit_app_shows_the_argh_page_in_the_open_tab(wcloud: WatchCloud,
                                                           browser: Any) -> None:
    from supervisor.runtimes import cgroups
    if not cgroups.available():
        pytest.skip("no writable cgroup v1 memory controller (not root?)")
    context, page = new_page(browser)
    try:
        open_app(page, wcloud, "hog")
        mark_document(page)
        page.get_by_role("button", name="Use too much memory").click()
        page.get_by_role("heading", name=re.compile("Argh. This app has gone over its "
                                                    "resource limits")).wait_for(timeout=TIMEOUT)
        assert load_app(wcloud.ctx, wcloud.ids["hog"]).state == "over_limit"
        assert page.get_by_text("Connection error").count() == 0
        screenshot(page, "tab-over-limit")
    finally:
        context.close()


def test_crashed_app_shows_the_crash_page_in_the_open_tab(wcloud: WatchCloud,
                                                         browser: Any) -> None:
    context, page = new_page(browser)
    try:
        open_app(page, wcloud, "crashy")
        page.get_by_role("button", name="Crash").click()
        page.get_by_role("heading", name="This app has crashed").wait_for(timeout=TIMEOUT)
        assert load_app(wcloud.ctx, wcloud.ids["crashy"]).state == "crashed"
        screenshot(page, "tab-crashed")
    finally:
        context.close()


def test_app_put_to_sleep_shows_the_sleeping_page_in_the_open_tab(wcloud: WatchCloud,
                                                                 browser: Any) -> None:
    app_id = wcloud.ids["sleepy"]
    context, page = new_page(browser)
    try:
        open_app(page, wcloud, "sleepy")

        wait_until(asleep_after_idle(wcloud.ctx, app_id), 60, "the app to go to sleep",
                   wcloud.supervisor)
        page.get_by_role("heading", name=re.compile("gone to sleep due to inactivity")).wait_for(
            timeout=TIMEOUT)
        page.get_by_role("button", name="Yes, get this app back up!").click()
        page.get_by_role("heading", name="Watched app").wait_for(timeout=TIMEOUT)
    finally:
        context.close()


def test_rebooted_app_shows_the_oven_then_the_app_in_the_open_tab(wcloud: WatchCloud,
                                                                 browser: Any) -> None:
    context, page = new_page(browser)
    dev = get_user(wcloud.ctx, "dev")
    try:
        open_app(page, wcloud, "rebooted")
        mark_document(page)
        apps.reboot_app(wcloud.ctx, dev, wcloud.ids["rebooted"])  # e.g. from the dashboard
        page.get_by_role("heading", name="Your app is in the oven").wait_for(timeout=TIMEOUT)
        page.get_by_role("heading", name="Watched app").wait_for(timeout=TIMEOUT)
    finally:
        context.close()


def test_code_push_reruns_in_place_and_dependency_push_reloads(wcloud: WatchCloud,
                                                              browser: Any) -> None:
    app_id = wcloud.ids["pushed"]
    repo = wcloud.repos["pushed"]
    port = wcloud.settings.port
    secret = load_app(wcloud.ctx, app_id).webhook_secret
    context, page = new_page(browser)
    try:
        open_app(page, wcloud, "pushed")
        page.get_by_text("Version one").wait_for(timeout=TIMEOUT)
        mark_document(page)
        # Code only: the same instance reruns the open session; the tab is not reloaded.
        sha = repo.commit(app_files(wcloud.settings, "two"), "code only")
        assert send_github_push(port, repo.url, "main", secret, sha)[0] == 202
        page.get_by_text("Version two").wait_for(timeout=TIMEOUT)
        assert still_same_document(page), "a code-only push reloaded the tab"
        env_hash = load_app(wcloud.ctx, app_id).env_hash
        # New dependencies: a new instance beside the old one, then the tab reloads onto it.
        sha = repo.commit(app_files(wcloud.settings, "three", "# a new dependency set\n"),
                          "dependencies")
        assert send_github_push(port, repo.url, "main", secret, sha)[0] == 202
        page.wait_for_function("window.__tabTestMarker !== 1", timeout=2 * TIMEOUT)
        page.get_by_text("Version three").wait_for(timeout=TIMEOUT)
        assert load_app(wcloud.ctx, app_id).env_hash != env_hash
    finally:
        context.close()


def _state(url: str, host: str, cookie: str = "") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, headers={"Host": host, "Cookie": cookie})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_private_app_state_is_told_only_to_those_with_access(wcloud: WatchCloud,
                                                             browser: Any) -> None:
    dev = get_user(wcloud.ctx, "dev")
    app_id = wcloud.ids["rebooted"]
    wait_for_state(wcloud.ctx, app_id, {"running"}, sup=wcloud.supervisor)
    host = f"rebooted.localhost:{wcloud.settings.port}"
    url = f"http://127.0.0.1:{wcloud.settings.port}/__stcloud/state"
    set_visibility(wcloud.ctx, dev, app_id, "private")
    try:
        wait_until(lambda: _state(url, host)[0] == 403, 30, "the private app's state refused")
        status, body = _state(url, host)
        assert body == {"error": "forbidden"}
        # Nor does the waiting pages' status say anything to them.
        assert _state(url.replace("/state", "/status"), host) == (403, {"error": "forbidden"})
        # A member, signed in, is told.
        context, page = new_page(browser)
        try:
            sign_in(page, wcloud, "vera")
            open_app(page, wcloud, "rebooted")
            answer = page.evaluate("fetch('/__stcloud/state').then(r => r.json())")
            assert answer["state"] == "running" and answer["token"].startswith("running.")
            status = page.evaluate("fetch('/__stcloud/status').then(r => r.json())")
            assert status["state"] == "running"
        finally:
            context.close()
    finally:
        set_visibility(wcloud.ctx, dev, app_id, "public")

