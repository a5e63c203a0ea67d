"""Failures are explained wherever a developer reads them, with the log as the dashboard's
Logs page shows it: the app host's build-failed and crashed pages, and a push whose new
version did not start (supervisor/sources/updates.py) say which phase failed, the package or file
responsible and what to do, quote only the lines that show it, link the full log, and never
show the app's secret values or a host path (the data directory)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from backend.apps import secrets
from backend.apps.log_files import app_log_path, build_log_path
from models import App
from supervisor.runtimes.base import EnvRef, EnvSpec, Status
from supervisor.sources.updates import UpdateFailed, Updater
from tests.support.overlay_env import Env, run

SECRET = "sk-live-7f3a9c21e5"
APP_LOG = ("  You can now view your Streamlit app in your browser.\n"
           "  URL: http://127.0.0.1:40123\n"
           "Traceback (most recent call last):\n"
           '  File "{data}/apps/{id}/src/streamlit_app.py", line 2, in <module>\n'
           "    import plotly\n"
           "ModuleNotFoundError: No module named 'plotly'\n"
           f"the key was {SECRET}\n")
BUILD_LOG = ("Using requirements.txt at the root.\n"
             "  x No solution found when resolving dependencies:\n"
             "  `-> Because nosuchpkg-stcloud was not found in the package registry and you "
             "require nosuchpkg-stcloud, we can conclude that your requirements are "
             "unsatisfiable.\n"
             f"index token {SECRET} in {{data}}/cache/uv\n")


def _write_logs(env: Env) -> str:
    settings = env.ctx.settings
    data = str(Path(settings.data_dir).resolve())
    secrets.write_runtime_file(settings, env.app_id, f'API_KEY = "{SECRET}"\n')
    for path, text in ((app_log_path(settings, env.app_id), APP_LOG),
                       (build_log_path(settings, env.app_id), BUILD_LOG)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(data=data, id=env.app_id))
    return data


@pytest.mark.parametrize(("state", "phase", "cause", "fix"), [
    ("crashed", "start", "No module named &#x27;plotly&#x27;",
     "Add plotly to requirements.txt and push."),
    ("build_failed", "install", "No package named &#x27;nosuchpkg-stcloud&#x27;",
     "Check the name &#x27;nosuchpkg-stcloud&#x27; in requirements.txt")])
def test_failure_pages_explain_and_mask(ctx, state: str, phase: str, cause: str,
                                        fix: str) -> None:
    async def scenario(env: Env) -> None:
        data = _write_logs(env)
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state=state, address=None, reason="Failed"))
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.dev)) as r:
            html = await r.text()
        assert f"What failed ({phase}):" in html, html
        assert cause in html and fix in html, html
        assert f"/logs?app={env.app_id}" in html  # the full log, one click away
        assert SECRET not in html and "****" in html
        assert data not in html and "127.0.0.1:40123" not in html
    run(ctx, scenario)


class _Lifecycle(SimpleNamespace):
    """What `Updater._redeploy` asks of the lifecycle, no more."""

    def note(self, *args: Any, **kwargs: Any) -> None:
        pass

    def load(self, app_id: int) -> App:
        return self.app

    def app_spec(self, app: App, tree: Path, alongside: bool = False) -> object:
        return SimpleNamespace(app_id=app.id)

    async def wait_healthy(self, inst: object) -> Status:
        return Status("exited", 1)


class _Runtime:
    """A new instance that logs an import error (and a secret) and exits, beside a serving
    one whose lines are already in the same log."""

    def __init__(self, log: Path, text: str) -> None:
        self.log, self.text = log, text

    async def ensure_env(self, spec: EnvSpec, log: object) -> EnvRef:
        return EnvRef("h" * 32, "3.11", "/nowhere", reused=True)

    async def start(self, spec: object, env: EnvRef) -> object:
        with open(self.log, "a") as fh:
            fh.write(self.text)
        return SimpleNamespace(state={})

    async def stop(self, app_id: int, state: object) -> None:
        pass


def test_a_new_version_that_does_not_start_is_explained(ctx, tmp_path: Path) -> None:
    settings = ctx.settings
    app = App(id=7, subdomain="demo", repo_url="/r", branch="main",
              main_file="streamlit_app.py", commit="a" * 40, owner_id=1, workspace_id=1)
    log = app_log_path(settings, app.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("SERVING-INSTANCE-LINE: ValueError: from the old version\n")
    secrets.write_runtime_file(settings, app.id, f'API_KEY = "{SECRET}"\n')
    data = str(Path(settings.data_dir).resolve())
    runtime = _Runtime(log, APP_LOG.format(data=data, id=app.id))
    lifecycle = _Lifecycle(ctx=ctx, settings=settings, runtime=runtime, app=app)
    updater = Updater(lifecycle)  # type: ignore[arg-type]  # a stand-in lifecycle
    spec = EnvSpec("3.11", {"requirements.txt": b"streamlit\n"}, "1.67.0",
                   dependency_file="requirements.txt")
    with pytest.raises(UpdateFailed) as failed:
        asyncio.run(updater._redeploy(app, tmp_path, "b" * 40, spec, lambda line: None))
    message = str(failed.value)
    assert message.startswith("The new version did not start (exited, exit code 1). [start]")
    assert "No module named 'plotly'" in message
    assert "Add plotly to requirements.txt and push." in message
    assert f"Full log: {settings.public_url()}/logs?app={app.id}" in message
    assert SECRET not in message and data not in message
    assert "SERVING-INSTANCE-LINE" not in message  # the new instance's lines only
