"""Analytics, write side: record view events, keep the aggregates, prune by retention.

The proxy records one view per new Streamlit session (`record_views`, in batches). Each
batch, in one transaction:

1. drops events of unknown apps, and reconnects: a session of the same viewer on the same
   app less than `DEDUPE_WINDOW` after their previous recorded view (a websocket reconnect
   or a reload) is not a new view;
2. inserts the raw `ViewEvent` rows;
3. updates the aggregates of `models/analytics.py` with set-based statements: distinct rows
   go in with `INSERT .. ON CONFLICT DO NOTHING RETURNING`, and only the rows that really
   went in add to the counters (`ON CONFLICT DO UPDATE SET n = n + excluded.n`). So a
   viewer counts once per workspace and month and once per app, exactly, even when two
   proxies record the same viewer at once.

Reads (`backend.analytics.reports`) then touch at most a few dozen rows per render: one counter
row per month, the 20 newest rows of an app on the (app_id, last_view) index, one total.

SQLite (3.35+) and PostgreSQL: upserts use the dialect's `insert`. Months and days are
computed here in Python, in UTC, so no SQL date function is needed.

Retention (`analytics_retention_days`, 0 = keep forever): `prune_views` deletes raw events
older than the period, the per-viewer rows whose last view is older (and viewer-month rows
of months wholly older). Counters stay: they hold no identity. A viewer whose row was pruned
counts again as a new unique viewer of the app when they come back.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite

from backend.context import Context
from models import App, ViewEvent, table_of
from models.analytics import (
    AnalyticsAppDay,
    AnalyticsAppTotal,
    AnalyticsAppViewer,
    AnalyticsViewerMonth,
    AnalyticsWorkspaceMonth,
)

log = logging.getLogger("backend.analytics.reports")

DEDUPE_WINDOW = timedelta(seconds=60)
VIEWS_LOCK_NAMESPACE = 0x5356  # "SV": pg_advisory_xact_lock(namespace, app id)
CHUNK = 4000  # rows per set-based statement (SQLite allows 32766 bound parameters)
RETENTION_SETTING = "analytics_retention_days"

APPS = table_of(App)
EVENTS = table_of(ViewEvent)
VIEWER_MONTH = table_of(AnalyticsViewerMonth)
WORKSPACE_MONTH = table_of(AnalyticsWorkspaceMonth)
APP_VIEWER = table_of(AnalyticsAppViewer)
APP_TOTAL = table_of(AnalyticsAppTotal)
APP_DAY = table_of(AnalyticsAppDay)
AGGREGATES = (VIEWER_MONTH, WORKSPACE_MONTH, APP_VIEWER, APP_TOTAL, APP_DAY)


@dataclass(frozen=True)
class View:
    """One new session of a viewer on an app. viewer_key: "u:<user id>" or "v:<visitor id>"."""

    app_id: int
    viewer_key: str
    time: datetime


@dataclass(frozen=True)
class PruneResult:
    events: int
    viewer_months: int
    app_viewers: int


def month_start(when: datetime | date) -> date:
    """The first day of the UTC calendar month of `when`."""
    if isinstance(when, datetime):
        when = when.astimezone(UTC).date()
    return when.replace(day=1)


def utc_day(when: datetime) -> date:
    return when.astimezone(UTC).date()


def _chunks(rows: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def _insert(conn: Connection, table: Any) -> Any:
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"Analytics needs SQLite or PostgreSQL, not {name}.")


def _normalise(events: Iterable[Any]) -> list[View]:
    out = []
    for e in events:
        app_id, key, when = (e if isinstance(e, tuple)
                             else (e.app_id, e.viewer_key, e.time))
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise ValueError(f"View times must be timezone-aware datetimes, not {when!r}.")
        if not (key.startswith(("u:", "v:")) and 2 < len(key) <= 64):
            raise ValueError(f"viewer_key must be 'u:<user id>' or 'v:<visitor id>' "
                             f"(at most 64 characters), not {key!r}.")
        out.append(View(int(app_id), key, when.astimezone(UTC)))
    out.sort(key=lambda v: v.time)
    return out


def _workspaces_of(conn: Connection, app_ids: set[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    ids = sorted(app_ids)
    for part in _chunks(ids):
        q = select(APPS.c.id, APPS.c.workspace_id).where(APPS.c.id.in_(part))
        out.update({a: w for a, w in conn.execute(q)})
    return out


def _last_views(conn: Connection, pairs: list[tuple[int, str]]) -> dict[tuple[int, str],
                                                                        datetime]:
    """Last views of (app, viewer) pairs: per app, `viewer_key IN (...)` on the primary key
    (one cached statement with an expanding parameter). A row-value IN would make SQLite
    scan the table, and a VALUES list costs more to build than the lookups themselves."""
    t = APP_VIEWER
    q = select(t.c.viewer_key, t.c.last_view).where(
        t.c.app_id == bindparam("app"), t.c.viewer_key.in_(bindparam("keys", expanding=True)))
    by_app: dict[int, list[str]] = {}
    for app_id, key in pairs:
        by_app.setdefault(app_id, []).append(key)
    out: dict[tuple[int, str], datetime] = {}
    for app_id, keys in by_app.items():
        for part in _chunks(keys):
            out.update({(app_id, k): last for k, last in
                        conn.execute(q, {"app": app_id, "keys": list(part)})})
    return out


def _lock_apps(conn: Connection, app_ids: set[int]) -> None:
    """PostgreSQL: serialise writers of the same apps' views until this transaction ends.
    Several proxies flush on their own; without it two of them could each read "no recent
    view" of a viewer who reconnected through the other, and both insert (seen in the
    two-proxy test). Sorted, so two writers never wait on each other in a cycle. SQLite
    has one writer at a time already (a second one that read before fails and retries)."""
    if conn.dialect.name != "postgresql":
        return
    for app_id in sorted(app_ids):
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :app)"),
                     {"ns": VIEWS_LOCK_NAMESPACE, "app": app_id})


def _dedupe(conn: Connection, views: list[View]) -> list[View]:
    """Drop reconnects: views within DEDUPE_WINDOW of the viewer's previous view of the app."""
    _lock_apps(conn, {v.app_id for v in views})
    last = _last_views(conn, sorted({(v.app_id, v.viewer_key) for v in views}))
    kept = []
    for v in views:
        pair = (v.app_id, v.viewer_key)
        prev = last.get(pair)
        if prev is not None and abs(v.time - prev) < DEDUPE_WINDOW:
            continue
        kept.append(v)
        last[pair] = v.time
    return kept


