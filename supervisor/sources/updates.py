"""Pushes: what happens when an app's branch moves (found by webhook or by polling).

`Updater.sync(app_id)` runs in the app's worker (serialised with every other action on the
app). It asks the remote for the branch's commit and compares it with the deployed one:

- app not running (build_failed, crashed, over_limit, sleeping): queue a normal deploy of
  the new commit; a push is also how an app comes back after a fix.
- running, same dependency hash (`EnvSpec.dep_hash` of the new tree equals the app's
  `env_hash`): **in place**. The new commit is cloned into a temporary tree and its changed
  files are moved into the live tree one `os.replace` at a time (`supervisor/sources/checkouts.py`);
  no restart; Streamlit's file watcher reruns connected sessions. AppEvent "Updated to
  abc1234 in place".
- running, dependencies changed: **zero-downtime redeploy**. The new tree stays where it
  was cloned (`src-<commit>-…`), the environment is built while the old instance keeps
  serving (state stays `running`; AppEvent "Building the new environment …"), a second
  instance starts beside the old one (`AppSpec.alongside`), and once it is healthy the app
  row gets the new instance (the route switches), the `src` pointer moves, and the old
  instance is stopped after `redeploy_drain` seconds for requests already sent to it.
- any failure (clone, build, the main file missing, the new instance not healthy): the old
  version keeps serving, `App.last_deploy_error` says why, an AppEvent records it, and the
  developers get one email per failed commit (dedupe key `deploy_failed:<app>:<commit>`,
  so a supervisor that dies and retries the same commit never mails twice). A failed commit
  is not retried until something new is pushed (`builds.commit_failed`).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from backend import validation
from backend.apps import failure_reports
from backend.apps.log_files import app_log_path, build_log_path
from backend.errors import ValidationError
from models import App, id_of, utcnow
from supervisor.builds import records as builds
from supervisor.builds.records import BuildLog
from supervisor.control.lifecycle import Lifecycle
from supervisor.runtimes.base import BuildError, EnvSpec, StartError, Status
from supervisor.sources import checkouts, git_auth, gitsync

log = logging.getLogger("supervisor.sources.updates")
REDEPLOY_STATES = frozenset({"build_failed", "crashed", "over_limit", "sleeping"})


class UpdateFailed(Exception):
    """The pushed version cannot replace the serving one; the message is for a person."""


class Updater:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lc = lifecycle
        self.ctx = lifecycle.ctx
        self.settings = lifecycle.settings
        self.runtime = lifecycle.runtime

    async def sync(self, app_id: int, source: str = "poll") -> None:
        app = self.lc.load(app_id)
        if app is None or app.desired_state != "running":
            return
        try:
            with git_auth.deploy_key_env(self.ctx, app_id) as key_env:
                remote = await gitsync.remote_branch_commit(
                    app.repo_url, app.branch, key_env,
                    public_only=not self.settings.allow_local_repos)
        except gitsync.GitError as e:
            log.warning("app=%s cannot read the branch: %s", app_id, str(e).splitlines()[-1:])
            return
        if remote is None or remote == app.commit or \
                builds.commit_failed(self.ctx, app_id, remote):
            return
        log.info("app=%s push source=%s commit=%s (serving %s)", app_id, source, remote[:12],
                 app.commit[:12])
        if app.state in REDEPLOY_STATES:
            self.lc.transition(app_id, "queued", f"New commit {remote[:7]} pushed; "
                               "deploying it")
        elif app.state == "running":
            await self.update_running(app)

    async def update_running(self, app: App) -> None:
        app_dir = self.lc.app_dir(id_of(app))
        live = checkouts.current_tree(app_dir)
        blog = BuildLog(build_log_path(self.settings, id_of(app)))
        commit, tree, build_id = "", None, None
        try:
            blog(f"New commit on {app.branch}; fetching it.")
            with git_auth.deploy_key_env(self.ctx, id_of(app)) as key_env:
                commit, tree = await asyncio.wait_for(
                    gitsync.clone_tree(app.repo_url, app.branch, app_dir, blog, key_env,
                                       public_only=not self.settings.allow_local_repos),
                    self.settings.build_timeout)
            if commit == app.commit:
                return
            spec = self.lc.env_spec(app, tree)
            build_id = self.lc.record_build(id_of(app), commit, spec.dep_hash)
            try:
                main_file = validation.main_file_in_checkout(tree, app.main_file)
            except ValidationError as e:
                raise UpdateFailed(e.message) from None
            if not main_file.is_file():
                raise UpdateFailed(f"The main file '{app.main_file}' does not exist in commit "
                                   f"{commit[:12]}.")
            if spec.dep_hash == app.env_hash and live is not None:
                await self._in_place(app, live, tree, commit, blog)
                self.lc.finish_build(build_id, "succeeded", reused=True)
            else:
                await self._redeploy(app, tree, commit, spec, blog)
                self.lc.finish_build(build_id, "succeeded")
                tree = None  # now the live tree
        except TimeoutError:
            self._failed(app, commit, build_id, blog, "The build took longer than "
                         f"{self.settings.build_timeout:.0f} s and was stopped.")
        except gitsync.GitError as e:
            if not commit:  # the fetch failed: try again at the next push or poll
                blog(f"Fetching the new commit failed: {e}")
                log.warning("app=%s fetch failed: %s", id_of(app), str(e).splitlines()[-1:])
            else:
                self._failed(app, commit, build_id, blog, str(e))
        except (BuildError, StartError, UpdateFailed) as e:
            self._failed(app, commit, build_id, blog, str(e))
        except Exception as e:  # never let one app kill the supervisor
            log.exception("app=%s update crashed", id_of(app))
            self._failed(app, commit, build_id, blog, f"Internal error while updating: {e}")
        finally:
            blog.close()
            if tree is not None:
                shutil.rmtree(tree, ignore_errors=True)

    async def _in_place(self, app: App, live: Path, tree: Path, commit: str,
                        blog: BuildLog) -> None:
        old_files = await gitsync.tracked_files(live)
        new_files = await gitsync.tracked_files(tree)
        protect = frozenset({".streamlit/secrets.toml"}) \
            if (self.lc.app_dir(id_of(app)) / "secrets.toml").exists() else frozenset()
        self.lc.check_fence()  # a fenced (former) leader must not rewrite the live files
        changed, removed = await asyncio.to_thread(
            checkouts.sync_in_place, live, tree, old_files, new_files, protect, app.main_file)
        blog(f"Updated to {commit[:12]} in place: {changed} files changed, {removed} removed; "
             "no restart.")
        self.lc.note(id_of(app), f"Updated to {commit[:7]} in place ({changed} changed, "
                     f"{removed} removed files; same dependencies, no restart)",
                     state_reason="Serving", commit=commit, last_deployed_at=utcnow(),
                     last_deploy_error="")

    async def _redeploy(self, app: App, tree: Path, commit: str, spec: EnvSpec,
                        blog: BuildLog) -> None:
        lc = self.lc
        blog(f"Commit {commit[:12]} changes the dependencies: building a new environment "
             f"while {app.commit[:12]} keeps serving.")
        lc.note(id_of(app), f"Building the new environment for {commit[:7]} (dependencies "
                f"changed); {app.commit[:7]} keeps serving",
                state_reason=f"Serving; building the new environment for {commit[:7]}")
        env = await asyncio.wait_for(self.runtime.ensure_env(spec, blog),
                                     self.settings.build_timeout)
        blog("Starting the new version beside the serving one.")
        fresh = lc.load(id_of(app)) or app  # the reboot counter may have moved
        log_offset = failure_reports.file_size(app_log_path(self.settings, id_of(app)))
        new = await self.runtime.start(lc.app_spec(fresh, tree, alongside=True), env)
        status = await lc.wait_healthy(new)
        if status is not None:
            await self.runtime.stop(id_of(app), new.state)
            raise UpdateFailed(self._start_failure(app, spec, status, log_offset))
        current = lc.load(id_of(app))
        if current is None or current.desired_state != "running" or current.state != "running":
            await self.runtime.stop(id_of(app), new.state)  # stopped or deleted meanwhile
            raise UpdateFailed("The app was stopped or deleted during the update.")
        old = lc.instances.get(id_of(app))
        old_state = old.state if old else lc.saved_state(id_of(app))
        # The switch: the row names the new instance (the route follows), then the pointer.
        lc.save_instance(id_of(app), new, tree, commit=commit, env_hash=env.dep_hash,
                         built_python=env.python_version,
                         last_deployed_at=utcnow(), last_deploy_error="")
        checkouts.point_current(lc.app_dir(id_of(app)), tree)
        lc.note(id_of(app), f"Redeployed {commit[:7]} with new dependencies; no downtime",
                state_reason="Serving")
        blog(f"Switched to {commit[:12]}; stopping the old instance.")
        await asyncio.sleep(self.settings.redeploy_drain)  # requests in flight to the old one
        if old_state:
            await self.runtime.stop(id_of(app), old_state)
        checkouts.remove_unused(lc.app_dir(id_of(app)))

    def _start_failure(self, app: App, spec: EnvSpec, status: Status, log_offset: int) -> str:
        """Why the new version did not start, from what it logged (the app log's lines
        since its start, beside the serving instance's): phase, cause, fix, the full log."""
        code = "" if status.exit_code is None else f", exit code {status.exit_code}"
        logged = failure_reports.app_log_since(self.ctx, id_of(app), log_offset,
                                               self.settings.public_url(app.subdomain))
        report = failure_reports.explain_app_log(
            self.settings, id_of(app), logged, self.settings.public_url(app.subdomain),
            timed_out=status.exit_code is None and status.kind != "oom",
            dependency_file=spec.dependency_file or "requirements.txt",
            main_file=app.main_file)
        return f"The new version did not start ({status.kind}{code}). {report.message()}"

    def _failed(self, app: App, commit: str, build_id: int | None, blog: BuildLog,
                reason: str) -> None:
        blog(f"Update failed: {reason}")
        if build_id is None and commit:  # refused before its build began (its files)
            build_id = self.lc.record_build(id_of(app), commit, "")  # so polling skips it
        self.lc.finish_build(build_id, "failed", reason)
        label = commit[:7] or "the new commit"
        serving = app.commit[:7]
        self.lc.note(
            id_of(app), f"The new version {label} could not be deployed; {serving} keeps "
            f"serving. {reason}", state_reason=f"Serving {serving}; the last deploy failed",
            notify=("deploy_failed", commit or "unknown",
                    {"commit": commit, "serving": app.commit, "details": reason})
            if commit else None,
            last_deploy_error=reason)
