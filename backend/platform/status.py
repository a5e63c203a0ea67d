"""The status page's data: is each part of the platform healthy, and what went wrong lately.

`public_status()` is for anyone, signed in or not (like streamlitstatus.com): each
component with ok / not ok and a generic one-line summary, nothing about apps, paths or
hosts. `full_status()` (site admins) adds the details: heartbeat age, engine, database
latency, free disk space of the data dir, the email setup and outbox, app counts by state,
and the last incidents (crashes, memory-limit kills, failed builds) from `AppEvent`.

Checks are cheap and bounded: a file read (the supervisor's heartbeat), `SELECT 1`, a
`statvfs`, and one HTTP request to the proxy's `/api/v1/health` with a 1 s timeout.
"""

from __future__ import annotations

import http.client
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import func, text
from sqlmodel import col, select

from backend.context import Context
from backend.errors import PermissionDenied
from backend.platform import supervisor_report as platform
from models import App, AppEvent, EmailOutbox, User, session_scope, utcnow

INCIDENT_STATES = ("crashed", "over_limit", "build_failed")
INCIDENT_LABEL = {"crashed": "Crashed", "over_limit": "Over its memory limit",
                  "build_failed": "Build failed"}
HEARTBEAT_MAX_AGE = 30.0
MIN_FREE_BYTES = 1 << 30  # 1 GiB
MIN_FREE_FRACTION = 0.05


@dataclass(frozen=True)
class Component:
    name: str
    ok: bool | None  # None: not configured / not applicable (not an outage)
    summary: str  # safe for anyone to read
    detail: str = ""  # for admins


@dataclass(frozen=True)
class Incident:
    time: datetime
    app_id: int
    app: str  # subdomain, or "app #<id> (deleted)"
    kind: str  # crashed | over_limit | build_failed
    label: str
    reason: str


@dataclass(frozen=True)
class StatusReport:
    overall: str  # operational | degraded | down
    components: tuple[Component, ...]
    checked_at: datetime
    detailed: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # app state -> apps
    incidents: tuple[Incident, ...] = ()
    disk_free_bytes: int = 0
    disk_total_bytes: int = 0

    @property
    def healthy(self) -> bool:
        return self.overall == "operational"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# Checks ---------------------------------------------------------------------------------
def _supervisor(ctx: Context) -> tuple[Component, Component, bool]:
    info = platform.read_platform(ctx)
    age = time.time() - info.heartbeat if info.heartbeat else None
    alive = age is not None and age < HEARTBEAT_MAX_AGE
    when = "never" if age is None else f"{age:.0f} s ago"
    sup = Component("Supervisor", alive,
                    "Deploys, reboots and restarts are processed." if alive else
                    "Not running: deploys, reboots and deletes wait until it is back.",
                    f"Last heartbeat {when} (stale after {HEARTBEAT_MAX_AGE:.0f} s).")
    engine_ok = alive and info.engine not in ("", "unknown")
    engine = Component("App runtime", engine_ok if alive else False,
                       "Apps can be built and started." if engine_ok else
                       "Unknown while the supervisor is down.",
                       f"Engine: {info.engine}; Python versions: "
                       f"{', '.join(info.python_versions) or 'none reported'}.")
    return sup, engine, alive


def _proxy(ctx: Context, timeout: float = 1.0) -> Component:
    s = ctx.settings
    host = "127.0.0.1" if s.bind in ("", "0.0.0.0", "::") else s.bind
    started = time.monotonic()
    try:
        conn = http.client.HTTPConnection(host, s.port, timeout=timeout)
        try:
            conn.request("GET", "/api/v1/health", headers={"Host": f"{s.domain}:{s.port}"})
            status = conn.getresponse().status
        finally:
            conn.close()
    except OSError as e:
        return Component("Proxy", False, "Not answering: apps and the dashboard are "
                         "unreachable from outside.", f"{host}:{s.port}: {e}")
    ms = (time.monotonic() - started) * 1000
    ok = status == 200
    return Component("Proxy", ok, "Serving apps and the dashboard." if ok else
                     "Answering with errors.", f"{host}:{s.port} answered {status} in "
                     f"{ms:.0f} ms.")


