"""Crash reasons from `Lifecycle.start_and_wait` with a runtime that writes the app log as a
real instance does: a reason quotes only the run that ended (never an earlier run's lines),
names a missing module with the fix, shows no host path or internal URL, and a start that
never answers its health check says so."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from backend.apps.log_files import app_log_path
from backend.context import open_context
from supervisor.control.lifecycle import Lifecycle
from supervisor.runtimes.base import AppSpec, EnvRef, Instance, Status
from tests.conftest import free_port
from tests.support.control import starting_app
from tests.support.runtimes import StubRuntime


class LoggingRuntime(StubRuntime):
    """Each start appends `lines` to the app log and gives an address where nothing
    listens; poll says `status` (running: the health wait times out)."""

    name = "logging"

    def __init__(self, data_dir: Path) -> None:
        self.lines: list[str] = []
        self.status = Status("exited", 1)
        self.data_dir = data_dir

    async def start(self, app: AppSpec, env: EnvRef) -> Instance:
        app.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(app.log_path, "a") as fh:
            fh.writelines(line + "\n" for line in self.lines)
        return Instance(app.app_id, ("127.0.0.1", free_port()), {"n": 1}, app.generation)


def test_reasons_quote_only_the_run_that_ended(settings, tmp_path: Path) -> None:
    ctx = open_context(dataclasses.replace(settings, health_timeout=1.0))
    app = starting_app(ctx, tmp_path, "crashy")
    runtime = LoggingRuntime(ctx.settings.data_dir)
    lifecycle = Lifecycle(ctx, runtime)
    internal = "  URL: http://127.0.0.1:41234"
    runtime.lines = ["  You can now view your Streamlit app in your browser.", internal,
                     "first run: Traceback in " + str(ctx.settings.data_dir / "apps")]
    assert asyncio.run(lifecycle.start_and_wait(app)) is False
    first = lifecycle.load(app.id).state_reason
    assert "first run" in first and "(exit code 1)" in first

    runtime.lines = ["second run", "ModuleNotFoundError: No module named 'sklearn'"]
    assert asyncio.run(lifecycle.start_and_wait(app)) is False
    second = lifecycle.load(app.id).state_reason
    assert "second run" in second and "first run" not in second, second
    assert "No module named 'sklearn'. Add scikit-learn to requirements.txt" in second
    assert "first run" in app_log_path(ctx.settings, app.id).read_text()  # the log keeps it

    runtime.lines, runtime.status = [internal], Status("running")
    assert asyncio.run(lifecycle.start_and_wait(app)) is False
    third = lifecycle.load(app.id).state_reason
    assert third.startswith("The app did not answer its health check within 1 s, and was "
                            "stopped."), third
    assert "127.0.0.1" not in third and f"URL: {ctx.settings.public_url('crashy')}" in third
    assert str(ctx.settings.data_dir) not in first
