"""Hibernation: public apps nobody viewed for `hibernate_after_days` go to sleep.

The clock of an app starts at its last view (`App.last_viewed_at`, which the proxy sets)
or its last deploy or push (`last_deployed_at`: a push, even an empty commit, resets it),
whichever is newer (its creation when it has neither). Waking an app
(`backend.apps.service.wake_app`) counts as a view.

- after `hibernate_warn_after_days` of idling, the developers get one email saying how to
  keep the app awake (visit it, or push a commit); its dedupe key carries the start of
  the idle period, so a new period warns again and one period warns once;
- after `hibernate_after_days`, the app's worker stops the instance and the app goes to
  `sleeping`; checkout and environment are kept, so waking is a plain start.

Private apps never sleep unless `hibernate_private_apps`. Everything here takes `now`, so
tests move time instead of waiting: `plan()` is pure, `run_hibernation_pass(ctx, now)` does
the warnings and returns the apps to put to sleep, `hibernate()` is the worker's action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from backend.context import Context
from backend.platform import notifications
from backend.platform.settings import Settings
from models import App, AppEvent, id_of, session_scope
from supervisor.control.lifecycle import Lifecycle

log = logging.getLogger("supervisor.control.hibernation")
WARNING_PREFIX = "Sleep warning:"


@dataclass
class Plan:
    warn: list[int] = field(default_factory=list)
    sleep: list[int] = field(default_factory=list)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def idle_since(app: App) -> datetime:
    """When the app's idle clock started: its last view or last deploy or push, whichever
    is newer; its creation when it has neither."""
    times = [t for t in (app.last_viewed_at, app.last_deployed_at) if t] or [app.created_at]
    return max(_aware(t) for t in times)


def may_sleep(app: App, settings: Settings) -> bool:
    return (settings.hibernate_after_days > 0 and app.state == "running"
            and app.desired_state == "running"
            and (app.visibility == "public" or settings.hibernate_private_apps))


def plan(apps: list[App], now: datetime, settings: Settings) -> Plan:
    """Which apps get the warning and which go to sleep at `now` (pure)."""
    sleep_after = timedelta(days=settings.hibernate_after_days)
    warn_after = timedelta(days=settings.hibernate_warn_after_days)
    out = Plan()
    for app in apps:
        if not may_sleep(app, settings):
            continue
        idle = now - idle_since(app)
        if idle >= sleep_after:
            out.sleep.append(id_of(app))
        elif settings.hibernate_warn_after_days > 0 and idle >= warn_after:
            out.warn.append(id_of(app))
    return out


def run_hibernation_pass(ctx: Context, now: datetime) -> list[int]:
    """Send due warnings (each once per idle period); return the apps to put to sleep."""
    settings = ctx.settings
    with session_scope(ctx.engine) as s:
        apps = list(s.exec(select(App).where(App.state == "running")).all())
    due = plan(apps, now, settings)
    for app_id in due.warn:
        _warn(ctx, app_id, now)
    return due.sleep


def _warn(ctx: Context, app_id: int, now: datetime) -> None:
    settings = ctx.settings
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None or not may_sleep(app, settings):
            return
        since = idle_since(app)
        warned = s.exec(select(AppEvent.id).where(
            col(AppEvent.app_id) == app_id, col(AppEvent.time) >= since,
            col(AppEvent.reason).startswith(WARNING_PREFIX))).first()
        if warned is not None:
            return
        sleep_at = since + timedelta(days=settings.hibernate_after_days)
        idle_days = (now - since).total_seconds() / 86400
        s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state, time=now,
                       reason=f"{WARNING_PREFIX} no views for {idle_days:.0f} days; the app "
                       f"goes to sleep at {sleep_at:%Y-%m-%d %H:%M} UTC unless it is viewed "
                       "or a commit is pushed."))
        notifications.queue(s, settings, app, "sleep_warning", since.isoformat(),
                            idle_days=f"{idle_days:.0f}",
                            sleep_days=f"{settings.hibernate_after_days:g}",
                            sleep_at=f"{sleep_at:%Y-%m-%d %H:%M} UTC")
    log.info("app=%s warned: sleeps at %s", app_id, sleep_at.isoformat())


async def hibernate(lc: Lifecycle, app_id: int, now: datetime) -> None:
    """The worker's action: check again (a view or push may have come), stop, sleep."""
    app = lc.load(app_id)
    if app is None or app.id not in plan([app], now, lc.settings).sleep:
        return
    days = lc.settings.hibernate_after_days
    await lc.stop_instance(app_id)
    lc.transition(app_id, "sleeping",
                  f"This app has gone to sleep after {days:g} days without a view, to save "
                  "resources. Anyone can wake it up; it starts again in seconds.")


async def sleep_now(lc: Lifecycle, app_id: int, who: str) -> None:
    """The worker's action for a person's "put to sleep now": stop and sleep a running app,
    whatever its idle time and visibility."""
    app = lc.load(app_id)
    if app is None or app.state != "running" or app.desired_state != "running":
        return
    await lc.stop_instance(app_id)
    lc.transition(app_id, "sleeping", f"This app was put to sleep by {who or 'its developer'} "
                  "to save resources. It starts again in seconds when woken up.")