def _database(ctx: Context) -> Component:
    started = time.monotonic()
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # any driver error means "down"
        return Component("Database", False, "Not answering.", f"{type(e).__name__}: {e}")
    ms = (time.monotonic() - started) * 1000
    kind = ctx.engine.dialect.name
    return Component("Database", True, "Answering.", f"{kind}, SELECT 1 in {ms:.1f} ms.")


def _disk(ctx: Context) -> tuple[Component, int, int]:
    path = ctx.settings.data_dir
    try:
        usage = shutil.disk_usage(path)
    except OSError as e:
        return Component("Disk", False, "Cannot be read.", f"{path}: {e}"), 0, 0
    low = usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_FRACTION
    return (Component("Disk", not low, "Low on space: builds may fail." if low else
                      "Enough free space.",
                      f"{_size(usage.free)} free of {_size(usage.total)} in {path}."),
            usage.free, usage.total)


def _email(ctx: Context) -> Component:
    s = ctx.settings
    with session_scope(ctx.engine) as session:
        rows = session.exec(select(EmailOutbox.status, func.count())
                            .group_by(EmailOutbox.status)).all()
    counts = {status: n for status, n in rows}
    waiting = counts.get("pending", 0) + counts.get("sending", 0)
    failed = counts.get("failed", 0)
    outbox = f"Outbox: {waiting} waiting, {failed} failed, {counts.get('sent', 0)} sent."
    if not s.smtp_host:
        return Component("Email", None, "Not configured: notifications wait in the outbox.",
                         "No smtp_host setting. " + outbox)
    ok = failed == 0
    return Component("Email", ok, "Sending notifications." if ok else
                     "Some notifications could not be sent.",
                     f"SMTP {s.smtp_host} ({s.smtp_tls}). " + outbox)


def app_state_counts(ctx: Context) -> dict[str, int]:
    """Apps (not deleted) per state, sorted by state."""
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(App.state, func.count())
                      .where(App.desired_state != "deleted").group_by(App.state)).all()
    return {state: n for state, n in sorted(rows)}


def recent_incidents(ctx: Context, limit: int = 20) -> list[Incident]:
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(AppEvent, App.subdomain)
                      .join(App, col(App.id) == AppEvent.app_id, isouter=True)
                      .where(col(AppEvent.to_state).in_(INCIDENT_STATES))
                      .where(col(AppEvent.from_state) != AppEvent.to_state)
                      .order_by(col(AppEvent.id).desc()).limit(limit)).all()
    return [Incident(time=e.time, app_id=e.app_id, app=sub or f"app #{e.app_id} (deleted)",
                     kind=e.to_state, label=INCIDENT_LABEL[e.to_state], reason=e.reason)
            for e, sub in rows]


# Reports --------------------------------------------------------------------------------
def _overall(components: tuple[Component, ...]) -> str:
    essential = {"Supervisor", "Proxy", "Database"}
    if any(c.ok is False and c.name in essential for c in components):
        return "down"
    if any(c.ok is False for c in components):
        return "degraded"
    return "operational"


def _check(ctx: Context) -> tuple[tuple[Component, ...], int, int]:
    sup, engine, _ = _supervisor(ctx)
    disk, free, total = _disk(ctx)
    components = (sup, _proxy(ctx), engine, _database(ctx), disk, _email(ctx))
    return components, free, total


def public_status(ctx: Context) -> StatusReport:
    """Component health only, without details: safe to show without signing in."""
    components, _, _ = _check(ctx)
    public = tuple(replace(c, detail="") for c in components)
    return StatusReport(overall=_overall(components), components=public,
                        checked_at=utcnow())


def full_status(ctx: Context, user: User) -> StatusReport:
    """Everything, for site admins."""
    if not user.is_admin:
        raise PermissionDenied("Only site admins see the status details.")
    components, free, total = _check(ctx)
    return StatusReport(overall=_overall(components), components=components,
                        checked_at=utcnow(), detailed=True, counts=app_state_counts(ctx),
                        incidents=tuple(recent_incidents(ctx)), disk_free_bytes=free,
                        disk_total_bytes=total)