def _add_counts(conn: Connection, table: Any, keys: Sequence[str],
                counts: dict[tuple[Any, ...], dict[str, int]]) -> None:
    """counter[key] += n for every key, creating rows as needed (one upsert per chunk)."""
    if not counts:
        return
    # sorted: every writer takes the rows' locks in one order
    rows = [dict(zip(keys, k, strict=True)) | v for k, v in sorted(counts.items())]
    columns = list(rows[0].keys() - set(keys))
    ins = _insert(conn, table)
    stmt = ins.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: table.c[c] + ins.excluded[c] for c in columns})
    for part in _chunks(rows):
        conn.execute(stmt, list(part))


def _aggregate(conn: Connection, views: list[View], ws_of: dict[int, int]) -> None:
    """Fold `views` (already deduplicated, apps known) into the aggregate tables."""
    if not views:
        return
    # Distinct viewers per workspace and month: only rows that went in are new viewers.
    months = sorted({(ws_of[v.app_id], month_start(v.time), v.viewer_key) for v in views})
    stmt = _insert(conn, VIEWER_MONTH).on_conflict_do_nothing().returning(
        VIEWER_MONTH.c.workspace_id, VIEWER_MONTH.c.month)
    new_months: Counter[tuple[int, date]] = Counter()
    for part in _chunks(months):
        rows = [{"workspace_id": w, "month": m, "viewer_key": k} for w, m, k in part]
        new_months.update((w, m) for w, m in conn.execute(stmt, rows))
    _add_counts(conn, WORKSPACE_MONTH, ("workspace_id", "month"),
                {k: {"viewers": n} for k, n in new_months.items()})

    # Per app and viewer: first and last view, views; new rows are new unique viewers.
    per_viewer: dict[tuple[int, str], list[Any]] = {}
    for v in views:
        row = per_viewer.setdefault((v.app_id, v.viewer_key), [v.time, v.time, 0])
        row[0], row[1], row[2] = min(row[0], v.time), max(row[1], v.time), row[2] + 1
    rows = [{"app_id": a, "viewer_key": k, "first_view": f, "last_view": last, "views": n}
            for (a, k), (f, last, n) in sorted(per_viewer.items())]
    stmt = _insert(conn, APP_VIEWER).on_conflict_do_nothing().returning(
        APP_VIEWER.c.app_id, APP_VIEWER.c.viewer_key)
    inserted: set[tuple[int, str]] = set()
    for part in _chunks(rows):
        inserted.update((a, k) for a, k in conn.execute(stmt, list(part)))
    existing = [r for r in rows if (r["app_id"], r["viewer_key"]) not in inserted]
    if existing:
        ins = _insert(conn, APP_VIEWER)
        c, x = APP_VIEWER.c, ins.excluded
        upsert = ins.on_conflict_do_update(
            index_elements=["app_id", "viewer_key"],
            set_={"first_view": case((x.first_view < c.first_view, x.first_view),
                                     else_=c.first_view),
                  "last_view": case((x.last_view > c.last_view, x.last_view),
                                    else_=c.last_view),
                  "views": c.views + x.views})
        for part in _chunks(existing):
            conn.execute(upsert, list(part))

    totals: dict[tuple[Any, ...], dict[str, int]] = {}
    for v in views:
        t = totals.setdefault((v.app_id,), {"unique_viewers": 0, "views": 0})
        t["views"] += 1
    for app_id, _ in inserted:
        totals[(app_id,)]["unique_viewers"] += 1
    _add_counts(conn, APP_TOTAL, ("app_id",), totals)
    days = Counter((v.app_id, utc_day(v.time)) for v in views)
    _add_counts(conn, APP_DAY, ("app_id", "day"), {k: {"views": n} for k, n in days.items()})


