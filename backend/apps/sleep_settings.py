"""Reading and changing an app's sleep policy (the rules: `backend.apps.sleep_policy`).

Who may: anyone who can see the app reads its policy and when it next sleeps; its
developers (workspace role developer or admin) and site admins change it, within the
operator's bounds (`sleep_min_idle_minutes`, `sleep_never_allowed`,
`sleep_never_max_per_workspace`). Every refusal is a `ValidationError` on the field
`policy` that names the bound and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from backend.apps import sleep_policy as sp
from backend.apps.service import load_app_for
from backend.context import Context
from backend.errors import ValidationError
from backend.workspaces import has_role
from models import App, AppEvent, AppSleepPolicy, User, id_of, session_scope, utcnow


@dataclass(frozen=True)
class SleepPolicyView:
    """An app's policy as pages and the API show it."""

    app_id: int
    kind: str
    policy: str  # the text form, e.g. "idle 12h"
    wake_on_visit: bool
    description: str  # e.g. "asleep after 12 hours without a viewer"
    state: str
    next_sleep_at: datetime | None  # None: it stays awake (or is not running)
    next_sleep: str  # the same in words
    can_manage: bool


def to_policy(row: AppSleepPolicy | None) -> sp.Policy:
    if row is None:
        return sp.Policy()
    days = tuple(int(d) for d in row.days.split(",") if d.strip())
    return sp.Policy(row.kind, row.idle_minutes, days, row.start_minute, row.end_minute,
                     row.timezone, row.wake_on_visit)


def policies(session: Session, app_ids: Iterable[int]) -> dict[int, sp.Policy]:
    """Each app's policy (`default` for apps without a row)."""
    ids = list(app_ids)
    rows = session.exec(select(AppSleepPolicy).where(col(AppSleepPolicy.app_id).in_(ids))
                        ).all() if ids else []
    found = {r.app_id: to_policy(r) for r in rows}
    return {i: found.get(i, sp.Policy()) for i in ids}


def next_sleep(app: App, policy: sp.Policy, settings: object, now: datetime
               ) -> datetime | None:
    """When the running app goes to sleep under `policy` (None: it stays awake)."""
    if app.state != "running" or app.desired_state != "running":
        return None
    return sp.sleep_at(policy, settings, sp.idle_since(app), now,
                       private=app.visibility != "public")


def next_sleep_text(app: App, when: datetime | None, now: datetime) -> str:
    if app.state == "sleeping":
        return "asleep now"
    if app.state != "running":
        return f"not running ({app.state.replace('_', ' ')})"
    if when is None:
        return "stays awake"
    if when <= now:
        return "goes to sleep at the next check"
    return f"goes to sleep at {when:%Y-%m-%d %H:%M} UTC unless someone views it"


def _view(ctx: Context, app: App, policy: sp.Policy, can_manage: bool,
          now: datetime) -> SleepPolicyView:
    when = next_sleep(app, policy, ctx.settings, now)
    return SleepPolicyView(
        app_id=id_of(app), kind=policy.kind, policy=sp.spec(policy),
        wake_on_visit=policy.wake_on_visit, description=sp.describe(policy, ctx.settings),
        state=app.state, next_sleep_at=when, next_sleep=next_sleep_text(app, when, now),
        can_manage=can_manage)


def get_policy(ctx: Context, user: User, app_id: int,
               now: datetime | None = None) -> SleepPolicyView:
    """The app's policy and when it next sleeps (anyone who can see the app)."""
    now = now or utcnow()
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "viewer", "view this app")
        can_manage = has_role(s, user, app.workspace_id, "developer")
        return _view(ctx, app, policies(s, [app_id])[app_id], can_manage, now)


def _check_never_cap(ctx: Context, s: Session, app: App) -> None:
    cap = ctx.settings.sleep_never_max_per_workspace
    if cap <= 0:
        return
    count = s.exec(select(func.count()).select_from(AppSleepPolicy).join(
        App, col(App.id) == col(AppSleepPolicy.app_id)).where(
        col(AppSleepPolicy.kind) == "never", col(App.workspace_id) == app.workspace_id,
        col(App.desired_state) != "deleted", col(App.id) != app.id)).one()
    if count >= cap:
        raise ValidationError(sp.FIELD, f"This workspace has {count} app"
                              f"{'' if count == 1 else 's'} that never sleep, the most this "
                              f"server allows ({cap}); give one of them another policy "
                              "first, or choose an idle period or a schedule.")


