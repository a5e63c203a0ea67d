"""Memory limits for the process runtime: a cgroup v1 memory controller per app instance.

On the machines this runs on `/sys/fs/cgroup/memory` (cgroup v1) is mounted and
writable by root, while cgroup v2 (`/sys/fs/cgroup/unified`) has no memory controller. An
instance gets `/sys/fs/cgroup/memory/stcloud-<install>/app-<id>-<token>` with
`memory.limit_in_bytes` (and the swap limit, when swap accounting exists) set before the app
runs: the instance is started as `sh -c 'echo $$ > cgroup.procs && exec streamlit …'`, so
the shell puts itself into the cgroup and then becomes the app; nothing of the app ever
runs outside it (no `preexec_fn`, which is unsafe in a threaded parent). Children inherit
the cgroup. Over the limit the kernel's OOM killer kills inside the cgroup only and counts
it in `memory.oom_control` (`oom_kill N`), which is how an exit is told to be an OOM.

Where no cgroup can be made (not root, no v1 memory controller), `available()` is False and
the process runtime falls back to a memory watchdog over the process tree.

Process limits work the same way with the v1 `pids` controller (`/sys/fs/cgroup/pids`): an
instance's `PidsCgroup` has `pids.max` set before the app runs, so a fork bomb stops at the
limit (fork fails with EAGAIN inside the app) and the host and other apps keep serving.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from pathlib import Path

log = logging.getLogger("supervisor.runtimes.cgroups")
MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
PIDS_ROOT = Path("/sys/fs/cgroup/pids")


def install_prefix(data_dir: Path) -> str:
    """`stcloud-<hash of data_dir>`: two installations on one host never share a cgroup."""
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]
    return f"stcloud-{digest}"


def available(root: Path = MEMORY_ROOT) -> bool:
    """True when a memory cgroup can be created here (v1 controller, writable)."""
    return (root / "memory.limit_in_bytes").exists() and os.access(root, os.W_OK)


def pids_available(root: Path = PIDS_ROOT) -> bool:
    """True when a pids cgroup can be created here (v1 controller, writable)."""
    return (root / "cgroup.procs").exists() and os.access(root, os.W_OK)


def choose_mode(wanted: str) -> str:
    """cgroup, watchdog or off, from the `process_memory_limit` setting and this host."""
    if wanted == "off":
        return "off"
    if wanted in ("auto", "cgroup") and available():
        return "cgroup"
    if wanted == "cgroup":
        log.warning("process_memory_limit=cgroup but no writable cgroup v1 memory "
                    "controller here; using the RSS watchdog")
    elif wanted not in ("auto", "watchdog"):
        log.warning("process_memory_limit=%r is not cgroup, watchdog, auto or off; "
                    "using the RSS watchdog", wanted)
    return "watchdog"


class Cgroup:
    """One instance's cgroup: a directory of a v1 hierarchy."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @staticmethod
    def _new_dir(root: Path, parent_name: str, app_id: int) -> Path:
        parent = root / parent_name
        parent.mkdir(exist_ok=True)
        path = parent / f"app-{app_id}-{secrets.token_hex(4)}"
        path.mkdir()
        return path

    def _write(self, name: str, value: str) -> None:
        with open(self.path / name, "w") as fh:
            fh.write(value)

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def exists(self) -> bool:
        return self.path.is_dir()

    def pids(self) -> list[int]:
        return [int(p) for p in self._read("cgroup.procs").split() if p.isdigit()]

    def remove(self, wait: float = 2.0) -> bool:
        """rmdir the cgroup once its processes are gone (the kernel refuses before)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.path.rmdir()
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)  # the killed processes are still exiting


class PidsCgroup(Cgroup):
    """One instance's pids cgroup: at most `pids.max` processes and threads."""

    @classmethod
    def create(cls, parent_name: str, app_id: int, max_pids: int,
               root: Path = PIDS_ROOT) -> PidsCgroup:
        group = cls(cls._new_dir(root, parent_name, app_id))
        group._write("pids.max", str(int(max_pids)))
        return group

    def current(self) -> int:
        text = self._read("pids.current").strip()
        return int(text) if text.isdigit() else 0

    def refused_forks(self) -> int:
        """How many forks the limit refused (`pids.events` max)."""
        for line in self._read("pids.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                return int(value)
        return 0


class MemoryCgroup(Cgroup):
    """One instance's memory cgroup (a directory of the v1 memory hierarchy)."""

    @classmethod
    def create(cls, parent_name: str, app_id: int, limit_mb: int,
               root: Path = MEMORY_ROOT) -> MemoryCgroup:
        path = cls._new_dir(root, parent_name, app_id)
        group = cls(path)
        limit = str(int(limit_mb) << 20)
        group._write("memory.limit_in_bytes", limit)
        if (path / "memory.memsw.limit_in_bytes").exists():  # no swapping past the limit
            try:
                group._write("memory.memsw.limit_in_bytes", limit)
            except OSError:
                pass
        if (path / "memory.swappiness").exists():
            try:
                group._write("memory.swappiness", "0")
            except OSError:
                pass
        return group

    def oom_kills(self) -> int:
        """How many processes the OOM killer killed in this cgroup (0 if unknown)."""
        for line in self._read("memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def max_usage_bytes(self) -> int:
        text = self._read("memory.max_usage_in_bytes").strip()
        return int(text) if text.isdigit() else 0

    def usage_bytes(self) -> int:
        """Memory the instance uses now: the cgroup's usage less its inactive file cache
        (what `docker stats` shows), each page counted once however many processes share
        it. 0 when unknown."""
        text = self._read("memory.usage_in_bytes").strip()
        if not text.isdigit():
            return 0
        inactive = 0
        for line in self._read("memory.stat").splitlines():
            key, _, value = line.partition(" ")
            if key == "total_inactive_file" and value.strip().isdigit():
                inactive = int(value)
        return max(int(text) - inactive, 0)


def stale_groups(parent_name: str, keep: set[str], root: Path = MEMORY_ROOT) -> list[Path]:
    """Empty cgroups of this installation that no live instance uses (left by a crash)."""
    parent = root / parent_name
    if not parent.is_dir():
        return []
    out = []
    for path in parent.iterdir():
        if path.is_dir() and str(path) not in keep and not Cgroup(path).pids():
            out.append(path)
    return out
