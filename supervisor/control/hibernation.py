"""Hibernation: running apps go to sleep by their sleep policy, sleeping apps with a
schedule wake up when their hours begin.

Each app's policy (`backend.apps.sleep_policy`, stored by `backend.apps.sleep_settings`):
`default` (the installation's: Community Cloud's `hibernate_after_days` without a view,
public apps only unless `hibernate_private_apps`, or the operator's
`sleep_default_policy`), `idle` (minutes, hours or days without a view), `never`, or a
weekly `schedule`. The idle clock of an app starts at its last view (`App.last_viewed_at`,
which the proxy sets) or its last deploy or push (`last_deployed_at`: a push, even an
empty commit, resets it), whichever is newer; waking an app counts as a view.

- before a sleep the policy warns about (the installation's day 5 of 7, a day before an
  idle period of two days or more) the developers get one email naming the policy and
  saying how to keep the app awake; its dedupe key carries the start of the idle period,
  so a new period warns again and one period warns once;
- when the policy's time comes, the app's worker stops the instance and the app goes to
  `sleeping`; checkout and environment are kept, so waking is a plain start;
- a sleeping app whose schedule's window has begun goes to `starting` (once per window:
  `AppSleepPolicy.scheduled_wake_at`, also set for an app that was awake when its window
  began, so putting it to sleep by hand within the window lasts), which the reconcile loop
  starts from disk.

Everything here takes `now`, so tests move time instead of waiting: `plan()` is pure,
`run_hibernation_pass(ctx, now)` does the warnings and the scheduled wakes and returns the
apps to put to sleep, `hibernate()` is the worker's action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select

from backend.apps import sleep_policy as sp
from backend.apps import sleep_settings
from backend.apps import state as appstate
from backend.context import Context
from backend.platform import notifications
from backend.platform.settings import Settings
from models import App, AppEvent, AppSleepPolicy, id_of, session_scope
from supervisor.control.lifecycle import Lifecycle

log = logging.getLogger("supervisor.control.hibernation")
WARNING_PREFIX = "Sleep warning:"
Policies = dict[int, sp.Policy]


@dataclass
class Plan:
    warn: list[int] = field(default_factory=list)
    sleep: list[int] = field(default_factory=list)
    wake: list[int] = field(default_factory=list)  # sleeping apps whose hours began
    # Running apps whose hours began while they were awake: their window counts as woken,
    # so a person's "sleep now" in it is not undone by the next pass.
    awake: list[int] = field(default_factory=list)


def idle_since(app: App) -> datetime:
    """When the app's idle clock started (`backend.apps.sleep_policy.idle_since`)."""
    return sp.idle_since(app)


def _sleep_at(app: App, policy: sp.Policy, now: datetime, settings: Settings
              ) -> datetime | None:
    return sleep_settings.next_sleep(app, policy, settings, now)


def plan(apps: list[App], now: datetime, settings: Settings,
         policies: Policies | None = None, last_wakes: dict[int, datetime] | None = None
         ) -> Plan:
    """Which apps get the warning, go to sleep or wake up at `now` (pure); apps missing
    from `policies` have the `default` policy."""
    out = Plan()
    for app in apps:
        app_id = id_of(app)
        policy = (policies or {}).get(app_id, sp.Policy())
        window_began = sp.scheduled_wake(policy, settings, now,
                                         (last_wakes or {}).get(app_id)) is not None
        if app.state == "sleeping" and app.desired_state == "running":
            if window_began:
                out.wake.append(app_id)
            continue
        if window_began:
            out.awake.append(app_id)
        at = _sleep_at(app, policy, now, settings)
        if at is None:
            continue
        if now >= at:
            out.sleep.append(app_id)
            continue
        warn = sp.warn_at(policy, settings, idle_since(app), at)
        if warn is not None and now >= warn:
            out.warn.append(app_id)
    return out