def set_policy(ctx: Context, user: User, app_id: int, text: str,
               wake_on_visit: bool | None = None, now: datetime | None = None
               ) -> SleepPolicyView:
    """Give the app the policy written as `text` (`wake_on_visit` None keeps the app's
    current choice); its developers and site admins, within the operator's bounds."""
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "change this app's sleep policy")
        row = s.get(AppSleepPolicy, app_id)
        keep = row.wake_on_visit if row is not None else False
        policy = sp.validate(sp.parse(text, keep if wake_on_visit is None else wake_on_visit),
                             ctx.settings)
        if policy.kind == "never" and to_policy(row).kind != "never":
            _check_never_cap(ctx, s, app)
        row = row or AppSleepPolicy(app_id=app_id)
        row.kind, row.idle_minutes = policy.kind, policy.idle_minutes
        row.days = ",".join(str(d) for d in policy.days)
        row.start_minute, row.end_minute = policy.start_minute, policy.end_minute
        row.timezone, row.wake_on_visit = policy.timezone, policy.wake_on_visit
        row.updated_at, row.updated_by = utcnow(), user.username
        s.add(row)
        visits = "a visit wakes it" if policy.wake_on_visit else \
            "a visit shows the wake-up button"
        s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state,
                       reason=f"Sleep policy set to {sp.spec(policy)} ({visits}) by "
                       f"{user.username}"))
    return get_policy(ctx, user, app_id, now)


def wakes_on_visit(ctx: Context, app_id: int) -> bool:
    """Whether a visit wakes the sleeping app by itself (the proxy's question)."""
    with session_scope(ctx.engine) as s:
        row = s.get(AppSleepPolicy, app_id)
        return sp.effective(to_policy(row), ctx.settings).wake_on_visit


def mark_scheduled_wake(ctx: Context, app_id: int, window_start: datetime) -> None:
    """Record that the supervisor woke the app for the window starting at `window_start`."""
    with session_scope(ctx.engine) as s:
        row = s.get(AppSleepPolicy, app_id)
        if row is not None:
            row.scheduled_wake_at = window_start
            s.add(row)


@dataclass(frozen=True)
class NextSleep:
    """One row of My apps: the policy in a few words and when the app next sleeps."""

    label: str  # e.g. "💤 sleeps in 3 h", "always on", "asleep"
    description: str  # the policy in a sentence (the label's tooltip)


def _in_words(delta_seconds: float) -> str:
    minutes = max(delta_seconds / 60, 0)
    if minutes < 1:
        return "at the next check"
    if minutes < 90:
        return f"in {minutes:.0f} min"
    if minutes < 48 * 60:
        return f"in {minutes / 60:.0f} h"
    return f"in {minutes / 1440:.0f} days"


def next_sleeps(ctx: Context, user: User, workspace_id: int, app_ids: Iterable[int],
                now: datetime | None = None) -> dict[int, NextSleep]:
    """For the apps of workspace `workspace_id` among `app_ids` (the user a member of it):
    each one's sleep policy in a few words (My apps)."""
    now = now or utcnow()
    out: dict[int, NextSleep] = {}
    with session_scope(ctx.engine) as s:
        if not has_role(s, user, workspace_id, "viewer"):
            return out
        apps = s.exec(select(App).where(col(App.id).in_(list(app_ids)),
                                        col(App.workspace_id) == workspace_id)).all()
        found = policies(s, [id_of(a) for a in apps])
        for app in apps:
            policy = found[id_of(app)]
            when = next_sleep(app, policy, ctx.settings, now)
            if app.state == "sleeping":
                label = "💤 asleep" + (", a visit wakes it" if policy.wake_on_visit else "")
            elif app.state != "running":
                label = ""
            elif when is None:
                label = "always on" if sp.effective(policy, ctx.settings).kind == "never" \
                    else "stays awake"
            else:
                label = f"💤 sleeps {_in_words((when - now).total_seconds())}"
            out[id_of(app)] = NextSleep(label, sp.describe(policy, ctx.settings))
    return out
