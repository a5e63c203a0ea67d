"""An app's resources in sight: memory and CPU per instance beside the app's sum, and the
warning before its memory limit.

- Samples: the supervisor's sampler (`supervisor/control/usage_sampler.py`) stores, per
  running app and pass, one `UsageSample` (memory summed over the app's instances: PSS,
  each shared page counted once; the limit; CPU) and one `InstanceUsageSample` per
  instance (PSS, USS, CPU). `app_resources` reads both for the dashboard's chart, with
  the same access rule and downsampling as `backend.analytics.usage`.
- Warning: an app whose every sample for `memory_warning_minutes` is at or above
  `memory_warning_percent` of its limit gets one warning: a notice in each developer's
  dashboard inbox and an email through the outbox (`backend.platform.notifications`,
  kind `memory_warning`), before the limit stops it. `step` is the rule (pure, the clock
  is the samples' own time); `observe` keeps its state in `MemoryWatch` (one row per app
  while it is above). A stretch ends at the first sample below the threshold, a change of
  the limit, or a gap of more than three sample intervals (the app was not running); a
  new stretch warns again only when no warning about the app is younger than `QUIET`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from backend.analytics import usage
from backend.context import Context
from backend.platform import notifications
from backend.platform.settings import Settings
from models import App, Notification, User, id_of, session_scope, utcnow
from models.resources import InstanceUsageSample, MemoryWatch

MIB = 1 << 20
QUIET = timedelta(hours=6)


@dataclass(frozen=True)
class Watch:
    """A stretch of samples at or above the threshold."""

    above_since: datetime
    last_at: datetime
    peak_bytes: int
    limit_bytes: int
    warned_at: datetime | None = None


def step(watch: Watch | None, at: datetime, memory: int, limit: int, percent: float,
         minutes: float, gap_s: float) -> tuple[Watch | None, bool]:
    """The stretch after one sample (None: below the threshold) and whether to warn now:
    once per stretch, when it has lasted `minutes`."""
    if percent <= 0 or limit <= 0 or memory * 100 < limit * percent:
        return None, False
    if watch is None or watch.limit_bytes != limit or \
            (at - watch.last_at).total_seconds() > gap_s:
        watch = Watch(above_since=at, last_at=at, peak_bytes=memory, limit_bytes=limit)
    else:
        watch = replace(watch, last_at=at, peak_bytes=max(watch.peak_bytes, memory))
    due = watch.warned_at is None and at - watch.above_since >= timedelta(minutes=minutes)
    return (replace(watch, warned_at=at) if due else watch), due


def load_watches(session: Session) -> dict[int, MemoryWatch]:
    """Every app's open stretch (one query per sampling pass)."""
    return {row.app_id: row for row in session.exec(select(MemoryWatch)).all()}


def observe(session: Session, settings: Settings, app: App, at: datetime, memory: int,
            limit: int, watches: dict[int, MemoryWatch]) -> bool:
    """Apply one sample of `app` to its stretch in the caller's transaction; warn its
    developers when it is due. Returns whether a warning was queued."""
    row = watches.get(id_of(app))
    current = None if row is None else Watch(row.above_since, row.last_at, row.peak_bytes,
                                             row.limit_bytes, row.warned_at)
    gap = 3 * max(settings.usage_sample_interval, 1.0)
    new, due = step(current, at, memory, limit, settings.memory_warning_percent,
                    settings.memory_warning_minutes, gap)
    if new is None:
        if row is not None:
            session.delete(row)
        return False
    if row is None:
        row = MemoryWatch(app_id=id_of(app), above_since=new.above_since, last_at=at,
                          peak_bytes=new.peak_bytes, limit_bytes=limit)
    row.above_since, row.last_at, row.peak_bytes = new.above_since, new.last_at, new.peak_bytes
    row.limit_bytes, row.warned_at = new.limit_bytes, new.warned_at
    session.add(row)
    if not due or _warned_lately(session, id_of(app), at):
        return False
    notifications.notify(session, settings, app, "memory_warning", new.above_since.isoformat(),
                         used_mb=f"{new.peak_bytes / MIB:.0f}",
                         limit_mb=f"{limit / MIB:.0f}",
                         percent=f"{settings.memory_warning_percent:g}",
                         minutes=f"{settings.memory_warning_minutes:g}")
    return True


