"""One reconcile pass of a new leader over what the old one left, in process, on SQLite and
PostgreSQL (`db_ctx`): an app found ended with a sleep pending goes to sleep rather than
restarting, a crash restart waits out its backoff and then respects a stop, and each
running instance gets its housekeeping (`maintain`) after `poll` said it runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.context import Context
from models import App, id_of, session_scope, utcnow
from supervisor.control.lifecycle import Lifecycle
from supervisor.control.requests import enqueue_request, load_requests
from supervisor.runtimes.base import Status
from tests.support.control import (
    one_pass,
    row_summary,
    running_app,
    starting_app,
)
from tests.support.runtimes import GatedRuntime


class EndedRuntime(GatedRuntime):
    """Every instance has ended (the old leader's stop went through before it died)."""

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        return Status("exited", 0)


def test_an_app_found_ended_with_a_sleep_pending_goes_to_sleep_not_restarted(
        db_ctx: Context, tmp_path: Path) -> None:
    """A leader killed while it stopped an idle app for hibernation leaves the app `running`,
    its instance ended and the sleep request pending: the next leader finishes the
    hibernation. (It used to restart the app as a crash, which kept it awake.)"""
    ctx = dataclasses.replace(db_ctx, settings=dataclasses.replace(
        db_ctx.settings, crash_backoff="0"))
    app = starting_app(ctx, tmp_path)
    idle_since = utcnow() - timedelta(days=8)
    with session_scope(ctx.engine) as s:
        row = s.get(App, app.id)
        row.state = "running"
        row.runtime_state = json.dumps({"instance": {"pid": 4242}})
        row.created_at = row.last_deployed_at = row.last_viewed_at = idle_since
        s.add(row)
    enqueue_request(ctx, id_of(app), "sleep", utcnow())
    runtime = EndedRuntime()
    runtime.gate.set()

    one_pass(ctx, runtime, app, {"pid": 4242})
    state, runtime_state, _ = row_summary(ctx, id_of(app))
    assert state == "sleeping"
    assert runtime.started == [] and {"pid": 4242} in runtime.stopped
    assert "instance" not in json.loads(runtime_state or "{}") or \
        not json.loads(runtime_state)["instance"]
    assert load_requests(ctx) == {}


def test_a_crash_restart_waits_out_its_backoff_then_respects_a_stop(
        db_ctx: Context, tmp_path: Path) -> None:
    """During a crash restart's backoff someone stops the app: the restart does not start
    it after all (the next pass stops it as asked)."""
    ctx = dataclasses.replace(db_ctx, settings=dataclasses.replace(
        db_ctx.settings, crash_backoff="1"))
    app = running_app(ctx, tmp_path, {"pid": 4242})
    runtime = EndedRuntime()
    runtime.gate.set()
    lc = Lifecycle(ctx, runtime)

    async def scenario() -> None:
        restart = asyncio.create_task(lc.handle_exit(id_of(app), Status("exited", 1)))
        while row_summary(ctx, id_of(app))[0] != "starting":
            assert not restart.done()
            await asyncio.sleep(0.01)
        with session_scope(ctx.engine) as s:
            row = s.get(App, app.id)
            row.desired_state = "stopped"
            s.add(row)
        await asyncio.wait_for(restart, 30)

    asyncio.run(scenario())
    assert runtime.started == [], "a stopped app was started by the crash restart"
    assert row_summary(ctx, id_of(app))[0] == "starting"


class MaintainedRuntime(GatedRuntime):
    """Records the housekeeping steps the reconciler asks of running instances."""

    def __init__(self) -> None:
        super().__init__()
        self.maintained: list[tuple[int, dict[str, Any]]] = []

    async def maintain(self, app_id: int, state: dict[str, Any]) -> None:
        self.maintained.append((app_id, state))


def test_a_reconcile_pass_maintains_each_running_instance(db_ctx: Context,
                                                          tmp_path: Path) -> None:
    """`poll` only observes; the housekeeping of a running instance (the Docker engines'
    app-log cap) is `maintain`, which each reconcile pass calls after `poll` said running."""
    app = running_app(db_ctx, tmp_path, {"pid": 4343})
    runtime = MaintainedRuntime()
    one_pass(db_ctx, runtime, app, {"pid": 4343})
    assert runtime.maintained == [(app.id, {"pid": 4343})]
    assert runtime.started == [] and runtime.stopped == []
