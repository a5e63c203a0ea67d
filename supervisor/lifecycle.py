"""Lifecycle actions on one app: deploy, start, reboot, handle an exit, stop, delete.

Each action runs inside the reconciler's per-app worker, so two actions never run on one
app at once (kopf's rule). Actions read the app row, call git and the runtime, and record
every transition (backend.appstate) so the dashboard, the proxy's pages and emails see it.
Timeouts are applied here, not in the engines (JupyterHub's rule).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
from sqlmodel import delete, select

from backend import appstate
from backend.context import Context
from backend.logs import app_log_path, build_log_path, tail_lines
from models import (App, AppEvent, AppSecret, AppViewer, Build, Favorite, session_scope,
                    utcnow)
from supervisor import gitsync
from supervisor.runtimes.base import (AppSpec, BuildError, EnvRef, EnvSpec, Instance, Runtime,
                                      StartError, Status)

log = logging.getLogger("supervisor.lifecycle")


class DeployError(Exception):
    """A deploy cannot go on; the message is for a person."""


class BuildLog:
    """Appends timestamped lines to an app's build log."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        self._fh.write(f"[{stamp}] {line}\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


@dataclass
class CrashRecord:
    times: list[float] = field(default_factory=list)


class Lifecycle:
    """The actions; `instances` is the reconciler's view of what runs."""

    def __init__(self, ctx: Context, runtime: Runtime, on_change: Any = None,
                 clock: Any = time.monotonic) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.runtime = runtime
        self.instances: dict[int, Instance] = {}
        self.crashes: dict[int, CrashRecord] = {}
        self._on_change = on_change or (lambda app: None)
        self._clock = clock

    # Helpers ----------------------------------------------------------------------------
    def checkout_dir(self, app_id: int) -> Path:
        return self.settings.apps_path / str(app_id) / "src"

    def _load(self, app_id: int) -> App | None:
        with session_scope(self.ctx.engine) as s:
            return s.get(App, app_id)

    def _transition(self, app_id: int, to_state: str, reason: str, **fields: Any) -> App | None:
        with session_scope(self.ctx.engine) as s:
            app = s.get(App, app_id)
            if app is None or app.desired_state == "deleted":
                return None
            for name, value in fields.items():
                setattr(app, name, value)
            if app.state != to_state or to_state == "starting":
                appstate.transition(s, app, to_state, reason)
            else:
                app.state_reason = reason
                s.add(app)
        log.info("app=%s state=%s reason=%r", app_id, to_state, reason.splitlines()[0:1])
        self._on_change(app)
        return app

    def _save_instance(self, app_id: int, inst: Instance | None) -> None:
        blob = "{}" if inst is None else json.dumps({
            "engine": self.runtime.name, "address": list(inst.address),
            "generation": inst.generation, "instance": inst.state})
        with session_scope(self.ctx.engine) as s:
            app = s.get(App, app_id)
            if app is not None:
                app.runtime_state = blob
                s.add(app)
        if inst is None:
            self.instances.pop(app_id, None)
        else:
            self.instances[app_id] = inst

    def _app_spec(self, app: App) -> AppSpec:
        secrets = self.settings.apps_path / str(app.id) / "secrets.toml"
        return AppSpec(app_id=app.id, name=app.subdomain, checkout=self.checkout_dir(app.id),
                       main_file=app.main_file, log_path=app_log_path(self.settings, app.id),
                       memory_limit_mb=app.memory_limit_mb or self.settings.memory_limit_mb,
                       secrets_file=secrets if secrets.exists() else None,
                       generation=app.restart_generation)

    def _env_spec(self, app: App) -> EnvSpec:
        """The app's dependency set: its chosen Python, else .python-version, else default."""
        spec = EnvSpec.from_checkout(self.checkout_dir(app.id), app.python_version,
                                     self.settings.default_streamlit)
        if not spec.python_version:
            spec = dataclasses.replace(spec, python_version=self.settings.default_python)
        return spec

    # Deploy -----------------------------------------------------------------------------
    async def deploy(self, app_id: int) -> None:
        """Clone, build or reuse the environment, start, wait for health."""
        app = self._load(app_id)
        if app is None:
            return
        if app.state != "building":
            app = self._transition(app_id, "building", f"Cloning {app.branch} of {app.repo_url}")
            if app is None:
                return
        await self.stop_instance(app_id)
        blog = BuildLog(build_log_path(self.settings, app_id))
        build_id = None
        try:
            blog(f"Deploying {app.repo_url} (branch {app.branch}, main file {app.main_file}).")
            commit = await asyncio.wait_for(
                gitsync.clone(app.repo_url, app.branch, self.checkout_dir(app_id), blog),
                self.settings.build_timeout)
            blog(f"Checked out commit {commit[:12]}.")
            self._check_main_file(app)
            spec = self._env_spec(app)
            build_id = self._record_build(app_id, commit, spec.dep_hash)
            self._transition(app_id, "building", "Building the environment", commit=commit)
            env = await asyncio.wait_for(self.runtime.ensure_env(spec, blog),
                                         self.settings.build_timeout)
            self._finish_build(build_id, "succeeded", reused=env.reused)
        except asyncio.TimeoutError:
            self._fail_build(app_id, build_id, blog, "The build took longer than "
                             f"{self.settings.build_timeout:.0f} s and was stopped.")
            return
        except (gitsync.GitError, BuildError, DeployError) as e:
            self._fail_build(app_id, build_id, blog, str(e))
            return
        except Exception as e:  # noqa: BLE001 - never let one app kill the supervisor
            log.exception("app=%s build crashed", app_id)
            self._fail_build(app_id, build_id, blog, f"Internal error while building: {e}")
            return
        finally:
            blog.close()
        app = self._transition(app_id, "starting", "Starting the app", env_hash=env.dep_hash,
                               last_deployed_at=utcnow())
        if app is not None:
            await self.start_and_wait(app, env)

    def _check_main_file(self, app: App) -> None:
        checkout = self.checkout_dir(app.id)
        if not (checkout / app.main_file).is_file():
            found = sorted(p.name for p in checkout.glob("*.py"))[:10]
            hint = f" Python files at the top level: {', '.join(found)}." if found else ""
            raise DeployError(f"The main file '{app.main_file}' does not exist on branch "
                              f"'{app.branch}'.{hint} Fix the path in the app's settings or "
                              "push the file.")

    def _record_build(self, app_id: int, commit: str, dep_hash: str) -> int:
        with session_scope(self.ctx.engine) as s:
            build = Build(app_id=app_id, commit=commit, dep_hash=dep_hash)
            s.add(build)
            s.flush()
            return build.id  # type: ignore[return-value]

    def _finish_build(self, build_id: int | None, status: str, error: str = "",
                      reused: bool = False) -> None:
        if build_id is None:
            return
        with session_scope(self.ctx.engine) as s:
            build = s.get(Build, build_id)
            if build is not None:
                build.status, build.error, build.reused_env = status, error, reused
                build.finished_at = utcnow()
                s.add(build)

    def _fail_build(self, app_id: int, build_id: int | None, blog: BuildLog, reason: str) -> None:
        blog(f"Build failed: {reason}")
        self._finish_build(build_id, "failed", reason)
        self._transition(app_id, "build_failed", reason)

    # Start and health -------------------------------------------------------------------
    async def start_and_wait(self, app: App, env: EnvRef | None = None) -> None:
        """Start an instance (reusing the environment) and wait until it is healthy."""
        try:
            if env is None:
                env = await asyncio.wait_for(
                    self.runtime.ensure_env(self._env_spec(app), lambda line: None),
                    self.settings.build_timeout)
            inst = await self.runtime.start(self._app_spec(app), env)
        except (BuildError, StartError, FileNotFoundError) as e:
            self._transition(app.id, "crashed", f"The app could not start: {e}")
            return
        self._save_instance(app.id, inst)
        status = await self._wait_healthy(inst)
        if status is None:
            self._transition(app.id, "running", "Serving")
            return
        await self._stop_saved(app.id)
        if status.kind == "oom":
            self._transition(app.id, "over_limit", self._oom_reason(app))
        else:
            self._transition(app.id, "crashed", self._exit_reason(app.id, status, start=True))

    async def _wait_healthy(self, inst: Instance) -> Status | None:
        """None once /_stcore/health answers; else the Status that ended the wait."""
        url = f"http://{inst.address[0]}:{inst.address[1]}/_stcore/health"
        deadline = self._clock() + self.settings.health_timeout
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while self._clock() < deadline:
                status = await self.runtime.poll(inst.app_id, inst.state)
                if not status.alive:
                    return status
                try:
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return None
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        return Status("exited", None)

    def _oom_reason(self, app: App) -> str:
        limit = app.memory_limit_mb or self.settings.memory_limit_mb
        return (f"The app used more than its memory limit of {limit} MiB and was stopped. "
                "Reboot it from the dashboard; if it happens again, reduce its memory use.")

    def _exit_reason(self, app_id: int, status: Status, start: bool) -> str:
        code = "" if status.exit_code is None else f" (exit code {status.exit_code})"
        when = "before it answered" if start else "unexpectedly"
        tail = tail_lines(app_log_path(self.settings, app_id), 15)
        return (f"The app stopped {when}{code}. Last lines of its log:\n{tail}"
                if tail else f"The app stopped {when}{code}.")

    # Running apps -----------------------------------------------------------------------
    async def reboot(self, app_id: int) -> None:
        app = self._transition(app_id, "starting", "Rebooting")
        if app is None:
            return
        await self.stop_instance(app_id)
        await self.start_and_wait(app)

    async def handle_exit(self, app_id: int, status: Status) -> None:
        """A running instance is gone: over limit, or restart with backoff, or crashed."""
        app = self._load(app_id)
        if app is None:
            return
        await self._stop_saved(app_id)
        if status.kind == "oom":
            self._transition(app_id, "over_limit", self._oom_reason(app))
            return
        record = self.crashes.setdefault(app_id, CrashRecord())
        now = self._clock()
        record.times = [t for t in record.times if now - t < 600] + [now]
        schedule = self.settings.crash_backoff_schedule
        attempt = len(record.times)
        if attempt > len(schedule):
            self._transition(app_id, "crashed", self._exit_reason(app_id, status, start=False)
                             + f"\nIt crashed {attempt} times in 10 minutes; reboot it after "
                             "fixing the cause.")
            return
        delay = schedule[attempt - 1]
        app = self._transition(app_id, "starting", f"The app stopped unexpectedly; restart "
                               f"{attempt} of {len(schedule)} in {delay:g} s")
        await asyncio.sleep(delay)  # backoff before the restart, not synchronisation
        if app is not None:
            await self.start_and_wait(app)

    async def stop_instance(self, app_id: int) -> None:
        await self._stop_saved(app_id)

    async def _stop_saved(self, app_id: int) -> None:
        inst = self.instances.get(app_id)
        state = inst.state if inst else self._saved_state(app_id)
        if state:
            await self.runtime.stop(app_id, state)
        self._save_instance(app_id, None)

    def _saved_state(self, app_id: int) -> dict[str, Any]:
        app = self._load(app_id)
        if app is None:
            return {}
        try:
            return json.loads(app.runtime_state or "{}").get("instance", {})
        except ValueError:
            return {}

    async def stop(self, app_id: int) -> None:
        await self._stop_saved(app_id)
        self._transition(app_id, "stopped", "Stopped")

    async def delete(self, app_id: int) -> None:
        """Stop the instance, remove files, secrets and rows; events are kept."""
        await self._stop_saved(app_id)
        shutil.rmtree(self.settings.apps_path / str(app_id), ignore_errors=True)
        shutil.rmtree(self.settings.logs_path / str(app_id), ignore_errors=True)
        self.crashes.pop(app_id, None)
        with session_scope(self.ctx.engine) as s:
            app = s.get(App, app_id)
            for table in (Favorite, AppViewer, AppSecret):
                s.exec(delete(table).where(table.app_id == app_id))  # type: ignore
            if app is not None:
                s.add(AppEvent(app_id=app_id, from_state=app.state, to_state="deleted",
                               reason="Deleted; instance, files and secrets removed"))
                s.delete(app)
        self._on_change(None)
        log.info("app=%s deleted", app_id)
