"""The process runtime's warm pool: for the environments of sleeping apps, an interpreter
that has already imported Streamlit and the environment's heavy libraries waits in a
sandbox of its own (`warm_slot.py`, `zygote.py`), so that waking such an app skips the
imports: the app's instance is that slot, given the app's checkout, home, limits, log,
variables and secrets.

Which environments get a slot (`choose`): those of apps that are asleep and wake on a visit
(the reconciler reports them each pass, `want`), most sleeping apps first, one slot each,
as many as fit in `warm_pool_memory_mb`, each slot costing what the slots measure (memory
cgroup usage, else PSS; `ESTIMATE_MB` until one was measured). Slots are started in the
background, one at a time, never while an app starts from the pool; a slot of an
environment no sleeping app uses any more is stopped. A slot is used once: taken out of the
pool when it becomes an instance, never returned (`take`).

Needs a supervisor running as root with the bubblewrap sandbox (the slots' mounts are
made on the host); otherwise `make_pool` says why in one log line and every start is cold.
Slots die with the supervisor (end of their stdin), and `clean_up` at adoption kills what an
earlier supervisor left and unmounts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from supervisor.runtimes import sandbox, warm_slot
from supervisor.runtimes.base import AppSpec, EnvRef, Instance
from supervisor.runtimes.warm_slot import SlotHost

log = logging.getLogger("supervisor.runtimes.warm_pool")
ESTIMATE_MB = 160  # a slot's cost before any was measured (Streamlit + pandas: ~150 MiB)
READY_TIMEOUT = 120.0  # seconds for a slot's imports, on a busy machine
RETRY_AFTER = 60.0  # seconds before an environment whose slot failed is tried again


def choose(demand: dict[str, int], budget_mb: int, cost_mb: int) -> list[str]:
    """The environments that get a slot: most sleeping apps first (then by name, so the
    choice is stable), one slot each, while the slots' total stays within `budget_mb`."""
    if budget_mb <= 0 or cost_mb <= 0:
        return []
    ranked = sorted((env for env, n in demand.items() if n > 0),
                    key=lambda env: (-demand[env], env))
    return ranked[:budget_mb // cost_mb]


def make_pool(host: SlotHost) -> WarmPool | None:
    """The pool, or None (one log line saying why) when this runtime cannot keep one."""
    budget = host.settings.warm_pool_memory_mb
    why = ""
    if budget <= 0:
        why = "warm_pool_memory_mb is 0"
    elif host.isolation != sandbox.BUBBLEWRAP or host.tools is None:
        why = f"apps are not sandboxed (isolation={host.isolation})"
    elif not sandbox.running_as_root():
        why = "the supervisor is not root (the slots' mounts need it)"
    if why:
        log.info("warm pool off: %s; every wake is a cold start", why)
        return None
    log.info("warm pool on: budget=%d MiB", budget)
    return WarmPool(host, budget)


class WarmPool:
    def __init__(self, host: SlotHost, budget_mb: int) -> None:
        self.host = host
        self.budget_mb = budget_mb
        self.slots: dict[str, warm_slot.Slot] = {}  # environment -> its slot
        self.demand: dict[str, int] = {}
        self.measured_mb: dict[str, int] = {}  # environment -> what its slot cost when ready
        self.starting: set[str] = set()  # folders of slots being started
        self._failed: dict[str, float] = {}  # environment -> when its slot failed
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._waking = 0  # starts from the pool in progress: no slot is started meanwhile

    # What the reconciler reports ------------------------------------------------------
    def want(self, env_hashes: list[str]) -> None:
        """The sleeping apps' environments (by dependency hash, repeated per app): the
        pool follows them in the background."""
        envs = self.host.settings.envs_path
        self.demand = dict(Counter(str(envs / h) for h in env_hashes
                                   if h and "/" not in h and not h.startswith(".")))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="warm-pool")

    async def settle(self) -> None:
        """Wait until the pool has followed the last `want` (tests, benches)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def chosen(self) -> list[str]:
        return choose({env: n for env, n in self.demand.items() if Path(env).is_dir()},
                      self.budget_mb, self.cost_mb)

    @property
    def cost_mb(self) -> int:
        """What one slot costs: the most any slot measured, else the estimate."""
        return max(self.measured_mb.values(), default=ESTIMATE_MB)

    async def _follow(self) -> None:
        while True:
            chosen = self.chosen()
            for env in [e for e in self.slots if e not in chosen]:
                await asyncio.to_thread(warm_slot.kill, self.slots.pop(env))
                log.info("warm slot of %s stopped: no sleeping app uses it", env)
            now = time.monotonic()
            missing = [env for env in chosen if env not in self.slots
                       and now - self._failed.get(env, -RETRY_AFTER) >= RETRY_AFTER]
            if not missing or self._waking or self._closing:
                return
            await self._start(missing[0])

    async def _start(self, env: str) -> None:
        try:
            slot = await asyncio.to_thread(warm_slot.launch, self.host, env,
                                           self.budget_mb)
        except Exception as exc:  # a slot that cannot start: wakes stay cold
            log.warning("warm slot of %s could not start: %s", env, exc)
            self._failed[env] = time.monotonic()
            return
        self.starting.add(str(slot.folder))
        try:
            ready = await asyncio.to_thread(slot.wait_ready, READY_TIMEOUT)
        finally:
            self.starting.discard(str(slot.folder))
        if self._closing:
            await asyncio.to_thread(warm_slot.kill, slot)
            return
        if not ready:
            log.warning("warm slot of %s did not get ready (see %s)", env,
                        slot.folder / "slot.log")
            self._failed[env] = time.monotonic()
            await asyncio.to_thread(warm_slot.kill, slot)
            return
        self.slots[env] = slot
        measured = await asyncio.to_thread(slot.memory_bytes) >> 20
        if measured > 0:
            self.measured_mb[env] = measured
        log.info("warm slot of %s ready uid=%d pid=%d memory=%d MiB", env, slot.uid,
                 slot.pid, measured)

    # Waking an app --------------------------------------------------------------------
    def take(self, env: str) -> warm_slot.Slot | None:
        """The environment's ready slot, out of the pool for good; None when there is none."""
        slot = self.slots.get(env)
        if slot is None or not slot.ready or slot.popen.poll() is not None:
            return None
        del self.slots[env]
        return slot

    async def wake(self, app: AppSpec, env: EnvRef) -> Instance | None:
        """`app`'s instance made from a slot of its environment, or None (then the caller
        starts it cold): no slot ready, or a step of the assignment failed (logged; the
        slot is killed)."""
        slot = self.take(env.location)
        if slot is None:
            return None
        host = self.host
        self._waking += 1
        try:
            state = await asyncio.to_thread(
                warm_slot.assign, slot, app, env, host.secrets_files(env.location),
                host.settings.process_pids_limit, host.isolation)
        except warm_slot.AssignError as exc:
            log.warning("app=%s warm slot uid=%d could not be assigned (%s); starting cold",
                        app.app_id, slot.uid, exc)
            await asyncio.to_thread(warm_slot.kill, slot)
            return None
        finally:
            self._waking -= 1
        host.adopt(app.app_id, slot.popen, state)
        log.info("app=%s woken from the warm slot uid=%d pid=%d port=%d", app.app_id,
                 slot.uid, slot.pid, slot.port)
        return Instance(app.app_id, ("127.0.0.1", slot.port), state, app.generation)

    # Ending ---------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every slot (a slot being started is stopped once its start returns)."""
        self._closing = True
        await self.settle()
        for env in list(self.slots):
            await asyncio.to_thread(warm_slot.kill, self.slots.pop(env))
        await asyncio.to_thread(warm_slot.unmount_tree,
                                self.host.settings.run_path / "warm")


def clean_up(host: SlotHost, pool: WarmPool | None, live: list[dict[str, Any]]) -> None:
    """Kill and unmount the slots an earlier supervisor left (those no live instance's
    state names; a woken instance keeps its slot's directory until it stops)."""
    from supervisor.runtimes import cgroups
    from supervisor.runtimes.process_state import kill_members, terminate_group

    keep = {str(s.get("warm_slot")) for s in live if s.get("warm_slot")}
    keep |= {str(slot.folder) for slot in (pool.slots.values() if pool else [])}
    keep |= set(pool.starting) if pool else set()
    for folder, info in warm_slot.leftovers(host.settings.run_path / "warm", keep):
        proc = host.live(info) if info.get("pid") else None
        if proc is not None:
            terminate_group(proc.pid, 0.0)
        for kind in ("cgroup", "pids_cgroup"):
            if info.get(kind):
                group = cgroups.Cgroup(Path(info[kind]))
                kill_members(group)
                group.remove()
        try:
            warm_slot.release(folder)
        except OSError as exc:
            log.warning("warm slot directory %s not removed: %s", folder, exc)
    if pool is None:
        warm_slot.unmount_tree(host.settings.run_path / "warm")
