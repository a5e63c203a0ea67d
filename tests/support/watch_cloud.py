"""A supervisor for the browser tests of what an open tab does (tests/browser/test_tab_*.py):
apps deployed from test repositories before it starts, users `dev` (developer) and `vera`
(viewer), and helpers for the pages a tab shows."""

from __future__ import annotations

import dataclasses
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backend import workspaces
from backend.accounts import auth
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings import Settings
from backend.platform.settings_load import load_settings
from models import App, session_scope
from tests.conftest import CACHE_ROOT, GitRepo, free_port
from tests.support.browser import PASSWORD
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

TIMEOUT = 60_000  # ms, for Playwright's waits
HEADING = "Watched app"
# The app: its version on the page, and buttons that make it use too much memory, crash,
# or run for a while (so Streamlit's running indicator shows).
APP_SOURCE = '''import os
import time

import streamlit as st

VERSION = "{version}"
st.title("Watched app")
st.write(f"Version {{VERSION}}")
if st.button("Use too much memory"):
    hog = [b"x" * (20 << 20) for _ in range(60)]
    st.write(len(hog))
    time.sleep(60)  # holds the memory, as a cache would
if st.button("Crash"):
    os._exit(3)
if st.button("Work a while"):
    time.sleep(3)
    st.write("Done working")
'''


def app_files(settings: Settings, version: str, extra_requirement: str = "") -> dict[str, str]:
    return {"streamlit_app.py": APP_SOURCE.format(version=version),
            "requirements.txt": f"streamlit=={settings.default_streamlit}\n"
                                + extra_requirement}


@dataclasses.dataclass
class WatchCloud:
    settings: Settings
    ctx: Context
    supervisor: SupervisorProcess
    repos: dict[str, GitRepo]
    ids: dict[str, int]  # subdomain -> app id

    def url(self, sub: str | None = None, path: str = "/") -> str:
        return self.settings.public_url(sub) + path


def _answers(url: str, host: str) -> bool:
    req = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_watch_cloud(root: Path, envs_dir: Path, database_url: str,
                      deployed: dict[str, str], memory_mb: dict[str, int] | None = None,
                      **overrides: Any) -> Iterator[WatchCloud]:
    """A running supervisor with `deployed` (subdomain -> repository name) all running;
    `memory_mb` sets apps' memory limits before the supervisor sees them."""
    settings = load_settings(env={}, data_dir=root / "data", envs_dir=envs_dir,
                             uv_cache_dir=CACHE_ROOT / "uv", port=free_port(),
                             runtime="process", reconcile_interval=0.2, health_timeout=60.0,
                             hibernation_interval=1.0, git_poll_interval=0.0,
                             database_url=database_url, **overrides)
    ctx = open_context(settings)
    dev = auth.create_user(ctx, "dev", PASSWORD, email="dev@example.com")
    auth.create_user(ctx, "vera", PASSWORD, email="vera@example.com")
    repos: dict[str, GitRepo] = {}
    for name in sorted(set(deployed.values())):
        repos[name] = GitRepo(root / "repos" / name)
        repos[name].commit(app_files(settings, "one"), "app")
    ids: dict[str, int] = {}
    workspace_id = 0
    for sub, name in deployed.items():
        view = apps.deploy_app(ctx, dev, repo_url=repos[name].url, subdomain=sub)
        ids[sub], workspace_id = view.id, view.workspace_id
    workspaces.set_member(ctx, dev, workspace_id, "vera", "viewer")
    with session_scope(ctx.engine) as s:
        for sub, mb in (memory_mb or {}).items():
            row = s.get(App, ids[sub])
            assert row is not None
            row.memory_limit_mb = mb
            s.add(row)
    sup = SupervisorProcess(settings, root / "supervisor.log").start()
    try:
        for app_id in ids.values():
            app = wait_for_state(ctx, app_id, {"running", "build_failed", "crashed"}, sup=sup)
            assert app.state == "running", app.state_reason
        base = f"http://127.0.0.1:{settings.port}"
        wait_until(lambda: _answers(base + "/_stcore/health", f"localhost:{settings.port}"),
                   90, "the dashboard", sup)
        panel_host = f"{next(iter(deployed))}.localhost:{settings.port}"
        wait_until(lambda: _answers(base + "/__stcloud/panel/_stcore/health", panel_host),
                   90, "the Manage app panel", sup)
        yield WatchCloud(settings, ctx, sup, repos, ids)
    finally:
        sup.stop()


def open_app(page: Any, cloud: WatchCloud, sub: str, query: str = "") -> None:
    page.goto(cloud.url(sub) + query)
    page.get_by_role("heading", name=HEADING).wait_for(timeout=TIMEOUT)


def mark_document(page: Any) -> None:
    """Set a marker on the current document: gone once the tab loads another one."""
    page.evaluate("window.__tabTestMarker = 1")


def still_same_document(page: Any) -> bool:
    return bool(page.evaluate("window.__tabTestMarker === 1"))


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    """Do two bounding boxes (Playwright's x, y, width, height) intersect?"""
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])

