"""Memory (and CPU) use of an app over time: the samples `supervisor/control/usage_sampler.py`
writes every `usage_sample_interval` seconds while an app runs, read for the Memory usage
chart (dashboard app page) and `GET /api/v1/apps/{id}/usage`.

- Who may read: as for the app's analytics, anyone with a role in its workspace (viewer
  and up) and site admins; others get NotFound (the app is not revealed).
- Long ranges are downsampled to at most `MAX_POINTS` points: samples are grouped into
  equal time buckets and each bucket keeps its mean and its peak memory (the peak matters
  next to a limit: a mean would hide the spike that got an app killed) and the limit in
  force at its end. Short ranges return the samples as they are.
- Retention: `prune_samples` deletes samples (the app's and its instances',
  `backend/analytics/resources.py`) older than `usage_retention_days` (the daily retention
  job).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from backend.context import Context
from backend.errors import NotFound, ValidationError
from backend.workspaces import role_in
from models import App, User, session_scope, utcnow
from models.resources import InstanceUsageSample
from models.usage import UsageSample

MAX_POINTS = 500
DEFAULT_HOURS = 24.0
MAX_HOURS = 24.0 * 90


@dataclass(frozen=True)
class UsagePoint:
    at: datetime  # a sample's time, or the start of a bucket when downsampled
    memory_bytes: int  # the sample, or the mean over the bucket
    peak_memory_bytes: int  # the sample, or the highest sample in the bucket
    memory_limit_bytes: int
    cpu_percent: float | None


@dataclass(frozen=True)
class UsageSeries:
    app_id: int
    since: datetime
    until: datetime
    points: list[UsagePoint]
    memory_limit_bytes: int  # the newest sample's limit (0 when there is no sample)
    downsampled: bool


def record_sample(ctx: Context, app_id: int, memory_bytes: int, memory_limit_bytes: int,
                  cpu_percent: float | None = None, at: datetime | None = None) -> None:
    """Store one sample (the supervisor's sampler; tests)."""
    with session_scope(ctx.engine) as s:
        s.add(UsageSample(app_id=app_id, at=at or utcnow(), memory_bytes=int(memory_bytes),
                          memory_limit_bytes=int(memory_limit_bytes),
                          cpu_percent=cpu_percent))


def app_usage(ctx: Context, user: User, app_id: int, hours: float = DEFAULT_HOURS,
              now: datetime | None = None, max_points: int = MAX_POINTS) -> UsageSeries:
    """The app's samples over the last `hours` hours, oldest first, at most `max_points`."""
    if not 0 < hours <= MAX_HOURS:
        raise ValidationError("hours", f"hours is between 0 and {MAX_HOURS:g}.")
    until = now or utcnow()
    since = until - timedelta(hours=hours)
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None or app.desired_state == "deleted" or \
                role_in(s, user, app.workspace_id) is None:
            raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
        rows = s.exec(select(UsageSample.at, UsageSample.memory_bytes,
                             UsageSample.memory_limit_bytes, UsageSample.cpu_percent)
                      .where(UsageSample.app_id == app_id, col(UsageSample.at) > since,
                             col(UsageSample.at) <= until)
                      .order_by(col(UsageSample.at))).all()
    points = [UsagePoint(at, mem, mem, limit, cpu) for at, mem, limit, cpu in rows]
    limit = points[-1].memory_limit_bytes if points else 0
    downsampled = len(points) > max_points
    if downsampled:
        points = downsample(points, since, until, max_points)
    return UsageSeries(app_id, since, until, points, limit, downsampled)


def downsample(points: Sequence[UsagePoint], since: datetime, until: datetime,
               max_points: int = MAX_POINTS) -> list[UsagePoint]:
    """At most `max_points` points: `max_points` equal buckets over [since, until], each
    non-empty one as (bucket start, mean memory, peak memory, last limit, mean CPU)."""
    if len(points) <= max_points:
        return list(points)
    span = (until - since).total_seconds() or 1.0
    width = span / max_points
    buckets: dict[int, list[UsagePoint]] = {}
    for p in points:
        index = min(int((p.at - since).total_seconds() / width), max_points - 1)
        buckets.setdefault(max(index, 0), []).append(p)
    out = []
    for index in sorted(buckets):
        group = buckets[index]
        cpus = [p.cpu_percent for p in group if p.cpu_percent is not None]
        out.append(UsagePoint(
            at=since + timedelta(seconds=index * width),
            memory_bytes=round(sum(p.memory_bytes for p in group) / len(group)),
            peak_memory_bytes=max(p.peak_memory_bytes for p in group),
            memory_limit_bytes=group[-1].memory_limit_bytes,
            cpu_percent=sum(cpus) / len(cpus) if cpus else None))
    return out


def prune_samples(ctx: Context, now: datetime | None = None) -> int:
    """Delete samples older than `usage_retention_days` (0 keeps all); returns how many."""
    days = ctx.settings.usage_retention_days
    if days <= 0:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    with session_scope(ctx.engine) as s:
        result = s.exec(delete(UsageSample).where(col(UsageSample.at) < cutoff))
        s.exec(delete(InstanceUsageSample).where(col(InstanceUsageSample.at) < cutoff))
        return int(result.rowcount or 0)


PEAK_MINUTES = 10


def peak_before_stop(session: Session, app_id: int,
                     minutes: int = PEAK_MINUTES) -> tuple[int, int] | None:
    """(highest memory, limit) over the app's last `minutes` of samples, counted back from
    its newest one (an app that was stopped has no newer ones); None without samples. What
    the over-limit page and email tell the developers it used."""
    newest = session.exec(select(UsageSample.at).where(UsageSample.app_id == app_id)
                          .order_by(col(UsageSample.at).desc())).first()
    if newest is None:
        return None
    rows = session.exec(select(UsageSample.memory_bytes, UsageSample.memory_limit_bytes)
                        .where(UsageSample.app_id == app_id,
                               col(UsageSample.at) >= newest - timedelta(minutes=minutes))
                        .order_by(col(UsageSample.at))).all()
    return max(m for m, _ in rows), rows[-1][1]


def last_peak(ctx: Context, app_id: int) -> tuple[int, int] | None:
    """`peak_before_stop` in its own session."""
    with session_scope(ctx.engine) as s:
        return peak_before_stop(s, app_id)