def run_hibernation_pass(ctx: Context, now: datetime) -> list[int]:
    """Send due warnings (each once per idle period) and wake scheduled apps; return the
    apps to put to sleep."""
    settings = ctx.settings
    with session_scope(ctx.engine) as s:
        apps = list(s.exec(select(App).where(
            col(App.state).in_(("running", "sleeping")))).all())
        policies = sleep_settings.policies(s, [id_of(a) for a in apps])
        last_wakes = {r.app_id: r.scheduled_wake_at for r in s.exec(select(AppSleepPolicy))
                      if r.scheduled_wake_at is not None}
    due = plan(apps, now, settings, policies, last_wakes)
    for app_id in due.warn:
        _warn(ctx, app_id, policies[app_id], now)
    for app_id in due.wake:
        _wake_for_schedule(ctx, app_id, policies[app_id], now)
    for app_id in due.awake:
        start = sp.scheduled_wake(policies[app_id], settings, now, None)
        if start is not None:
            sleep_settings.mark_scheduled_wake(ctx, app_id, start)
    return due.sleep


def _wake_for_schedule(ctx: Context, app_id: int, policy: sp.Policy, now: datetime) -> None:
    window = sp.scheduled_wake(policy, ctx.settings, now, None)
    if window is None:
        return
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None or app.state != "sleeping" or app.desired_state != "running":
            return
        app.last_viewed_at = now  # its hours began: the idle clock starts again
        appstate.transition(s, app, "starting", "Waking up: its sleep policy's hours "
                            f"began ({sp.describe(policy, ctx.settings)})")
    sleep_settings.mark_scheduled_wake(ctx, app_id, window)
    log.info("app=%s woken for its schedule's window at %s", app_id, window.isoformat())


def _warn(ctx: Context, app_id: int, policy: sp.Policy, now: datetime) -> None:
    settings = ctx.settings
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        sleep_at = _sleep_at(app, policy, now, settings) if app is not None else None
        if app is None or sleep_at is None or now >= sleep_at:
            return
        since = idle_since(app)
        warned = s.exec(select(AppEvent.id).where(
            col(AppEvent.app_id) == app_id, col(AppEvent.time) >= since,
            col(AppEvent.reason).startswith(WARNING_PREFIX))).first()
        if warned is not None:
            return
        idle_days = (now - since).total_seconds() / 86400
        described = sp.describe(policy, settings)
        s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state, time=now,
                       reason=f"{WARNING_PREFIX} no views for {idle_days:.0f} days; the app "
                       f"goes to sleep at {sleep_at:%Y-%m-%d %H:%M} UTC ({described}) "
                       "unless it is viewed or a commit is pushed."))
        notifications.queue(s, settings, app, "sleep_warning", since.isoformat(),
                            idle_days=f"{idle_days:.0f}",
                            sleep_days=f"{(sleep_at - since).total_seconds() / 86400:g}",
                            sleep_at=f"{sleep_at:%Y-%m-%d %H:%M} UTC", policy=described)
    log.info("app=%s warned: sleeps at %s", app_id, sleep_at.isoformat())


def _policy_of(lc: Lifecycle, app_id: int) -> sp.Policy:
    with session_scope(lc.ctx.engine) as s:
        return sleep_settings.policies(s, [app_id])[app_id]


def _sleep_reason(policy: sp.Policy, settings: Settings) -> str:
    e = sp.effective(policy, settings)
    if e.kind == "default":
        return (f"This app has gone to sleep after {settings.hibernate_after_days:g} days "
                "without a view, to save resources. Anyone can wake it up; it starts again "
                "in seconds.")
    return (f"This app has gone to sleep by its sleep policy ({sp.describe(policy, settings)}"
            "), to save resources. A visit wakes it up; it starts again in seconds.")


async def hibernate(lc: Lifecycle, app_id: int, now: datetime) -> None:
    """The worker's action: check again (a view or push may have come), stop, sleep."""
    app = lc.load(app_id)
    if app is None:
        return
    policy = _policy_of(lc, app_id)
    if app.id not in plan([app], now, lc.settings, {app_id: policy}).sleep:
        return
    await lc.stop_instance(app_id)
    lc.transition(app_id, "sleeping", _sleep_reason(policy, lc.settings))


async def sleep_now(lc: Lifecycle, app_id: int, who: str) -> None:
    """The worker's action for a person's "put to sleep now": stop and sleep a running app,
    whatever its idle time and visibility."""
    app = lc.load(app_id)
    if app is None or app.state != "running" or app.desired_state != "running":
        return
    await lc.stop_instance(app_id)
    lc.transition(app_id, "sleeping", f"This app was put to sleep by {who or 'its developer'} "
                  "to save resources. It starts again in seconds when woken up.")
