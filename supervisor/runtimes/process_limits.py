"""The process runtime's limits on a running instance: its memory and pids cgroups (where
the host has them), the memory watchdog (where it has no memory cgroup), and the usage
figures the dashboard shows.

`maintain`, which the reconciler calls after `poll` found an instance running, ends an
instance over its memory limit, all of its processes, as Docker would: its cgroup counted
an OOM kill of one of its processes, or (watchdog) the PSS of its process tree is over the
limit. It remembers the pid, so that the next `poll` says `oom` (`poll` itself only
observes). `usage` sums the PSS (and USS) of the instance's processes from their
`smaps_rollup` (`smaps.py`: each shared page split between its sharers, so forked workers
are not counted many times over), falling back to the cgroup's figure, else psutil's.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import psutil

from supervisor.runtimes import cgroups, smaps
from supervisor.runtimes.base import AppSpec, Usage
from supervisor.runtimes.process_state import StateFiles, terminate_group, tree_memory

log = logging.getLogger("supervisor.runtimes.process")


class InstanceLimits(StateFiles):
    """The limits half of ProcessRuntime (cgroups, watchdog, usage)."""

    memory_mode: str
    _cgroup_parent: str
    _oom_pids: set[int]  # instances `maintain` ended for memory

    def _new_cgroups(self, app: AppSpec) -> dict[str, cgroups.Cgroup]:
        """The instance's memory and pids cgroups, those this host has ({} without)."""
        out: dict[str, cgroups.Cgroup] = {}
        try:
            if self.memory_mode == "cgroup" and app.memory_limit_mb > 0:
                out["cgroup"] = cgroups.MemoryCgroup.create(
                    self._cgroup_parent, app.app_id, app.memory_limit_mb)
        except OSError as exc:
            log.warning("app=%s memory cgroup not created (%s); using the memory watchdog",
                        app.app_id, exc)
        try:
            if self.settings.process_pids_limit > 0 and cgroups.pids_available():
                out["pids_cgroup"] = cgroups.PidsCgroup.create(
                    self._cgroup_parent, app.app_id, self.settings.process_pids_limit)
        except OSError as exc:
            log.warning("app=%s pids cgroup not created (%s); RLIMIT_NPROC only",
                        app.app_id, exc)
        return out

    @staticmethod
    def _cgroup(state: dict[str, Any]) -> cgroups.MemoryCgroup | None:
        path = state.get("cgroup")
        return cgroups.MemoryCgroup(Path(path)) if path else None

    @staticmethod
    def _pids_cgroup(state: dict[str, Any]) -> cgroups.PidsCgroup | None:
        path = state.get("pids_cgroup")
        return cgroups.PidsCgroup(Path(path)) if path else None

    async def maintain(self, app_id: int, state: dict[str, Any]) -> None:
        """End an instance over its memory limit, all of its processes, as Docker would:
        the kernel killed a process of its tree (its cgroup counts an OOM kill) or the
        watchdog measured the tree over the limit. The next `poll` says `oom`."""
        if not state.get("pid"):
            return
        _, proc, over = await asyncio.to_thread(self._inspect, state)
        if proc is None or not over:
            return
        pid = state["pid"]
        self._oom_pids.add(pid)
        log.warning("app=%s pid=%s over its memory limit of %s MiB; killed", app_id, pid,
                    state.get("memory_limit_mb"))
        await asyncio.to_thread(terminate_group, pid, 0.0)

    def _inspect(self, state: dict[str, Any]) -> tuple[Any, psutil.Process | None, bool]:
        """(memory cgroup, the live process or None, whether it is over its limit)."""
        group = self._cgroup(state)
        proc = self._process(state)
        if proc is None:
            return group, None, False
        watchdog = group is None and self.memory_mode == "watchdog"
        over = (group is not None and group.oom_kills() > 0) or \
            (watchdog and self._over_limit(proc, state))
        return group, proc, over

    @staticmethod
    def _over_limit(proc: psutil.Process, state: dict[str, Any]) -> bool:
        limit = int(state.get("memory_limit_mb") or 0) << 20
        if limit <= 0:
            return False
        try:
            return tree_memory(proc) > limit
        except psutil.Error:
            return False

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        return await asyncio.to_thread(self._read_usage, state)

    def _read_usage(self, state: dict[str, Any]) -> Usage | None:
        """PSS/USS and CPU of the processes of the instance's cgroup (else its process
        tree); the cgroup's or the tree's figure where /proc cannot be read."""
        proc = self._process(state)
        if proc is None:
            return None
        group = self._cgroup(state)
        try:
            pids = (group.pids() if group is not None else []) or \
                [p.pid for p in [proc, *proc.children(recursive=True)]]
            one = smaps.instance_usage(str(state["pid"]), pids, self._cpu_meter())
            if one is None:
                memory = (group.usage_bytes() if group is not None else 0) or \
                    tree_memory(proc)
                return Usage(memory_bytes=memory, cpu_percent=0.0)
        except psutil.Error:
            return None
        return Usage(one.memory_bytes, one.cpu_percent, one.uss_bytes, (one,))

    def _cpu_meter(self) -> smaps.CpuMeter:
        meter = self.__dict__.get("_cpu_meter_")
        if meter is None:
            meter = self.__dict__["_cpu_meter_"] = smaps.CpuMeter()
        return meter