def record_views(ctx: Context, events: Iterable[Any], dedupe: bool = True) -> int:
    """Record view events (objects with app_id, viewer_key, time, or such tuples) and update
    the aggregates, in one transaction. Returns how many were recorded as views: events of
    unknown apps and reconnects within DEDUPE_WINDOW (unless `dedupe=False`) are dropped."""
    views = _normalise(events)
    if not views:
        return 0
    with ctx.engine.begin() as conn:
        ws_of = _workspaces_of(conn, {v.app_id for v in views})
        unknown = {v.app_id for v in views} - ws_of.keys()
        if unknown:
            log.warning("Dropping views of unknown apps %s", sorted(unknown))
            views = [v for v in views if v.app_id in ws_of]
        if dedupe:
            views = _dedupe(conn, views)
        rows = [{"app_id": v.app_id, "viewer_key": v.viewer_key, "time": v.time}
                for v in views]
        for part in _chunks(rows):
            conn.execute(EVENTS.insert(), list(part))
        _aggregate(conn, views, ws_of)
    return len(views)


def rebuild_aggregates(ctx: Context, batch: int = 50_000) -> int:
    """Recompute every aggregate from the raw `viewevent` rows (after a restore, or to load
    events inserted by other means). Returns the number of events read."""
    total = 0
    with ctx.engine.begin() as conn:
        for table in AGGREGATES:
            conn.execute(delete(table))
        ws_of = {a: w for a, w in conn.execute(select(APPS.c.id, APPS.c.workspace_id))}
        last_id = 0
        while True:
            q = (select(EVENTS.c.id, EVENTS.c.app_id, EVENTS.c.viewer_key, EVENTS.c.time)
                 .where(EVENTS.c.id > last_id).order_by(EVENTS.c.id).limit(batch))
            rows = conn.execute(q).all()
            if not rows:
                return total
            last_id = rows[-1][0]
            views = [View(a, k, t) for _, a, k, t in rows if a in ws_of]
            _aggregate(conn, views, ws_of)
            total += len(rows)


def retention_days(ctx: Context) -> int:
    return int(getattr(ctx.settings, RETENTION_SETTING, 0) or 0)


def prune_views(ctx: Context, now: datetime | None = None,
                days: int | None = None) -> PruneResult:
    """Delete what is older than the retention period (`days`, default the setting
    `analytics_retention_days`; 0 keeps everything): raw view events, per-viewer rows whose
    last view is older, and viewer-month rows of months that ended before the cutoff.
    Counters (monthly viewers, totals, daily views) are kept: they hold no identity."""
    days = retention_days(ctx) if days is None else days
    if days <= 0:
        return PruneResult(0, 0, 0)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    with ctx.engine.begin() as conn:
        events = conn.execute(delete(EVENTS).where(EVENTS.c.time < cutoff)).rowcount
        months = conn.execute(delete(VIEWER_MONTH).where(
            VIEWER_MONTH.c.month < month_start(cutoff))).rowcount
        viewers = conn.execute(delete(APP_VIEWER).where(
            APP_VIEWER.c.last_view < cutoff)).rowcount
    if events or months or viewers:
        log.info("Analytics retention (%s days): pruned %s events, %s viewer-months, "
                 "%s app viewers", days, events, months, viewers)
    return PruneResult(events, months, viewers)
