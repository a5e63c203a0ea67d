"""State files of the process runtime (what must survive a supervisor restart), and the
processes they name.

Each start writes `run/app-<id>.json` (pid, process start time, port, cgroups, isolation)
and `list()` adopts what is still alive; the process start time guards against a recycled
pid. An instance started beside the app's current one (a zero-downtime redeploy,
`AppSpec.alongside`) writes `run/app-<id>-<token>.json`, so `stop(state)` removes the file of
that instance only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from backend.platform.settings import Settings
from supervisor.runtimes import cgroups

STATE_FILE = re.compile(r"^app-(\d+)(?:-([0-9a-f]+))?\.json$")


class StateFiles:
    """The `run/app-*.json` files of a ProcessRuntime, and the live processes they name."""

    settings: Settings
    _children: dict[int, subprocess.Popen[bytes]]  # pid -> child this runtime started

    def _process(self, state: dict[str, Any]) -> psutil.Process | None:
        """The live process `state` describes, or None (gone, zombie, or pid reused)."""
        pid = state.get("pid")
        if not pid:
            return None
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return None
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - float(state.get("create_time", 0))) > 0.01:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


    def _state_file(self, app_id: int, token: str = "") -> Path:
        return self.settings.run_path / (f"app-{app_id}-{token}.json" if token
                                         else f"app-{app_id}.json")

    def _state_files(self, app_id: int | None = None) -> list[tuple[int, Path]]:
        out = []
        for path in sorted(self.settings.run_path.glob("app-*.json")):
            match = STATE_FILE.match(path.name)
            if match and (app_id is None or int(match.group(1)) == app_id):
                out.append((int(match.group(1)), path))
        return out

    def _write_state(self, app_id: int, state: dict[str, Any]) -> None:
        path = self._state_file(app_id, state.get("instance", ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    @staticmethod
    def _read_path(path: Path) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(path.read_text())
            return state
        except (FileNotFoundError, ValueError):
            return None


def wait_ended(pid: int, timeout: float) -> str | None:
    """Wait (polling) until `pid` ended: "exited" (gone, or our child and now reaped),
    "zombie" (ended, not reaped by its parent: psutil cannot wait for another process's
    child, and a stopped parent never reaps it), None after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    try:
        proc = psutil.Process(pid)
        while True:
            try:
                proc.wait(min(delay, max(deadline - time.monotonic(), 0)))  # reaps our child
                return "exited"
            except psutil.TimeoutExpired:
                pass
            if proc.status() == psutil.STATUS_ZOMBIE:
                return "zombie"
            if time.monotonic() >= deadline:
                return None
            delay = min(delay * 2, 0.1)
    except psutil.NoSuchProcess:
        return "exited"
    except psutil.Error:
        return None


def tree_memory(proc: psutil.Process) -> int:
    """Memory of a process tree with shared pages counted once per share (PSS; USS, then
    RSS where the kernel does not give it): forked workers sharing their parent's pages
    would count many times over in a sum of RSS."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", 0) or getattr(info, "uss", 0) or info.rss
        except psutil.AccessDenied:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def kill_members(group: cgroups.Cgroup) -> None:
    """SIGKILL every process still in an instance's cgroup."""
    for pid in group.pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def terminate_group(pid: int, grace: float = 5.0,
                     members: cgroups.Cgroup | None = None) -> str:
    """SIGTERM the group (SIGKILL with no grace), wait up to `grace` s for its leader to
    end, then SIGKILL what is left. Returns how it ended: "exited", "zombie" (it ended
    but its parent has not reaped it: a supervisor that started it and is now frozen,
    SIGSTOP; nothing is left to wait for), "killed" (the grace ran out), "gone"."""
    try:
        os.killpg(pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    except ProcessLookupError:
        return "gone"
    deadline = time.monotonic() + (grace or 5.0)
    how = wait_ended(pid, grace or 5.0)
    # A sandbox's leader (bwrap) ends at once on SIGTERM while the app inside is still
    # shutting down: give the rest of the instance's cgroup the same grace.
    while how is not None and grace > 0 and members is not None and members.pids() \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    if how is None:
        how = "killed"
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:  # the group may hold children of the app
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return how
