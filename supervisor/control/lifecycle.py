"""Lifecycle actions on one app: deploy, start, reboot, handle an exit, stop, delete.

Each action runs inside the reconciler's per-app worker, so two actions never run on one
app at once (kopf's rule). Actions read the app row, call git and the runtime, and record
every transition (backend.apps.state) so the dashboard, the proxy's pages and emails see it.
Timeouts are applied here, not in the engines (JupyterHub's rule).

Pushes to a running app are handled by `supervisor/sources/updates.py` (in place, or a
zero-downtime redeploy), sleep by `supervisor/control/hibernation.py`; both use the helpers here.
Emails are queued in the same transaction as the transition that causes them
(`backend.platform.notifications`): over the memory limit, and crashed (after a crash loop, or when
a restart of a running app fails), each once per incident (the AppEvent).

Every write of an app's records goes through `AppRecords` (supervisor/control/app_records.py),
fenced by the leader lease; the runtime's start and stop are preceded by `check_fence`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import validation
from backend.accounts import oidc_secrets
from backend.apps import previews
from backend.apps import secrets as app_secrets
from backend.apps.log_files import app_log_path, build_log_path, mark_run_start
from backend.context import Context
from backend.errors import ValidationError
from backend.github import deploy as github_deploy
from models import (
    App,
    AppEvent,
    id_of,
    utcnow,
)
from supervisor.builds import records as builds
from supervisor.builds.records import BuildLog
from supervisor.control import exit_reasons, restart
from supervisor.control.app_records import AppRecords
from supervisor.control.health import HealthPaths, wait_for_streamlit
from supervisor.control.leader import Fenced
from supervisor.runtimes.base import (
    AppSpec,
    BuildError,
    EnvRef,
    EnvSpec,
    Instance,
    Runtime,
    StartError,
    Status,
)
from supervisor.sources import checkouts, git_auth, gitsync

log = logging.getLogger("supervisor.control.lifecycle")


class DeployError(Exception):
    """A deploy cannot go on; the message is for a person."""


@dataclass
class CrashRecord:
    """Recent crashes of one app, as stored in `App.crash_record` (JSON)."""

    times: list[float] = field(default_factory=list)  # wall-clock epoch seconds
    generation: int = 0
    commit: str = ""

    @classmethod
    def of(cls, app: App) -> CrashRecord:
        """The app's record; a fresh one when none is stored, it cannot be read, or it was
        counted for another restart generation or commit."""
        try:
            data = json.loads(app.crash_record or "{}")
            record = cls([float(t) for t in data.get("times", [])],
                         int(data.get("generation", 0)), str(data.get("commit", "")))
        except (ValueError, TypeError, AttributeError):
            record = cls()
        if (record.generation, record.commit) != (app.restart_generation, app.commit):
            return cls(generation=app.restart_generation, commit=app.commit)
        return record

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self))


class Lifecycle(AppRecords):
    """The actions, over the app's fenced records (AppRecords: transitions, events, the
    saved instance); `instances` is the reconciler's view of what runs."""

    def __init__(self, ctx: Context, runtime: Runtime,
                 on_change: Callable[[App | None], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ctx, runtime, on_change)
        self._clock = clock
        self._wall_clock = time.time  # crash times outlive this process: wall clock
        self.start_slots = restart.StartSlots(restart.start_limit(ctx.settings))
        self.health_paths = HealthPaths()  # which health path each instance's Streamlit has

    # Specs ------------------------------------------------------------------------------
    def app_spec(self, app: App, checkout: Path | None = None,
                  alongside: bool = False) -> AppSpec:
        app_id = id_of(app)
        secrets = self.app_dir(app_id) / "secrets.toml"
        return AppSpec(app_id=app_id, name=app.subdomain,
                       checkout=checkout or self.checkout_dir(app_id),
                       main_file=app.main_file, log_path=app_log_path(self.settings, app_id),
                       memory_limit_mb=self.memory_limit(app),
                       secrets_file=oidc_secrets.runtime_secrets(  # + [auth] for st.login
                           self.ctx, app_id, app.subdomain, secrets if secrets.exists() else None),
                       env_vars=app_secrets.runtime_env_vars(self.settings, app_id),
                       generation=app.restart_generation, alongside=alongside)

    def memory_limit(self, app: App) -> int:
        return app.memory_limit_mb or self.settings.memory_limit_mb

    def env_spec(self, app: App, checkout: Path | None = None) -> EnvSpec:
        """The app's dependency set: its chosen Python, else .python-version, else default;
        scoped to its workspace when `env_sharing` is "workspace"."""
        spec = EnvSpec.from_checkout(checkout or self.checkout_dir(id_of(app)), app.python_version,
                                     self.settings.default_streamlit, main_file=app.main_file)
        if not spec.python_version:
            spec = dataclasses.replace(spec, python_version=self.settings.default_python)
        if self.settings.env_sharing == "workspace":
            spec = dataclasses.replace(spec, scope=f"workspace-{app.workspace_id}")
        return spec

    # Deploy -----------------------------------------------------------------------------
    async def deploy(self, app_id: int) -> None:
        """Clone, build or reuse the environment, start, wait for health."""
        app = self.load(app_id)
        if app is None:
            return
        if app.state != "building":
            app = self.transition(app_id, "building", f"Cloning {app.branch} of {app.repo_url}")
            if app is None:
                return
        await self.stop_instance(app_id)
        blog = BuildLog(build_log_path(self.settings, app_id))
        build_id, commit = None, ""
        try:
            blog(f"Deploying {app.repo_url} (branch {app.branch}, main file {app.main_file}).")
            with git_auth.deploy_key_env(self.ctx, app_id) as key_env:  # private repos
                commit, tree = await asyncio.wait_for(gitsync.clone_tree(
                    app.repo_url, app.branch, self.app_dir(app_id), blog, key_env,
                    public_only=not self.settings.allow_local_repos),
                    self.settings.build_timeout)
            self.check_fence()  # the tree in use may be the new leader's by now
            checkouts.point_current(self.app_dir(app_id), tree)
            checkouts.remove_unused(self.app_dir(app_id))
            blog(f"Checked out commit {commit[:12]}.")
            self._check_main_file(app)
            spec = self.env_spec(app)
            build_id = self.record_build(app_id, commit, spec.dep_hash)
            self.transition(app_id, "building", "Building the environment", commit=commit)
            env = await asyncio.wait_for(self.runtime.ensure_env(spec, blog),
                                         self.settings.build_timeout)
            self.finish_build(build_id, "succeeded", reused=env.reused)
        except TimeoutError:
            self._fail_build(app_id, build_id, blog, commit, "The build took longer than "
                             f"{self.settings.build_timeout:.0f} s and was stopped.")
            return
        except (gitsync.GitError, BuildError, DeployError) as e:
            self._fail_build(app_id, build_id, blog, commit, str(e))
            return
        except Exception as e:  # never let one app kill the supervisor
            log.exception("app=%s build crashed", app_id)
            self._fail_build(app_id, build_id, blog, commit,
                             f"Internal error while building: {e}")
            return
        finally:
            blog.close()
        app = self.transition(app_id, "starting", "Starting the app", env_hash=env.dep_hash,
                              built_python=env.python_version,
                              last_deployed_at=utcnow(), last_deploy_error="")
        if app is not None:
            await self.start_and_wait(app, env)

    def _check_main_file(self, app: App) -> None:
        checkout = self.checkout_dir(id_of(app))
        try:
            main_file = validation.main_file_in_checkout(checkout, app.main_file)
        except ValidationError as e:
            raise DeployError(e.message) from e
        if not main_file.is_file():
            found = sorted(p.name for p in checkout.glob("*.py"))[:10]
            hint = f" Python files at the top level: {', '.join(found)}." if found else ""
            raise DeployError(f"The main file '{app.main_file}' does not exist on branch "
                              f"'{app.branch}'.{hint} Fix the path in the app's settings or "
                              "push the file.")

    def record_build(self, app_id: int, commit: str, dep_hash: str) -> int:
        """A `running` build row (fenced)."""
        return builds.record(self.ctx, app_id, commit, dep_hash, self.fence)

    def finish_build(self, build_id: int | None, status: str, error: str = "",
                     reused: bool = False) -> None:
        """A build's outcome (fenced)."""
        builds.finish(self.ctx, build_id, status, error, reused, self.fence)

    def _fail_build(self, app_id: int, build_id: int | None, blog: BuildLog, commit: str,
                    reason: str) -> None:
        """`build_failed`, remembering the commit (polling redeploys only a newer one)."""
        blog(f"Build failed: {reason}")
        self.finish_build(build_id, "failed", reason)
        remembered: dict[str, Any] = {"commit": commit} if commit else {}
        self.transition(app_id, "build_failed", reason, **remembered)

    # Start and health -------------------------------------------------------------------
    async def start_and_wait(self, app: App, env: EnvRef | None = None,
                             notify: bool = False) -> bool:
        """Start an instance (reusing the environment) and wait until it is healthy.
        `notify`: a failure to start emails the developers (a running app went down)."""
        app_id = id_of(app)
        try:
            if env is None:
                env = await asyncio.wait_for(
                    self.runtime.ensure_env(self.env_spec(app), lambda line: None),
                    self.settings.build_timeout)
            self.check_fence()
            mark_run_start(app_log_path(self.settings, app_id))  # crash reasons quote this run
            inst = await self.runtime.start(self.app_spec(app), env)
        except (BuildError, StartError, FileNotFoundError) as e:
            reason = f"The app could not start: {e}"
            self.transition(app_id, "crashed", reason,
                            notify=("crashed", {"details": reason}) if notify else None)
            return False
        try:
            self.save_instance(app_id, inst, checkouts.current_tree(self.app_dir(app_id)))
        except Fenced:
            await self.undo_unrecorded()
            raise
        status = await self.wait_healthy(inst)
        if status is None:
            self.transition(app_id, "running", "Serving")
            return True
        await self._stop_saved(app_id)
        if status.kind == "oom":
            self.over_limit(app)
        else:
            reason = self._exit_reason(app_id, status, start=True)
            self.transition(app_id, "crashed", reason,
                            notify=("crashed", {"details": reason}) if notify else None)
        return False

    def over_limit(self, app: App) -> None:
        """The instance was killed for memory: `over_limit` and one email (this incident)."""
        self.transition(id_of(app), "over_limit", self._oom_reason(app), notify=(
            "over_limit", {"limit_mb": str(self.memory_limit(app))}))

    async def wait_healthy(self, inst: Instance) -> Status | None:
        """None once the instance's Streamlit answers its health endpoint (`/_stcore/health`,
        or `/healthz` before Streamlit 1.18); else the Status that ended the wait."""
        base_url = f"http://{inst.address[0]}:{inst.address[1]}"
        last: list[Status] = []

        async def alive() -> bool:
            last[:] = [await self.runtime.poll(inst.app_id, inst.state)]
            return last[0].alive

        healthy = await wait_for_streamlit(base_url, alive, self.settings.health_timeout,
                                           self.health_paths, clock=self._clock)
        if healthy:
            return None
        return last[0] if healthy is False else Status("exited", None)

    def _oom_reason(self, app: App) -> str:
        return exit_reasons.oom_reason(self.memory_limit(app))

    def _exit_reason(self, app_id: int, status: Status, start: bool) -> str:
        app = self.load(app_id)
        url = self.settings.public_url(app.subdomain) if app is not None else ""
        return exit_reasons.exit_reason(self.ctx, app_id, url, status, start)

    # Running apps -----------------------------------------------------------------------
    async def reboot(self, app_id: int) -> None:
        app = self.transition(app_id, "starting", "Rebooting", crash_record="")
        if app is None:
            return
        await self.stop_instance(app_id)
        await self.start_and_wait(app)

    async def resume(self, app_id: int) -> None:
        """Start an app that is `starting` (the platform restarted, it woke from sleep, or a
        worker died mid-start) on its checkout and environment as they are: no clone, no
        build, at most `start_concurrency` at once (supervisor/control/restart.py). When
        either is missing or unusable, a full deploy instead; the build log says why."""
        app = self.load(app_id)
        if app is None or app.state != "starting":
            return
        await self.stop_instance(app_id)
        async with self.start_slots:
            app = self.load(app_id)  # stopped, deleted or rebooted while it waited
            if app is None or app.state != "starting" or app.desired_state != "running":
                return
            found = app
            env, missing = await restart.on_disk(
                self.checkout_dir(app_id), app.main_file, lambda: self.env_spec(found),
                self.runtime)
            if env is not None:
                app = self.transition(app_id, "starting", "Starting from its checkout and "
                                      "environment (no clone, no build)") or app
                await self.start_and_wait(app, env, notify=True)
                return
        log.warning("app=%s cannot start from disk: %s; deploying it again", app_id, missing)
        blog = BuildLog(build_log_path(self.settings, app_id))
        blog(f"The app could not start from what it has on disk: {missing}. Deploying it "
             "again (clone and build).")
        blog.close()
        if self.transition(app_id, "queued", f"Deploying again: {missing}") is not None:
            await self.deploy(app_id)

    async def handle_exit(self, app_id: int, status: Status) -> None:
        """A running instance is gone: over limit, or restart with backoff, or crashed after
        more crashes within `crash_window` than `crash_backoff` has delays."""
        app = self.load(app_id)
        if app is None:
            return
        await self._stop_saved(app_id)
        if status.kind == "oom":
            self.over_limit(app)
            return
        record = CrashRecord.of(app)
        now = self._wall_clock()
        window = self.settings.crash_window
        record.times = [t for t in record.times if 0 <= now - t < window] + [now]
        schedule = self.settings.crash_backoff_schedule
        attempt = len(record.times)
        if attempt > len(schedule):
            reason = (self._exit_reason(app_id, status, start=False)
                      + f"\nIt crashed {attempt} times within {window / 60:g} minutes; "
                      "reboot it after fixing the cause.")
            self.transition(app_id, "crashed", reason, notify=("crashed", {"details": reason}),
                            crash_record="")
            return
        delay = schedule[attempt - 1]
        app = self.transition(app_id, "starting", f"The app stopped unexpectedly; restart "
                              f"{attempt} of {len(schedule)} in {delay:g} s",
                              crash_record=record.dump())
        await asyncio.sleep(delay)  # backoff before the restart, not synchronisation
        app = self.load(app_id)  # stopped, deleted or rebooted meanwhile: the next pass acts
        if app is not None and app.state == "starting" and app.desired_state == "running":
            await self.start_and_wait(app, notify=True)

    async def stop_instance(self, app_id: int) -> None:
        await self._stop_saved(app_id)

    async def _stop_saved(self, app_id: int) -> None:
        inst = self.instances.get(app_id)
        state = inst.state if inst else self.saved_state(app_id)
        if state:
            self.check_fence()  # the saved instance may be the new leader's by now
            await self.runtime.stop(app_id, state)
        self.save_instance(app_id, None)

    async def stop(self, app_id: int) -> None:
        await self._stop_saved(app_id)
        self.transition(app_id, "stopped", "Stopped")

    async def delete(self, app_id: int) -> None:
        """Stop the instance, remove files, secrets and rows; events are kept."""
        await self._stop_saved(app_id)
        shutil.rmtree(self.settings.apps_path / str(app_id), ignore_errors=True)
        shutil.rmtree(self.settings.logs_path / str(app_id), ignore_errors=True)
        await asyncio.to_thread(previews.close_all, self.ctx, app_id)  # its previews go too
        try:  # remove the GitHub deploy key and webhook; retried by the GitHub refresh job
            await asyncio.to_thread(github_deploy.on_app_deleted, self.ctx, app_id)
        except Exception:  # GitHub being away must not block a delete
            log.warning("app=%s GitHub clean-up deferred", app_id, exc_info=True)
        with self._write() as s:
            app = s.get(App, app_id)
            exit_reasons.purge_app_rows(s, app_id)
            if app is not None:
                s.add(AppEvent(app_id=app_id, from_state=app.state, to_state="deleted",
                               reason="Deleted; instance, files and secrets removed"))
                s.delete(app)
        self._on_change(None)
        log.info("app=%s deleted", app_id)
