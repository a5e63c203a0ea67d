"""Fencing of a leader that lost its lease while it could not notice.

- in process, two `Leadership` objects on one database (SQLite and PostgreSQL): leader A
  starts an instance, B takes over before A records it; A's write is refused (`Fenced`),
  A stops the instance it started, and the app row is exactly what B left. A's stop of the
  instance saved on the row (B's by now) is refused too. A fenced write holds the lease
  row until it commits, so no take-over lands between its check and its write;
- the process runtime stops an app whose parent (the supervisor that started it) is
  frozen with SIGSTOP without waiting out its grace: the exited, unreaped process (a
  zombie) counts as ended;
- a late env build does not replace the one another builder finished, and a fenced leader
  neither rewrites the live files in place nor writes build rows.

Every database test runs on SQLite and on PostgreSQL (`db_ctx`, tests/conftest.py). What
one reconcile pass does with what it finds is in test_reconcile_pass.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from backend.context import Context
from backend.platform.settings import Settings
from models import App, Build, ClusterLease, id_of, session_scope
from supervisor.builds import records as builds
from supervisor.control.leader import LEASE, Fenced, Leadership
from supervisor.control.lifecycle import Lifecycle
from supervisor.runtimes.base import EnvRef, EnvSpec, Instance
from supervisor.runtimes.process import ProcessRuntime
from tests.support.control import (
    expire_lease,
    node,
    row_summary,
    starting_app,
)
from tests.support.runtimes import GatedRuntime


def test_a_leader_fenced_mid_start_records_nothing_and_stops_its_instance(
        db_ctx: Context, tmp_path: Path) -> None:
    ctx = db_ctx
    a, b = Leadership(ctx, node("a")), Leadership(ctx, node("b"))
    assert a.step()
    app = starting_app(ctx, tmp_path)
    runtime = GatedRuntime()
    lc_a = Lifecycle(ctx, runtime)
    lc_a.fence = a.fence()
    lc_a.note(app.id, "A leads and may write")  # a fenced write that passes

    async def scenario() -> None:
        action = asyncio.create_task(lc_a.start_and_wait(app, EnvRef("h", "3.11", "/x")))
        await asyncio.wait_for(runtime.entered.wait(), 30)  # A is inside runtime.start
        # A is "frozen" there: its lease runs out and B takes over and records its own.
        expire_lease(ctx)
        assert b.step() and b.epoch == a.epoch + 1
        lc_b = Lifecycle(ctx, GatedRuntime())
        lc_b.fence = b.fence()
        lc_b.save_instance(app.id, Instance(app.id, ("127.0.0.1", 8), {"pid": 7}))
        lc_b.transition(app.id, "running", "Serving (B)")
        before = row_summary(ctx, app.id)
        runtime.gate.set()  # A wakes up and goes on with its action
        with pytest.raises(Fenced):
            await asyncio.wait_for(action, 30)
        assert runtime.stopped == runtime.started == [{"pid": 1000}], \
            "A stopped the instance it started and could not record"
        assert row_summary(ctx, app.id) == before, "A wrote nothing: B's instance and state stand"
        assert app.id not in lc_a.instances and lc_a.unrecorded == []

        # A's next step would stop the instance saved on the row (B's): refused too.
        with pytest.raises(Fenced):
            await lc_a.stop_instance(app.id)
        assert runtime.stopped == [{"pid": 1000}], "B's instance was not touched"
        with pytest.raises(Fenced):
            lc_a.transition(app.id, "crashed", "A thinks it crashed")
        assert row_summary(ctx, app.id) == before
    asyncio.run(scenario())
    b.release()
    a.release()


def test_a_fenced_write_holds_the_lease_until_it_commits(db_ctx: Context,
                                                         tmp_path: Path) -> None:
    """No take-over commits between a write's fence check and the write itself."""
    ctx = db_ctx
    a = Leadership(ctx, node("a"))
    assert a.step()
    app = starting_app(ctx, tmp_path)
    lc = Lifecycle(ctx, GatedRuntime())
    lc.fence = a.fence()
    url = ctx.engine.url.render_as_string(hide_password=False)
    with lc._write() as s:
        s.get(App, app.id)  # checked: the lease row is held until this transaction ends
        if ctx.engine.dialect.name == "postgresql":
            other = create_engine(url)
            try:
                with pytest.raises(OperationalError, match="lock"):
                    with other.begin() as conn:  # a take-over's compare-and-set
                        conn.execute(text("SET LOCAL lock_timeout = '50ms'"))
                        conn.execute(text("UPDATE cluster_lease SET epoch = epoch + 1"))
            finally:
                other.dispose()
        else:
            other = sqlite3.connect(url.split("///", 1)[1], timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("UPDATE cluster_lease SET epoch = epoch + 1")
            finally:
                other.close()
    with session_scope(ctx.engine) as s:
        assert s.get(ClusterLease, LEASE).epoch == a.epoch
    a.release()


# The process runtime: an app whose parent is frozen -----------------------------------
PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True)
print(child.pid, flush=True)
child.wait()
"""
# Ends on SIGTERM after saying so (the graceful path, not the SIGKILL after the grace).
CHILD = """
import pathlib, signal, sys, time
def term(*_):
    pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "term").write_text("TERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(1)
"""


def test_process_runtime_stops_an_app_of_a_frozen_supervisor_without_the_grace(
        settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "term"
    child_src = CHILD.replace('sys.argv[1] if len(sys.argv) > 1 else "term"', repr(str(marker)))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, child_src], stdout=subprocess.PIPE,
                              text=True)
    try:
        pid = int(parent.stdout.readline())  # type: ignore[union-attr]  # stdout=PIPE
        child = psutil.Process(pid)
        deadline = time.monotonic() + 30
        while child.status() != psutil.STATUS_SLEEPING or not _handler_set(pid):
            assert time.monotonic() < deadline, "the app did not come up"
            time.sleep(0.02)  # polling the child's state, with a deadline
        os.kill(parent.pid, signal.SIGSTOP)  # the supervisor that started it is frozen
        state = {"pid": pid, "create_time": child.create_time(), "port": 1}
        runtime = ProcessRuntime(settings)
        runtime._write_state(7, state)
        with caplog.at_level(logging.INFO, logger="supervisor.runtimes.process"):
            asyncio.run(runtime.stop(7, state))
        assert marker.read_text() == "TERM", "ended by SIGTERM"
        assert f"pid={pid} stopped how=zombie" in caplog.text, caplog.text
        assert not runtime._state_files(7), "its state file is gone"
        assert asyncio.run(runtime.poll(7, state)).kind == "exited"
    finally:
        os.kill(parent.pid, signal.SIGCONT)
        parent.kill()
        parent.wait(30)


def _handler_set(pid: int) -> bool:
    """Has the child installed its SIGTERM handler (its SigCgt mask has bit 15)?"""
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_a_late_env_build_does_not_replace_the_one_another_builder_finished(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed (fenced) leader finishing a build must not swap out the environment the new
    leader built meanwhile, which apps may already run from: its own copy is discarded."""
    from supervisor.runtimes import process as process_runtime
    from supervisor.runtimes import process_builders
    settings = dataclasses.replace(settings, envs_dir=tmp_path / "envs")  # not the shared one
    runtime = process_runtime.ProcessRuntime(settings)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "requirements.txt").write_text("streamlit==1.67.0\n")
    spec = EnvSpec.from_checkout(checkout, settings.default_python, settings.default_streamlit)
    final = settings.envs_path / spec.dep_hash
    assert not final.exists()

    async def racing_build(spec_: EnvSpec, interpreter: str, venv: Path, log: Any,
                           base: Path | None = None) -> None:
        (venv / "built-by").write_text("late builder")
        final.mkdir(parents=True)  # meanwhile the other builder finished
        (final / "built-by").write_text("first builder")
        (final / process_builders.READY_MARKER).write_text(spec_.dep_hash)

    monkeypatch.setattr(runtime, "_build", racing_build)
    env = asyncio.run(runtime.ensure_env(spec, lambda line: None))
    assert Path(env.location) == final
    assert (final / "built-by").read_text() == "first builder"
    assert not list(settings.envs_path.glob(f"{spec.dep_hash}.building-*"))


