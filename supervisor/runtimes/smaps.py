"""Memory and CPU of an instance's processes, read from the host's /proc.

An instance is a set of processes (the process runtime's sandbox; a Docker container's
cgroup, whose processes are visible in the host's /proc because the supervisor runs as
root there). Its memory is the sum over its processes of PSS from
`/proc/<pid>/smaps_rollup`: each shared page is split between the processes that map it,
so forked workers sharing their parent's pages (and a Python interpreter's libraries)
count once in total, not once per process as a sum of RSS would. USS (`Private_Clean` +
`Private_Dirty`) is what ending the instance would free at least.

CPU is the instance's user + system ticks (`/proc/<pid>/stat`) between two readings over
the wall time between them, in percent of one core, kept per instance key by a
`CpuMeter` (a process that ends between two readings takes its ticks with it: the delta
is then clamped at 0, never negative).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor.runtimes.base import InstanceUsage, Usage

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Memory:
    """Bytes: PSS (each shared page split between its sharers), USS (private), RSS."""

    pss: int = 0
    uss: int = 0
    rss: int = 0

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.pss + other.pss, self.uss + other.uss, self.rss + other.rss)


def parse_smaps_rollup(text: str) -> Memory:
    """The figures of one `smaps_rollup` (lines `Name:   123 kB`); missing fields are 0."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0) + \
        fields.get("Private_Hugetlb", 0)
    return Memory(pss=fields.get("Pss", 0), uss=uss, rss=fields.get("Rss", 0))


def process_memory(pid: int, proc: Path = PROC) -> Memory | None:
    """One process's figures, or None when it is gone or unreadable (a kernel thread's
    rollup is empty: zeros)."""
    try:
        return parse_smaps_rollup((proc / str(pid) / "smaps_rollup").read_text())
    except (OSError, ValueError):
        return None


def pids_memory(pids: Iterable[int], proc: Path = PROC) -> Memory | None:
    """The sum over `pids`, None when none of them could be read."""
    total: Memory | None = None
    for pid in pids:
        one = process_memory(pid, proc)
        if one is not None:
            total = one if total is None else total + one
    return total


def cpu_ticks(pids: Iterable[int], proc: Path = PROC) -> int:
    """User + system clock ticks of `pids` (fields 14 and 15 of /proc/<pid>/stat, counted
    after the command name, which may hold spaces and parentheses)."""
    total = 0
    for pid in pids:
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 12 and fields[11].isdigit() and fields[12].isdigit():
            total += int(fields[11]) + int(fields[12])
    return total


def cgroup_pids(pid: int, must_contain: str = "", proc: Path = PROC,
                root: Path = CGROUP_ROOT) -> list[int]:
    """Every process in `pid`'s memory cgroup (v1 `memory` controller, else the v2
    unified hierarchy), [] when it cannot be read or its path lacks `must_contain` (a
    container id: a pid a remote Docker daemon reported names some other process here).
    A container's processes, wherever its init forked them."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return []
    v1 = v2 = None
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if must_contain and must_contain not in path:
            continue
        if "memory" in controllers.split(","):
            v1 = root / "memory" / path.lstrip("/")
        elif controllers == "":
            v2 = root / "unified" / path.lstrip("/")
            if not v2.exists():
                v2 = root / path.lstrip("/")
    for group in (v1, v2):
        if group is None or group == root or group.parent == root:
            continue  # the root cgroup holds the whole host: never "the instance"
        try:
            text = (group / "cgroup.procs").read_text()
        except OSError:
            continue
        return [int(p) for p in text.split() if p.isdigit()]
    return []


class CpuMeter:
    """CPU % of one core per instance key, measured between two calls of `percent`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, proc: Path = PROC):
        self._clock = clock
        self._proc = proc
        self._last: dict[str, tuple[float, int]] = {}

    def percent(self, key: str, pids: Iterable[int]) -> float:
        """0.0 on the first reading of `key` (nothing to compare with yet)."""
        now, ticks = self._clock(), cpu_ticks(pids, self._proc)
        previous = self._last.get(key)
        self._last[key] = (now, ticks)
        if previous is None or now <= previous[0]:
            return 0.0
        return max(ticks - previous[1], 0) / TICKS / (now - previous[0]) * 100.0

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the readings of instances not in `keep` (ended ones)."""
        wanted = set(keep)
        for key in [k for k in self._last if k not in wanted]:
            del self._last[key]


def instance_usage(name: str, pids: list[int], meter: CpuMeter,
                   proc: Path = PROC) -> InstanceUsage | None:
    """One instance's PSS, USS and CPU from its processes; None when /proc has none of
    them (gone, or another host's)."""
    memory = pids_memory(pids, proc)
    if memory is None:
        return None
    return InstanceUsage(name=name, memory_bytes=memory.pss, uss_bytes=memory.uss,
                         cpu_percent=meter.percent(name, pids))


def container_usage(container_id: str, pid: int, engine: Usage | None,
                    proc: Path = PROC, root: Path = CGROUP_ROOT) -> Usage | None:
    """A container's Usage: PSS/USS of the processes of its cgroup (found from its init
    `pid`, which must be in a cgroup named after `container_id`), CPU from the engine's
    own figure `engine`; `engine` as it is when /proc does not show the container."""
    if engine is None or pid <= 0:
        return engine
    memory = pids_memory(cgroup_pids(pid, container_id, proc, root), proc)
    if memory is None:
        return engine
    one = InstanceUsage(name=container_id[:12], memory_bytes=memory.pss,
                        uss_bytes=memory.uss, cpu_percent=engine.cpu_percent)
    return Usage(memory.pss, engine.cpu_percent, memory.uss, (one,))


def combined(parts: list[Usage]) -> Usage | None:
    """Several instances' Usage as one (Swarm's tasks): sums, and every instance."""
    if not parts:
        return None
    uss = [p.uss_bytes for p in parts]
    return Usage(memory_bytes=sum(p.memory_bytes for p in parts),
                 cpu_percent=sum(p.cpu_percent for p in parts),
                 uss_bytes=None if None in uss else sum(u or 0 for u in uss),
                 instances=tuple(i for p in parts for i in p.instances))
