"""The reconcile loop: desired state in the database versus what runs.

Each pass loads every app, publishes the route table, and for each app that needs something
(a queued deploy, a reboot, an exit, a delete) starts one worker task; an app with a worker
still running is skipped, so actions on one app are serialised while apps proceed in
parallel. On start, `adopt()` runs before anything is served (JupyterHub's init_spawners):
instances that still run are kept, apps whose instance died are restarted, builds that a
previous supervisor left half-done are queued again, and instances nobody owns are stopped.

Besides the database, work arrives as requests (`request(app_id, kind)`): a push found by
a webhook or by polling (`sync`) and a hibernation due (`sleep`). A request waits until the
app has no worker, then runs as that app's next action, so a push never overlaps a reboot
or another push; pending requests survive until served (a push also stays visible to the
next poll, since the app's commit only changes once the update is done).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import select

from backend import appstate
from backend.context import Context
from backend.platform import wake_file
from models import App, session_scope, utcnow
from supervisor import builds, checkouts, hibernation
from supervisor.lifecycle import Lifecycle
from supervisor.routes import Route, RouteTable
from supervisor.runtimes.base import Instance, Runtime
from supervisor.updates import Updater

log = logging.getLogger("supervisor.reconciler")
WAKE_POLL = 0.05  # seconds between checks of the wake file (a stat call)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _address(app: App) -> tuple[str, int] | None:
    try:
        addr = json.loads(app.runtime_state or "{}").get("address")
    except ValueError:
        return None
    return (addr[0], int(addr[1])) if addr else None


def _saved_blob(app: App) -> dict[str, Any]:
    try:
        return json.loads(app.runtime_state or "{}")
    except ValueError:
        return {}


def same_instance(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Do two instance states name the same process or container?"""
    return any(a.get(k) and a.get(k) == b.get(k) for k in ("container_id", "pid"))


def route_for(app: App) -> Route:
    return Route(app_id=app.id, subdomain=app.subdomain, state=app.state,  # type: ignore[arg-type]
                 address=_address(app) if app.state == "running" else None,
                 reason=app.state_reason, visibility=app.visibility,
                 workspace_id=app.workspace_id)


