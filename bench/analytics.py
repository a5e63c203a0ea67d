"""Analytics at a million view events: load time, and the two tab queries against a
`SELECT count(*)` over the same events in the same run.

Data: 200 apps in 20 workspaces of 10, 50,000 viewers (10% signed-in users "u:<id>", the
rest visitors "v:<id>"), events spread over the 24 months before `now`; app and viewer
popularity are skewed (Zipf-like), so the busiest app has far more events than the median.
The events go in, in time order, in batches of 10,000 through `record_views` itself (the
path the proxy uses: reconnect dedupe, raw rows, aggregates), into SQLite (WAL) on disk.

Timed, median of `--runs` runs each, on the busiest workspace and the busiest app:
- baseline: `SELECT count(*) FROM viewevent` (one pass over the events' smallest index);
- Workspace tab: `workspace_monthly_viewers` (permission check + the monthly counters);
- App viewers tab: `app_viewers` (total, 20 newest viewers with identities) and
  `app_daily_views` (30 days);
- for scale: the same monthly numbers computed naively from the raw events
  (COUNT(DISTINCT viewer_key) per month over the workspace's apps), what the aggregates save.

    .venv/bin/python bench/analytics.py [--events 1000000] [--runs 15] [--db PATH]
        [--database-url postgresql+psycopg://user@host/empty_db]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.context import Context

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

import models.analytics  # noqa: E402,F401
from backend.analytics import reports as analytics  # noqa: E402
from backend.context import open_context  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from models import App, Membership, User, ViewEvent, Workspace, session_scope  # noqa: E402

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WORKSPACES, APPS_PER_WS, VIEWERS, MONTHS, MEMBERS = 20, 10, 50_000, 24, 200
BATCH = 10_000


def zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


def seed(ctx: Context, n_events: int, rng: random.Random) -> tuple[int, int, int, float]:
    """Users, workspaces, apps, then the events. Returns (admin id, busiest workspace id,
    busiest app id, load seconds)."""
    with session_scope(ctx.engine) as s:
        admin = User(username="admin", name="Admin", is_admin=True)
        s.add(admin)
        users = [User(username=f"user{i}", name=f"User {i}", email=f"user{i}@example.com")
                 for i in range(MEMBERS)]
        s.add_all(users)
        s.flush()
        app_ids: list[int] = []
        for w in range(WORKSPACES):
            ws = Workspace(name=f"ws{w:02d}")
            s.add(ws)
            s.flush()
            for u in users[w * 10:(w + 1) * 10]:
                s.add(Membership(user_id=u.id, workspace_id=ws.id, role="developer"))
            for a in range(APPS_PER_WS):
                app = App(workspace_id=ws.id, subdomain=f"app-{w:02d}-{a}", repo_url="/r/x",
                          visibility="private" if a % 4 == 3 else "public")
                s.add(app)
                s.flush()
                app_ids.append(app.id)
        admin_id, user_ids = admin.id, [u.id for u in users]
    keys = [f"u:{user_ids[i]}" if i < MEMBERS else
            (f"u:{10_000 + i}" if i < VIEWERS // 10 else f"v:{rng.getrandbits(64):016x}")
            for i in range(VIEWERS)]
    rng.shuffle(app_ids)  # popularity follows neither workspace order nor membership
    rng.shuffle(keys)
    app_w, key_w = zipf_weights(len(app_ids), 0.8), zipf_weights(VIEWERS, 0.6)
    span = (NOW - (NOW - timedelta(days=MONTHS * 30.44))).total_seconds()
    offsets = sorted(rng.random() * span for _ in range(n_events))
    start = NOW - timedelta(seconds=span)
    apps = rng.choices(app_ids, weights=app_w, k=n_events)
    viewers = rng.choices(keys, weights=key_w, k=n_events)
    t0 = time.perf_counter()
    recorded = 0
    for i in range(0, n_events, BATCH):
        batch = [(apps[j], viewers[j], start + timedelta(seconds=offsets[j]))
                 for j in range(i, min(i + BATCH, n_events))]
        recorded += analytics.record_views(ctx, batch)
    load = time.perf_counter() - t0
    print(f"loaded {recorded:,} of {n_events:,} events in {load:.1f} s "
          f"({recorded / load:,.0f} events/s); {n_events - recorded} reconnects dropped")
    busiest_app = _busiest_app(ctx)
    with session_scope(ctx.engine) as s:
        ws_id = s.get(App, busiest_app).workspace_id
    return admin_id, ws_id, busiest_app, load


def _busiest_app(ctx: Context) -> int:
    t = analytics.APP_TOTAL
    with ctx.engine.connect() as conn:
        return conn.execute(select(t.c.app_id).order_by(t.c.views.desc()).limit(1)).scalar_one()


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm the page cache and the connection pool
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--db", type=Path, default=None, help="data dir to use (default: temp)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--database-url", default="",
                   help="e.g. postgresql+psycopg://... (an empty database); default SQLite")
    args = p.parse_args()
    data_dir = args.db or Path(tempfile.mkdtemp(prefix="stcloud-bench-analytics-"))
    ctx = open_context(load_settings(env={}, data_dir=data_dir,
                                     database_url=args.database_url))
    dialect = ctx.engine.dialect.name
    admin_id, ws_id, app_id, load = seed(ctx, args.events, random.Random(args.seed))
    with session_scope(ctx.engine) as s:
        admin = s.get(User, admin_id)
        # A Core count(): sqlmodel types exec() for ORM selects only.
        app_events = s.exec(select(func.count()).select_from(ViewEvent)  # type: ignore[call-overload]
                            .where(ViewEvent.app_id == app_id)).one()[0]
    with ctx.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()

    def count_all() -> int:
        with ctx.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM viewevent")).scalar_one()

    def naive_monthly() -> list:
        month = "substr(e.time, 1, 7)" if dialect == "sqlite" else \
            "to_char(e.time AT TIME ZONE 'UTC', 'YYYY-MM')"
        sql = text(f"SELECT {month} AS m, count(DISTINCT e.viewer_key) "
                   "FROM viewevent e JOIN app a ON a.id = e.app_id "
                   "WHERE a.workspace_id = :ws GROUP BY m")
        with ctx.engine.connect() as conn:
            return conn.execute(sql, {"ws": ws_id}).all()

    total = count_all()
    results = {
        "events": total, "app_events": app_events, "load_s": round(load, 1),
        "load_events_per_s": round(total / load),
        "count_star_ms": median_ms(count_all, args.runs),
        "workspace_tab_ms": median_ms(
            lambda: analytics.workspace_monthly_viewers(ctx, admin, ws_id, now=NOW),
            args.runs),
        "app_viewers_ms": median_ms(
            lambda: analytics.app_viewers(ctx, admin, app_id, now=NOW), args.runs),
        "app_daily_ms": median_ms(
            lambda: analytics.app_daily_views(ctx, admin, app_id, now=NOW), args.runs),
        "naive_monthly_ms": median_ms(naive_monthly, max(3, args.runs // 5)),
    }
    batch = [(app_id, f"v:bench-{i}", NOW + timedelta(seconds=i)) for i in range(100)]
    t0 = time.perf_counter()
    analytics.record_views(ctx, batch)
    results["record_100_ms"] = (time.perf_counter() - t0) * 1000
    points = analytics.workspace_monthly_viewers(ctx, admin, ws_id, now=NOW)
    viewers = analytics.app_viewers(ctx, admin, app_id, now=NOW)
    results |= {"database": dialect, "months": len(points),
                "busiest_app_unique": viewers.total_unique}
    if dialect == "sqlite":
        results["db_mb"] = round(sum(f.stat().st_size for f in data_dir.glob("cloud.db*"))
                                 / 2**20)
    out = ROOT / "bench" / "results" / f"analytics-{dialect}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"\n| query | median ms |\n|---|---|\n"
          f"| SELECT count(*) FROM viewevent (baseline) | {results['count_star_ms']:.1f} |\n"
          f"| Workspace tab: workspace_monthly_viewers | {results['workspace_tab_ms']:.2f} |\n"
          f"| App viewers tab: app_viewers | {results['app_viewers_ms']:.2f} |\n"
          f"| App viewers tab: app_daily_views (30 d) | {results['app_daily_ms']:.2f} |\n"
          f"| naive COUNT(DISTINCT) per month from raw events | "
          f"{results['naive_monthly_ms']:.0f} |")


if __name__ == "__main__":
    main()
