"""A real supervisor with a planted secret, for the security tests: `python -m supervisor`
with the process runtime, whose public URL is https (TLS would be terminated in front of it;
it serves plain HTTP on 127.0.0.1), with one app deployed from a local git repository
through the API, whose secrets hold `PLANTED`. The app prints its secret, as an app may."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from backend.accounts import api_tokens, auth
from backend.apps.log_files import app_log_path
from backend.context import Context, open_context
from backend.platform.settings_load import load_settings
from models import id_of
from tests.conftest import CACHE_ROOT, EXAMPLE_APP, GitRepo, free_port
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

PLANTED = "PLANTED-5f3a9c1e7b2d4f60"
SECRETS = f'planted_token = "{PLANTED}"\n[db]\npassword = "{PLANTED}-db"\n'
APP_SOURCE = ('import streamlit as st\n'
              'print("app says token is", st.secrets["planted_token"], flush=True)\n'
              'st.write("hello from the planted app")\n')


@dataclass
class Platform:
    ctx: Context
    sup: SupervisorProcess
    token: str
    app_id: int
    admin_id: int

    @property
    def port(self) -> int:
        return self.ctx.settings.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def dash_host(self) -> str:
        return f"localhost:{self.port}"

    def app_host(self) -> str:
        return f"planted.localhost:{self.port}"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Host": self.dash_host(), "Authorization": f"Bearer {self.token}",
                   **kwargs.pop("headers", {})}
        return requests.request(method, self.url("/api/v1" + path), headers=headers,
                                timeout=30, allow_redirects=False, **kwargs)


def start_platform(root: Path, shared_envs_dir: Path) -> Iterator[Platform]:
    """Yields the platform once the app runs, has a session and printed its secret; stops
    the supervisor afterwards (a generator for a fixture)."""
    settings = load_settings(env={}, data_dir=root / "data", envs_dir=shared_envs_dir,
                             uv_cache_dir=CACHE_ROOT / "uv", port=free_port(),
                             runtime="process", reconcile_interval=0.2, health_timeout=60.0,
                             scheme="https", database_url="")
    ctx = open_context(settings)
    auth.ensure_first_admin(ctx)
    admin = auth.get_user(ctx, settings.admin_username)
    token = api_tokens.create_token(ctx, admin, "security", "read,deploy,admin")[1]
    repo = GitRepo(root / "repos" / "planted")
    repo.commit({"streamlit_app.py": APP_SOURCE,
                 "requirements.txt": (EXAMPLE_APP / "requirements.txt").read_text()})
    sup = SupervisorProcess(settings, root / "supervisor.log").start()
    try:
        plat = Platform(ctx, sup, token, 0, id_of(admin))
        r = plat.api("POST", "/apps", json={"repo_url": repo.url, "subdomain": "planted",
                                            "secrets": SECRETS})
        assert r.status_code == 201, r.text
        plat.app_id = r.json()["id"]
        app = wait_for_state(ctx, plat.app_id, {"running", "build_failed", "crashed"},
                             sup=sup)
        assert app.state == "running", app.state_reason
        seen = asyncio.run(open_streamlit_session(
            f"ws://127.0.0.1:{plat.port}/_stcore/stream", plat.app_host(),
            origin=f"https://{plat.app_host()}"))
        assert seen["new_session"], seen
        log = app_log_path(settings, plat.app_id)
        wait_until(lambda: log.exists() and "app says token is" in log.read_text(), 60,
                   "the app to print its secret", sup)
        yield plat
    finally:
        sup.stop()

