"""Environment builds of the process runtime: who is building, and cleaning up after a
supervisor killed mid-build.

Environments are built in `envs/<hash>.building-*` directories whose `.stcloud-builder`
marker names the building process (pid and start time) and the process groups of its build
steps. A build directory whose builder died is removed at the next start, after what is
left of its steps has been killed (they run in their own sessions). Build steps also get
SIGKILL when their supervisor dies (`die_with_parent`).
"""

from __future__ import annotations

import contextvars
import ctypes
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from supervisor.runtimes import sandbox

log = logging.getLogger("supervisor.runtimes.process")
READY_MARKER = ".stcloud-ready"
BUILDER_MARKER = ".stcloud-builder"  # pid and start time of the process building the env


def builder_identity() -> dict[str, Any]:
    return {"pid": os.getpid(), "create_time": psutil.Process().create_time()}


def _process_alive(owner: dict[str, Any]) -> bool:
    try:
        proc = psutil.Process(int(owner.get("pid", 0)))
        return abs(proc.create_time() - float(owner.get("create_time", 0))) < 0.01 \
            and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `signum` when this process dies (Linux), also when it
    died between the fork and this call (then the child exits at once)."""
    parent = os.getpid()
    try:  # loaded here, not in the child: dlopen after a fork of a threaded process can hang
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


# The `.stcloud-builder` file of the environment being built by this task (ensure_env).
BUILD_MARKER: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "stcloud_build_marker", default=None)


def note_build_group(pid: int) -> None:
    """Record a build subprocess's process group in the build's marker, so that the next
    supervisor can end it if we are killed (it runs in its own session and outlives us)."""
    marker = BUILD_MARKER.get()
    if marker is None:
        return
    try:
        owner = json.loads(marker.read_text())
        owner.setdefault("groups", []).append(
            {"pgid": pid, "create_time": psutil.Process(pid).create_time()})
        write_marker(marker, owner)
    except (OSError, ValueError, psutil.Error):
        pass  # the build goes on; only the clean-up after a crash is weaker


def write_marker(marker: Path, owner: dict[str, Any]) -> None:
    """Replace the marker atomically: a supervisor killed mid-write must not leave an empty
    marker, which would hide a dead builder's directory from the next start's clean-up."""
    sandbox.write_private_file(marker, json.dumps(owner).encode())


def _kill_group(group: dict[str, Any]) -> None:
    """SIGKILL what is left of a dead supervisor's build process group: members of that
    group started no earlier than its leader (never a later group that reused the id)."""
    pgid, born = int(group.get("pgid", 0)), float(group.get("create_time", 0))
    killed = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if pgid and os.getpgid(proc.pid) == pgid and proc.info["create_time"] >= born - 0.01:
                proc.kill()
                killed.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    # Wait for them to be gone before the caller deletes their directory: a builder still
    # writing into it would leave a half-deleted directory behind.
    psutil.wait_procs(killed, timeout=5)


def clean_stale_builds(envs_path: Path, build_timeout: float) -> list[str]:
    """Remove `envs/<hash>.building-*` directories whose builder is gone (a supervisor
    killed mid-build leaves one behind; envs_dir may be shared, so a directory whose
    builder still runs is kept). Returns the names removed."""
    removed = []
    for path in envs_path.glob("*.building-*"):
        try:
            owner = json.loads((path / BUILDER_MARKER).read_text())
        except ValueError:  # half-written (markers are replaced atomically now): dead
            owner = {}
        except OSError:
            owner = None
        if owner is None:  # no marker: an older build, or killed before writing it
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < build_timeout:
                continue
        elif _process_alive(owner):
            continue
        else:  # its builder died: so must the uv processes it started (own sessions)
            for group in owner.get("groups", []):
                _kill_group(group)
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # something still wrote into it while it went: once more
            shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        log.info("removed stale env builds count=%d names=%s", len(removed),
                 ",".join(removed))
    return removed
