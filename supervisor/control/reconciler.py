"""The reconcile loop: desired state in the database versus what runs.

Each pass loads every app, publishes the route table, and for each app that needs something
(a queued deploy, a reboot, an exit, a delete) starts one worker task; an app with a worker
still running is skipped, so actions on one app are serialised while apps proceed in
parallel. On start, `adopt()` runs before anything is served (JupyterHub's init_spawners):
instances that still run are kept, apps whose instance died (or that were stopped with the
platform, Ctrl-C) start again from their checkout and environment on disk, a few at a time
(`Lifecycle.resume`: no clone, no build), builds that a previous supervisor left half-done
are queued again, and instances nobody owns are stopped.

Besides the database, work arrives as requests (`request(app_id, kind)`): a push found by
a webhook or by polling (`sync`) and a hibernation due (`sleep`). A request waits until the
app has no worker, then runs as that app's next action, so a push never overlaps a reboot
or another push; pending requests survive until served (a push also stays visible to the
next poll, since the app's commit only changes once the update is done).

Requests are `app_request` rows, removed once their action finished: any supervisor
(the leader or not: webhooks and the API run on every one) can ask, and a leader that
dies mid-action leaves them for the next (both actions are idempotent: a sync compares
commits, a sleep checks again that it is due).

With a `leader` (supervisor/control/leader.py), only the leader acts: a follower's passes only
refresh its route table from the database. On becoming leader the loop adopts what runs
before acting; each pass first confirms the lease (fencing); on losing it the workers are
cancelled and instances left running for the new leader. Lifecycle writes are fenced by
the epoch adopted at (`Lifecycle.fence`): an action refused one (`Fenced`, a leader that
was frozen past its lease) ends there and stops any instance it started unrecorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import select

from backend.context import Context
from backend.platform.supervisor_report import wake_file
from models import App, id_of, session_scope, utcnow
from supervisor.builds import records as builds
from supervisor.control import adoption, hibernation
from supervisor.control.leader import Fenced, Leadership
from supervisor.control.lifecycle import Lifecycle
from supervisor.control.requests import (
    KINDS,
    SLEEP_NOW,
    enqueue_request,
    forget_requests,
    load_requests,
)
from supervisor.routes import RouteTable, route_for
from supervisor.runtimes.base import Instance, Runtime
from supervisor.sources.updates import Updater

log = logging.getLogger("supervisor.control.reconciler")
WAKE_POLL = 0.05  # seconds between checks of the wake file (a stat call)
Action = Awaitable[None]  # one lifecycle action of one app, run by its worker task


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


class Reconciler:
    def __init__(self, ctx: Context, runtime: Runtime, routes: RouteTable,
                 on_pass: Callable[[], None] | None = None,
                 leader: Leadership | None = None) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.routes = routes
        self.lifecycle = Lifecycle(ctx, runtime, on_change=self._publish)
        self.updater = Updater(self.lifecycle)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.leader = leader  # None: always the leader
        self.active = leader is None  # adopted and acting as the leader
        self._wake = asyncio.Event()
        self._on_pass = on_pass or (lambda: None)
        self._stopping = False

    # Route table ------------------------------------------------------------------------
    def _publish(self, app: App | None) -> None:
        if app is None:
            self.refresh_routes()
        else:
            self.routes.set(route_for(app))

    def refresh_routes(self, apps: list[App] | None = None) -> None:
        """Publish every app's route (from `apps`, else from the database)."""
        if apps is None:
            apps = self._load_apps()
        self.routes.replace_all([route_for(a) for a in apps])

    def publish_dashboard(self, address: tuple[str, int] | None) -> None:
        """Publish where the dashboard's Streamlit process serves (None while down)."""
        self.routes.dashboard_address = address

    def publish_panel(self, address: tuple[str, int] | None) -> None:
        """Publish where the Manage app panel's process serves (None while down)."""
        self.routes.panel_address = address

    def _load_apps(self) -> list[App]:
        with session_scope(self.ctx.engine) as s:
            return list(s.exec(select(App)).all())

    # Start-up ---------------------------------------------------------------------------
    async def adopt(self) -> None:
        """Match live instances to apps before serving; stop the ones nobody owns.

        An app may have two live instances when a supervisor died during a zero-downtime
        redeploy: the one saved on the app row serves and is adopted, the other is stopped
        (the push is picked up again; its build was marked interrupted)."""
        if self.leader is not None:  # writes from here on are fenced by this term's epoch
            self.lifecycle.fence = self.leader.fence()
        interrupted = builds.mark_interrupted(self.ctx)
        if interrupted:
            log.info("builds interrupted by the previous supervisor: %d", interrupted)
        pending = load_requests(self.ctx)
        live: dict[int, list[Instance]] = {}
        for found in await self.runtime.list():
            live.setdefault(found.app_id, []).append(found)
        for app in self._load_apps():
            await adoption.adopt_app(self.lifecycle, app, live.pop(id_of(app), []), pending)
        for app_id, insts in live.items():
            for inst in insts:
                log.warning("app=%s instance has no app; stopping it", app_id)
                await self.runtime.stop(app_id, inst.state)
        self.refresh_routes()

    # The loop ---------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def request(self, app_id: int, kind: str, arg: Any = None) -> None:
        """Ask for `kind` ("sync": a push; "sleep": hibernate at `arg`) as the app's next
        action; the leader's loop runs it once the app has no worker."""
        enqueue_request(self.ctx, app_id, kind, arg)
        self.wake()

    def push_detected(self, app_id: int, source: str) -> None:
        self.request(app_id, "sync", source)

    def _next_request(self, app: App, pending: dict[int, dict[str, tuple[int, str]]]
                      ) -> Action | None:
        app_id = id_of(app)
        mine = pending.get(app_id)
        if not mine:
            return None
        upto = max(i for i, _ in mine.values())
        if "sync" in mine:  # a push also resets the idle clock: it wins over sleep
            action = self.updater.sync(app_id, mine["sync"][1] or "push")
            return self._served(app_id, ("sync", "sleep"), upto, action)
        if SLEEP_NOW in mine:  # asked by a person (backend.apps.admin_actions)
            action = hibernation.sleep_now(self.lifecycle, app_id, mine[SLEEP_NOW][1])
            return self._served(app_id, (SLEEP_NOW, "sleep"), upto, action)
        if "sleep" in mine:
            when = mine["sleep"][1]
            action = hibernation.hibernate(self.lifecycle, app_id,
                                           datetime.fromisoformat(when) if when else utcnow())
            return self._served(app_id, ("sleep",), upto, action)
        return None

    async def _served(self, app_id: int, kinds: tuple[str, ...], upto: int,
                      action: Action) -> None:
        """Run a requested action; its rows go once it ended (kept if we were cancelled:
        a new leader serves them)."""
        try:
            await action
        except (asyncio.CancelledError, Fenced):  # the new leader serves them
            raise
        except BaseException:
            await asyncio.to_thread(forget_requests, self.ctx, app_id, kinds, upto)
            raise
        await asyncio.to_thread(forget_requests, self.ctx, app_id, kinds, upto)

    async def run(self) -> None:
        """Reconcile every `reconcile_interval` seconds, and at once when woken: by a worker
        that finished, or by the dashboard/API touching the wake file
        (backend.platform.supervisor_report)."""
        interval = self.ctx.settings.reconcile_interval
        while not self._stopping:
            # Read before the pass: a touch during the pass (a deploy committed after the
            # pass loaded the apps) wakes the next one at once instead of an interval later.
            seen = await asyncio.to_thread(_mtime, wake_file(self.ctx))
            try:
                if await self._lead():
                    await self.reconcile_once()
                else:
                    await asyncio.to_thread(self.refresh_routes)
            except Fenced:  # e.g. during adoption: the next pass steps down
                log.warning("reconcile pass fenced: another node leads")
            except Exception:  # the loop must survive any one bad pass
                log.exception("reconcile pass failed")
            self._on_pass()
            await self._wait_for_wake(interval, seen)
            self._wake.clear()

    async def _lead(self) -> bool:
        """Whether to act this pass: confirm the lease (fencing), adopt when newly elected,
        step down when it was lost."""
        if self.leader is None:
            return True
        if self.active and not (await self.leader.confirm()
                                and self.lifecycle.fence == self.leader.fence()):
            await self.step_down()  # lost, or lost and taken again: adopt afresh
        if not self.active and self.leader.is_leader:
            log.info("leading: adopting what runs before acting")
            await self.adopt()
            self.active = self.leader.is_leader
        return self.active

    async def step_down(self) -> None:
        """Another supervisor leads now: stop acting, leave instances running for it."""
        log.warning("not the leader any more: cancelling %d workers; instances keep running",
                    len(self._tasks))
        self.active = False
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self.lifecycle.instances.clear()

    async def _wait_for_wake(self, interval: float, seen: int) -> None:
        path = wake_file(self.ctx)
        deadline = asyncio.get_running_loop().time() + interval
        while not self._wake.is_set() and not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or _mtime(path) != seen:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), min(WAKE_POLL, remaining))
            except TimeoutError:
                pass

    async def reconcile_once(self) -> None:
        # Database reads in a worker thread: the proxy shares this event loop.
        apps = await asyncio.to_thread(self._load_apps)
        self.refresh_routes(apps)
        self.runtime.prepare_wakes([a.env_hash for a in apps if a.state == "sleeping"
                                    and a.desired_state == "running"])
        pending = await asyncio.to_thread(load_requests, self.ctx)
        for app in apps:
            app_id = id_of(app)
            task = self._tasks.get(app_id)
            if task is not None and not task.done():
                continue
            action = await self._decide(app, pending)
            if action is None:
                action = self._next_request(app, pending)
            if action is not None:
                self._tasks[app_id] = asyncio.create_task(
                    self._guarded(app_id, action), name=f"app-{app_id}")
        for app_id in [i for i, t in self._tasks.items() if t.done()]:
            del self._tasks[app_id]
        known = {a.id for a in apps}
        for app_id in [i for i in pending if i not in known]:  # the app was deleted
            await asyncio.to_thread(forget_requests, self.ctx, app_id, KINDS,
                                    max(i for i, _ in pending[app_id].values()))

    async def _guarded(self, app_id: int, action: Action) -> None:
        try:
            await action
        except asyncio.CancelledError:
            raise
        except Fenced:
            log.warning("app=%s action stopped: fenced (another node leads)", app_id)
            await self.lifecycle.undo_unrecorded()
        except Exception:  # one app's failed action must not stop the others
            log.exception("app=%s action failed", app_id)
        finally:
            self.wake()

    async def _decide(self, app: App, pending: dict[int, dict[str, tuple[int, str]]]
                      ) -> Action | None:
        """The coroutine that moves `app` toward its desired state, or None (then a pending
        request, if any, is served)."""
        lc = self.lifecycle
        app_id = id_of(app)
        if app.desired_state == "deleted":
            return lc.delete(app_id)
        if app.desired_state == "stopped":
            return lc.stop(app_id) if app.state != "stopped" else None
        if app.state in ("queued", "building"):
            return lc.deploy(app_id)
        if app.state == "starting":  # woken from sleep, or a worker died mid-start
            return lc.resume(app_id)
        if app.state != "running":
            return None
        inst = lc.instances.get(app_id)
        if inst is None:
            return lc.reboot(app_id)
        if inst.generation != app.restart_generation:
            return lc.reboot(app_id)
        status = await self.runtime.poll(app_id, inst.state)
        if not status.alive:
            if "sleep" in pending.get(app_id, {}):
                # Ended while being put to sleep (a leader killed mid-stop): finish that;
                # a restart would keep an idle app awake. Not due after all: the next pass
                # finds it ended with nothing pending and restarts it.
                log.info("app=%s instance ended with a sleep pending: hibernating", app_id)
                return None
            log.warning("app=%s instance ended: %s %s", app_id, status.kind, status.exit_code)
            return lc.handle_exit(app_id, status)
        await self.runtime.maintain(app_id, inst.state)  # e.g. the app log's size cap
        return None

    async def shutdown(self) -> None:
        """Stop the loop and cancel workers; instances keep running for the next supervisor."""
        self._stopping = True
        self.wake()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def stop_all_apps(self) -> None:
        try:
            for app_id in list(self.lifecycle.instances):
                await self.lifecycle.stop_instance(app_id)
        except Fenced:  # another node leads by now: its instances are not ours to stop
            log.warning("not stopping the apps: another node leads")
