"""Browser tests: Playwright driving Debian's Chromium against the real supervisor.

Skipped when Chromium or Playwright is missing, except under `CI=true`, where that is a
failure. One supervisor (process runtime) with two deployed apps serves a whole module
(`cloud`); each test opens its own browser context. The dashboard flows get their own
supervisor and one page per module (`flow`, tests/browser/flow_support.py). Screenshots go
to `test-artifacts/`, and with STCLOUD_SCREENSHOTS set the docs screenshots to that folder
(tests/browser/docs_shots.py, scripts/screenshots.sh). The helpers the tests import (Chromium,
screenshots, signing in, `Cloud`) are in tests/support/browser.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend import workspaces
from backend.accounts import auth
from backend.apps import service as apps
from backend.context import open_context
from backend.platform.settings_load import load_settings
from tests.browser.flow_support import Flow, start_flow
from tests.conftest import CACHE_ROOT, GitRepo, free_port
from tests.support.browser import CHROMIUM_ARGS, PASSWORD, Cloud, chromium_path
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

# The deployed app: a button that prints a line (with a token shown on the page, so a
# test can look for exactly that line in the Cloud logs).
APP_SOURCE = '''import secrets

import streamlit as st

st.title("Overlay test app")
if st.button("Print a line"):
    token = secrets.token_hex(4)
    print(f"printed {token}", flush=True)
    st.write(f"Printed {token}")
'''


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory, shared_envs_dir: Path,
         module_database_url: str) -> Iterator[Flow]:
    """A supervisor with the site admin `admin`, the repository `flow` and one browser
    page (1280×800), shared by the tests of a module in file order."""
    yield from start_flow(tmp_path_factory.mktemp("flows"), shared_envs_dir,
                          module_database_url, chromium_path(), CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory,
          module_database_url: str) -> Iterator[Cloud]:
    chromium_path()  # skip before starting anything
    root = tmp_path_factory.mktemp("cloud")
    settings = load_settings(env={}, data_dir=root / "data", envs_dir=root / "envs",
                             uv_cache_dir=CACHE_ROOT / "uv", port=free_port(),
                             runtime="process", reconcile_interval=0.2, health_timeout=60.0,
                             hibernation_interval=1.0, git_poll_interval=0.0,
                             database_url=module_database_url)
    ctx = open_context(settings)
    dev = auth.create_user(ctx, "dev", PASSWORD, email="dev@example.com")
    auth.create_user(ctx, "vera", PASSWORD, email="vera@example.com")
    auth.create_user(ctx, "otto", PASSWORD, email="otto@example.com")
    repo = GitRepo(root / "repos" / "overlay")
    repo.commit({"streamlit_app.py": APP_SOURCE,
                 "requirements.txt": f"streamlit=={settings.default_streamlit}\n"}, "app")
    public = apps.deploy_app(ctx, dev, repo_url=repo.url, subdomain="overlay")
    private = apps.deploy_app(ctx, dev, repo_url=repo.url, subdomain="secret")
    workspaces.set_member(ctx, dev, public.workspace_id, "vera", "viewer")
    from backend.apps.sharing import set_visibility
    set_visibility(ctx, dev, private.id, "private")
    sup = SupervisorProcess(settings, root / "supervisor.log").start()
    try:
        for view in (public, private):
            app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"},
                                 sup=sup)
            assert app.state == "running", app.state_reason
        import urllib.request

        def answers(req: urllib.request.Request) -> bool:
            try:
                with urllib.request.urlopen(req, timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        base = f"http://127.0.0.1:{settings.port}"
        for host, path in ((f"localhost:{settings.port}", "/_stcore/health"),
                           (f"overlay.localhost:{settings.port}",
                            "/__stcloud/panel/_stcore/health")):
            req = urllib.request.Request(base + path, headers={"Host": host})
            wait_until(functools.partial(answers, req), 90, f"{host}{path}", sup)
        yield Cloud(settings, ctx, sup, public.id, private.id)
    finally:
        sup.stop()

