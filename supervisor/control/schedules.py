"""Scheduled jobs of the supervisor (apscheduler's AsyncIOScheduler, on the supervisor's
event loop):

- `git-poll` every `git_poll_interval` s (jittered by 10%): `git ls-remote` of each app's
  branch, at most `git_poll_concurrency` at once; a branch that moved away from the
  deployed commit asks the reconciler to sync the app, so any git host works without
  webhooks. Apps whose new commit already failed to build are skipped (builds.py).
- `hibernation` every `hibernation_interval` s: day-5 warnings, day-7 sleep
  (`supervisor/control/hibernation.py`).
- `email` every `email_interval` s: the outbox sender (`supervisor/mailer.py`).
- `usage-sample` every `usage_sample_interval` s: memory and CPU of each running app
  (`supervisor/control/usage_sampler.py`); `usage-retention` daily deletes samples older than
  `usage_retention_days` (`backend.analytics.usage.prune_samples`).

Every job reads the time from `now` (injectable), so tests can move the clock; each job
runs at most once at a time (`max_instances=1`, missed runs coalesced).

With several supervisors (supervisor/control/leader.py) every one schedules the jobs, but a job
does nothing unless its supervisor leads at that moment (`leader.is_leader`); what a job
asks of the reconciler is an `app_request` row, so a pass cut short by the leader's death
loses nothing: the rows wait for the next leader, and a repeated pass is harmless (warnings
and emails are deduplicated).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlmodel import col, select

from backend.analytics import store as analytics_store
from backend.analytics import usage
from backend.context import Context
from backend.github import previews as github_previews
from backend.github import sync as github_sync
from models import App, id_of, session_scope, utcnow
from supervisor import mailer
from supervisor.builds import records as builds
from supervisor.control import hibernation, usage_sampler
from supervisor.control.leader import Leadership
from supervisor.control.reconciler import Reconciler
from supervisor.control.requests import load_requests
from supervisor.sources import git_auth, gitsync

log = logging.getLogger("supervisor.control.schedules")
POLLED_STATES = ("running", "sleeping", "build_failed", "crashed", "over_limit")


class Schedules:
    def __init__(self, ctx: Context, reconciler: Reconciler,
                 now: Callable[[], datetime] = utcnow, leader: Leadership | None = None
                 ) -> None:
        self.ctx = ctx
        self.leader = leader
        self.settings = ctx.settings
        self.reconciler = reconciler
        self.now = now
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    def start(self) -> None:
        s = self.settings
        first = datetime.now(UTC) + timedelta(seconds=1)
        jobs = [("git-poll", self.poll_git, s.git_poll_interval),
                ("hibernation", self.hibernation_pass, s.hibernation_interval),
                ("email", self.email_pass, s.email_interval),
                ("github-refresh", self.github_refresh, s.github_refresh_minutes * 60),
                ("preview-status", self.preview_status, 15),
                ("analytics-retention", self.analytics_retention,
                 86400 if s.analytics_retention_days > 0 else 0),
                ("usage-sample", self.usage_sample, s.usage_sample_interval),
                ("usage-retention", self.usage_retention,
                 86400 if s.usage_retention_days > 0 else 0)]
        for name, func, interval in jobs:
            if interval <= 0:
                continue
            jitter = interval * 0.1 if name == "git-poll" else None
            self.scheduler.add_job(self._when_leading(func),
                                   IntervalTrigger(seconds=interval, jitter=jitter),
                                   id=name, name=name, max_instances=1, coalesce=True,
                                   misfire_grace_time=max(int(interval), 1),
                                   next_run_time=first)
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _when_leading(self, func: Callable[[], Awaitable[object]]
                      ) -> Callable[[], Awaitable[object]]:
        async def job() -> object:
            if self.leader is not None and not self.leader.is_leader:
                return None
            return await func()
        job.__name__ = func.__name__
        return job

    # Jobs ------------------------------------------------------------------------------
    async def poll_git(self) -> list[int]:
        """Check every polled app's branch; returns the apps a push was found for."""
        with session_scope(self.ctx.engine) as s:
            apps = list(s.exec(select(App).where(
                col(App.desired_state) == "running",
                col(App.state).in_(POLLED_STATES))).all())
        gate = asyncio.Semaphore(max(self.settings.git_poll_concurrency, 1))

        async def check(app: App) -> int | None:
            app_id = id_of(app)
            async with gate:
                try:
                    with git_auth.deploy_key_env(self.ctx, app_id) as key_env:
                        remote = await asyncio.wait_for(gitsync.remote_branch_commit(
                            app.repo_url, app.branch, key_env,
                            public_only=not self.settings.allow_local_repos), 60)
                except (TimeoutError, gitsync.GitError) as e:
                    log.debug("app=%s poll failed: %s", app_id, e)
                    return None
            if not remote or remote == app.commit:
                return None
            if await asyncio.to_thread(builds.commit_failed, self.ctx, app_id, remote):
                return None
            self.reconciler.push_detected(app_id, "poll")
            return app_id

        found = await asyncio.gather(*(check(a) for a in apps))
        return [a for a in found if a is not None]

    async def hibernation_pass(self) -> list[int]:
        now = self.now()
        due = await asyncio.to_thread(hibernation.run_hibernation_pass, self.ctx, now)
        asked = await asyncio.to_thread(load_requests, self.ctx)
        for app_id in due:
            if "sleep" not in asked.get(app_id, {}):  # not again while one waits
                self.reconciler.request(app_id, "sleep", now)
        return due

    async def email_pass(self) -> int:
        try:
            return await mailer.send_pending(self.ctx, self.now())
        except Exception:  # a bad pass must not stop later ones
            log.exception("email pass failed")
            return 0

    async def github_refresh(self) -> None:
        """Workspaces, roles and deployed repositories from GitHub (and deferred clean-ups)."""
        try:
            await asyncio.to_thread(github_sync.refresh_all, self.ctx, self.now())
        except Exception:  # a bad pass must not stop later ones
            log.exception("GitHub refresh failed")

    async def preview_status(self) -> None:
        """Tell pull requests how their preview apps are doing (commit statuses)."""
        try:
            await asyncio.to_thread(github_previews.report_states, self.ctx)
        except Exception:  # a bad pass must not stop later ones
            log.exception("preview status pass failed")

    async def analytics_retention(self) -> None:
        try:
            await asyncio.to_thread(analytics_store.prune_views, self.ctx, self.now())
        except Exception:  # a bad pass must not stop later ones
            log.exception("analytics prune failed")

    async def usage_sample(self) -> int:
        lifecycle = self.reconciler.lifecycle
        try:
            return await usage_sampler.sample_once(self.ctx, lifecycle.runtime,
                                                   lifecycle.instances, self.now())
        except Exception:  # a bad pass must not stop later ones
            log.exception("usage sample failed")
            return 0

    async def usage_retention(self) -> None:
        try:
            await asyncio.to_thread(usage.prune_samples, self.ctx, self.now())
        except Exception:  # a bad pass must not stop later ones
            log.exception("usage prune failed")
