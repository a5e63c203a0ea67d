"""The warm pool's choices (which environments get a slot, within the budget, most sleeping
apps first), its bookkeeping (a slot is taken once, slots of environments no sleeping app
uses are stopped, a failed environment is not retried at once), when it is off, and the log
writer's switch to another file (`logpipe.py --control`), with stand-in slots: the real
sandboxed slots are tests/integration/test_warm_pool.py's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from supervisor.runtimes import logpipe, sandbox, warm_pool, warm_slot

pytestmark = pytest.mark.no_database


def test_choose_most_sleeping_apps_first_within_the_budget() -> None:
    demand = {"/e/a": 1, "/e/b": 5, "/e/c": 3, "/e/d": 0}
    assert warm_pool.choose(demand, 1000, 100) == ["/e/b", "/e/c", "/e/a"]
    assert warm_pool.choose(demand, 250, 100) == ["/e/b", "/e/c"]
    assert warm_pool.choose(demand, 99, 100) == []
    assert warm_pool.choose(demand, 0, 100) == []
    assert warm_pool.choose({"/e/y": 2, "/e/x": 2}, 200, 100) == ["/e/x", "/e/y"]


@dataclass
class FakeSlot:
    location: str
    folder: Path
    cost: int = 150 << 20
    ready: bool = True
    killed: bool = False
    popen: Any = field(default=None)

    def __post_init__(self) -> None:
        self.popen = self

    def poll(self) -> None:
        return None

    def wait_ready(self, timeout: float) -> bool:
        return self.ready

    def memory_bytes(self) -> int:
        return self.cost

    uid = 1
    pid = 1


@dataclass
class FakeSettings:
    envs_path: Path
    warm_pool_memory_mb: int = 400
    run_path: Path = Path("/nonexistent")


@dataclass
class FakeHost:
    """The part of `warm_slot.SlotHost` the pool itself reads."""

    settings: FakeSettings
    isolation: str = sandbox.BUBBLEWRAP
    tools: object = "tools"


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> warm_pool.WarmPool:
    for name in "abcd":
        (tmp_path / name).mkdir()
    launched: list[FakeSlot] = []

    def launch(host: Any, env: str, memory_mb: int) -> FakeSlot:
        if env.endswith("/d"):
            raise OSError("no room")
        slot = FakeSlot(env, tmp_path / f"slot-{len(launched)}")
        launched.append(slot)
        return slot

    def kill(slot: FakeSlot) -> None:
        slot.killed = True
    monkeypatch.setattr(warm_slot, "launch", launch)
    monkeypatch.setattr(warm_slot, "kill", kill)
    made = warm_pool.WarmPool(FakeHost(FakeSettings(tmp_path)), 400)  # type: ignore[arg-type]
    made.launched = launched  # type: ignore[attr-defined]
    return made


def test_the_pool_follows_the_sleeping_apps_within_its_measured_budget(
        pool: warm_pool.WarmPool, tmp_path: Path) -> None:
    async def scenario() -> None:
        pool.want(["a", "b", "b", "c", "c", "c", "missing"])
        await pool.settle()
        # 160 MiB estimated, then 150 measured: 400 MiB holds two slots
        assert sorted(pool.slots) == [str(tmp_path / "c"), str(tmp_path / "b")][::-1]
        assert pool.cost_mb == 150
        b_slot = pool.slots[str(tmp_path / "b")]
        pool.want(["c", "a"])  # b's apps woke or left: its slot is stopped
        await pool.settle()
        assert b_slot.killed and sorted(pool.slots) == [str(tmp_path / "a"),
                                                        str(tmp_path / "c")]
        taken = pool.take(str(tmp_path / "c"))
        assert taken is not None and pool.take(str(tmp_path / "c")) is None
        pool.want(["d", "d", "d"])  # its slot cannot start: not retried at once
        await pool.settle()
        tries = len(pool.launched)  # type: ignore[attr-defined]
        pool.want(["d", "d", "d"])
        await pool.settle()
        assert len(pool.launched) == tries  # type: ignore[attr-defined]
        assert str(tmp_path / "d") not in pool.slots
        await pool.close()
        assert not pool.slots
    asyncio.run(scenario())


def test_a_slot_that_never_gets_ready_is_killed(pool: warm_pool.WarmPool,
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setattr(FakeSlot, "wait_ready", lambda self, timeout: False)

    async def scenario() -> None:
        pool.want(["a"])
        await pool.settle()
    asyncio.run(scenario())
    launched = pool.launched  # type: ignore[attr-defined]
    assert launched and launched[0].killed and not pool.slots


def test_the_pool_is_off_without_budget_sandbox_or_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "running_as_root", lambda: True)
    on = FakeHost(FakeSettings(tmp_path))
    assert warm_pool.make_pool(on) is not None  # type: ignore[arg-type]
    assert warm_pool.make_pool(FakeHost(  # type: ignore[arg-type]
        FakeSettings(tmp_path, warm_pool_memory_mb=0))) is None
    assert warm_pool.make_pool(FakeHost(  # type: ignore[arg-type]
        FakeSettings(tmp_path), isolation=sandbox.SINGLE_TENANT)) is None
    monkeypatch.setattr(sandbox, "running_as_root", lambda: False)
    assert warm_pool.make_pool(on) is None  # type: ignore[arg-type]


def test_logpipe_switches_its_file_on_the_control_fifo(tmp_path: Path) -> None:
    first, second, control = tmp_path / "slot.log", tmp_path / "app.log", tmp_path / "ctl"
    os.mkfifo(control)
    program = ("import sys; print('before', flush=True); sys.stdin.readline(); "
               "print('after', flush=True)")
    proc = subprocess.Popen([sys.executable, "-I", logpipe.__file__, str(first), "0", "0",
                             "--control", str(control), "--", sys.executable, "-c", program],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        wait_for_text(first, "before")
        fd = os.open(control, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, f"{second}\n".encode())
        os.close(fd)
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        assert proc.wait(30) == 0
        wait_for_text(second, "after")
    finally:
        proc.kill()
    assert first.read_text() == "before\n"
    assert second.read_text() == "after\n"


def wait_for_text(path: Path, text: str, timeout: float = 30) -> None:
    """Wait until `path` holds `text` (the writer is another process)."""
    import time
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never reached {path}"
        time.sleep(0.02)