def forget_stale(session: Session, settings: Settings, watches: dict[int, MemoryWatch],
                 sampled: set[int], at: datetime) -> None:
    """Drop the stretches of apps no longer sampled (stopped, deleted) once they would
    have ended anyway (a gap of three intervals)."""
    gap = timedelta(seconds=3 * max(settings.usage_sample_interval, 1.0))
    for app_id, row in watches.items():
        if app_id not in sampled and at - row.last_at > gap:
            session.delete(row)


def _warned_lately(session: Session, app_id: int, at: datetime) -> bool:
    return session.exec(select(Notification.id).where(
        Notification.app_id == app_id, Notification.kind == "memory_warning",
        col(Notification.created_at) > at - QUIET)).first() is not None


# Reading ------------------------------------------------------------------------------
@dataclass(frozen=True)
class InstancePoint:
    at: datetime
    instance: str
    memory_bytes: int  # PSS (the mean over the bucket when downsampled)
    uss_bytes: int | None
    cpu_percent: float


@dataclass(frozen=True)
class Warning:
    """The app's current stretch above the threshold, once it has been warned about."""

    since: datetime
    peak_bytes: int
    limit_bytes: int
    percent: float


@dataclass(frozen=True)
class Resources:
    series: usage.UsageSeries  # the app's sum (memory, limit, CPU)
    instances: list[InstancePoint]  # oldest first
    warning: Warning | None


def app_resources(ctx: Context, user: User, app_id: int, hours: float = usage.DEFAULT_HOURS,
                  now: datetime | None = None,
                  max_points: int = usage.MAX_POINTS) -> Resources:
    """The app's sum and per-instance samples over the last `hours` (NotFound, as
    `usage.app_usage`, for who may not see them), and its memory warning if any."""
    series = usage.app_usage(ctx, user, app_id, hours, now, max_points)
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(InstanceUsageSample).where(
            InstanceUsageSample.app_id == app_id,
            col(InstanceUsageSample.at) > series.since,
            col(InstanceUsageSample.at) <= series.until)
            .order_by(col(InstanceUsageSample.at))).all()
        points = [InstancePoint(r.at, r.instance, r.memory_bytes, r.uss_bytes, r.cpu_percent)
                  for r in rows]
        watch = s.get(MemoryWatch, app_id)
        warning = None
        gap = timedelta(seconds=3 * max(ctx.settings.usage_sample_interval, 1.0))
        if watch is not None and watch.warned_at is not None and \
                (now or utcnow()) - watch.last_at <= gap:
            warning = Warning(watch.above_since, watch.peak_bytes, watch.limit_bytes,
                              ctx.settings.memory_warning_percent)
    if len(points) > max_points:
        points = downsample(points, series.since, series.until, max_points)
    return Resources(series, points, warning)


def downsample(points: list[InstancePoint], since: datetime, until: datetime,
               max_points: int) -> list[InstancePoint]:
    """Per instance, the mean of each of `max_points` equal buckets over [since, until]."""
    width = ((until - since).total_seconds() or 1.0) / max_points
    buckets: dict[tuple[str, int], list[InstancePoint]] = {}
    for p in points:
        index = max(min(int((p.at - since).total_seconds() / width), max_points - 1), 0)
        buckets.setdefault((p.instance, index), []).append(p)
    out = []
    for (instance, index), group in buckets.items():
        uss = [p.uss_bytes for p in group if p.uss_bytes is not None]
        out.append(InstancePoint(
            at=since + timedelta(seconds=index * width), instance=instance,
            memory_bytes=round(sum(p.memory_bytes for p in group) / len(group)),
            uss_bytes=round(sum(uss) / len(uss)) if uss else None,
            cpu_percent=sum(p.cpu_percent for p in group) / len(group)))
    return sorted(out, key=lambda p: (p.at, p.instance))