def test_a_fenced_leader_does_not_rewrite_the_live_files_in_place(
        db_ctx: Context, tmp_path: Path) -> None:
    """A code-only push handled by a leader that lost its lease: the live checkout (which
    the new leader's instance serves) is left as it is, and nothing is recorded."""
    from supervisor.sources.updates import Updater
    ctx = db_ctx
    a, b = Leadership(ctx, node("a")), Leadership(ctx, node("b"))
    assert a.step()
    app = starting_app(ctx, tmp_path)
    live, tree = tmp_path / "live", tmp_path / "tree"
    for path, content in ((live, "old"), (tree, "new")):
        path.mkdir()
        (path / "streamlit_app.py").write_text(content)
        subprocess.run(["git", "init", "-q", str(path)], check=True)
        subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    lc_a = Lifecycle(ctx, GatedRuntime())
    lc_a.fence = a.fence()
    expire_lease(ctx)
    assert b.step()  # B leads now; A has not noticed
    before = row_summary(ctx, app.id)
    with pytest.raises(Fenced):
        asyncio.run(Updater(lc_a)._in_place(app, live, tree, "c0ffee", lambda line: None))
    assert (live / "streamlit_app.py").read_text() == "old"
    assert row_summary(ctx, app.id) == before


def test_a_fenced_leader_does_not_write_build_rows(db_ctx: Context, tmp_path: Path) -> None:
    """Build rows are fenced like the app row: a leader that lost the lease can neither
    start a build record nor turn the new leader's `interrupted` into `failed` (polling
    would then skip that commit for good)."""
    ctx = db_ctx
    a, b = Leadership(ctx, node("a")), Leadership(ctx, node("b"))
    assert a.step()
    app = starting_app(ctx, tmp_path)
    lc_a = Lifecycle(ctx, GatedRuntime())
    lc_a.fence = a.fence()
    build_id = lc_a.record_build(id_of(app), "c0ffee", "hash")
    expire_lease(ctx)
    assert b.step()
    assert builds.mark_interrupted(ctx) == 1  # the new leader's adoption
    with pytest.raises(Fenced):
        lc_a.finish_build(build_id, "failed", "cancelled")
    with pytest.raises(Fenced):
        lc_a.record_build(id_of(app), "c0ffee", "hash")
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(Build)).all()
    assert [(r.id, r.status) for r in rows] == [(build_id, "interrupted")]
    assert not builds.commit_failed(ctx, id_of(app), "c0ffee")
    b.release()
    a.release()