class Reconciler:
    def __init__(self, ctx: Context, runtime: Runtime, routes: RouteTable,
                 on_pass: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.routes = routes
        self.lifecycle = Lifecycle(ctx, runtime, on_change=self._publish)
        self.updater = Updater(self.lifecycle)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._requests: dict[int, dict[str, Any]] = {}  # app id -> kind -> argument
        self._wake = asyncio.Event()
        self._on_pass = on_pass or (lambda: None)
        self._stopping = False

    # Route table ------------------------------------------------------------------------
    def _publish(self, app: App | None) -> None:
        if app is None:
            self._refresh_routes()
        else:
            self.routes.set(route_for(app))

    def _refresh_routes(self, apps: list[App] | None = None) -> None:
        if apps is None:
            apps = self._load_apps()
        self.routes.replace_all([route_for(a) for a in apps])

    def _load_apps(self) -> list[App]:
        with session_scope(self.ctx.engine) as s:
            return list(s.exec(select(App)).all())

    # Start-up ---------------------------------------------------------------------------
    async def adopt(self) -> None:
        """Match live instances to apps before serving; stop the ones nobody owns.

        An app may have two live instances when a supervisor died during a zero-downtime
        redeploy: the one saved on the app row serves and is adopted, the other is stopped
        (the push is picked up again; its build was marked interrupted)."""
        interrupted = builds.mark_interrupted(self.ctx)
        if interrupted:
            log.info("builds interrupted by the previous supervisor: %d", interrupted)
        live: dict[int, list[Instance]] = {}
        for found in await self.runtime.list():
            live.setdefault(found.app_id, []).append(found)
        for app in self._load_apps():
            candidates = live.pop(app.id, [])
            if app.desired_state == "deleted":  # stop them all; the delete action follows
                for extra in candidates:
                    await self.runtime.stop(app.id, extra.state)
                continue
            saved = _saved_blob(app)
            # The instance the row names; with no name saved (an older row), any one. One
            # the row does not name is never adopted: its tree may not be the kept one.
            inst = next((i for i in candidates
                         if same_instance(i.state, saved.get("instance", {}))),
                        candidates[0] if candidates and not saved.get("instance") else None)
            for extra in candidates:
                if extra is not inst:
                    log.warning("app=%s stopping a second instance left by a redeploy",
                                app.id)
                    await self.runtime.stop(app.id, extra.state)
            self._adopt_tree(app.id, saved.get("tree", ""))
            if inst is not None and app.state in ("running", "starting"):
                self.lifecycle.save_instance(app.id, inst)
                log.info("app=%s adopted instance at %s:%s", app.id, *inst.address)
                if app.state == "starting":
                    self._requeue(app.id, "Supervisor restarted while starting; starting again")
                continue
            if inst is not None:
                await self.runtime.stop(app.id, inst.state)
            if app.state in ("building", "starting"):
                self._requeue(app.id, "Supervisor restarted during the deploy; deploying again")
            elif app.state == "running":
                self._requeue(app.id, "The app was not running after a supervisor restart; "
                              "starting it again")
        for app_id, insts in live.items():
            for inst in insts:
                log.warning("app=%s instance has no app; stopping it", app_id)
                await self.runtime.stop(app_id, inst.state)
        self._refresh_routes()

    def _adopt_tree(self, app_id: int, tree_name: str) -> None:
        """Point `src` at the tree the serving instance runs in (a supervisor may have died
        between switching the route and moving the pointer) and drop unused trees."""
        app_dir = self.lifecycle.app_dir(app_id)
        tree = app_dir / tree_name if tree_name else None
        if tree is not None and tree.is_dir() and checkouts.current_tree(app_dir) != tree:
            checkouts.point_current(app_dir, tree)
        checkouts.remove_unused(app_dir)

    def _requeue(self, app_id: int, reason: str) -> None:
        with session_scope(self.ctx.engine) as s:
            app = s.get(App, app_id)
            if app is not None:
                appstate.transition(s, app, "queued", reason)

    # The loop ---------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def request(self, app_id: int, kind: str, arg: Any = None) -> None:
        """Ask for `kind` ("sync": a push; "sleep": hibernate at `arg`) as the app's next
        action; the loop runs it once the app has no worker."""
        self._requests.setdefault(app_id, {})[kind] = arg
        self.wake()

    def push_detected(self, app_id: int, source: str) -> None:
        self.request(app_id, "sync", source)

    def _next_request(self, app: App) -> Any:
        pending = self._requests.get(app.id)  # type: ignore[arg-type]
        if not pending:
            return None
        app_id: int = app.id  # type: ignore[assignment]
        if "sync" in pending:  # a push also resets the idle clock: it wins over sleep
            source = pending.pop("sync")
            pending.pop("sleep", None)
            return self.updater.sync(app_id, source or "push")
        if "sleep" in pending:
            return hibernation.hibernate(self.lifecycle, app_id, pending.pop("sleep") or utcnow())
        return None

    async def run(self) -> None:
        """Reconcile every `reconcile_interval` seconds, and at once when woken: by a worker
        that finished, or by the dashboard/API touching the wake file (backend.platform)."""
        interval = self.ctx.settings.reconcile_interval
        while not self._stopping:
            try:
                await self.reconcile_once()
            except Exception:  # noqa: BLE001 - the loop must survive any one bad pass
                log.exception("reconcile pass failed")
            self._on_pass()
            await self._wait_for_wake(interval)
            self._wake.clear()

    async def _wait_for_wake(self, interval: float) -> None:
        path = wake_file(self.ctx)
        seen = _mtime(path)
        deadline = asyncio.get_running_loop().time() + interval
        while not self._wake.is_set() and not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or _mtime(path) != seen:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), min(WAKE_POLL, remaining))
            except asyncio.TimeoutError:
                pass

    async def reconcile_once(self) -> None:
        apps = self._load_apps()
        self._refresh_routes(apps)
        for app in apps:
            task = self._tasks.get(app.id)  # type: ignore[arg-type]
            if task is not None and not task.done():
                continue
            action = await self._decide(app)
            if action is None:
                action = self._next_request(app)
            if action is not None:
                self._tasks[app.id] = asyncio.create_task(  # type: ignore[index]
                    self._guarded(app.id, action), name=f"app-{app.id}")  # type: ignore[arg-type]
        for app_id in [i for i, t in self._tasks.items() if t.done()]:
            del self._tasks[app_id]
        known = {a.id for a in apps}
        for app_id in [i for i in self._requests if i not in known or not self._requests[i]]:
            del self._requests[app_id]

    async def _guarded(self, app_id: int, action: Any) -> None:
        try:
            await action
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("app=%s action failed", app_id)
        finally:
            self.wake()

    async def _decide(self, app: App) -> Any:
        """The coroutine that moves `app` toward its desired state, or None."""
        lc = self.lifecycle
        app_id: int = app.id  # type: ignore[assignment]
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
            log.warning("app=%s instance ended: %s %s", app_id, status.kind, status.exit_code)
            return lc.handle_exit(app_id, status)
        return None

    async def shutdown(self) -> None:
        """Stop the loop and cancel workers; instances keep running for the next supervisor."""
        self._stopping = True
        self.wake()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def stop_all_apps(self) -> None:
        for app_id in list(self.lifecycle.instances):
            await self.lifecycle.stop_instance(app_id)
