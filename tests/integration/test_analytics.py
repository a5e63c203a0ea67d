"""Analytics aggregation on a controlled clock (`now=`): monthly unique viewers by UTC
calendar month, recounts of the raw events, refused events, who may read analytics, and
retention. Identities and pseudonyms of app viewers are in test_analytics_viewers.py, the
charts and the page in test_analytics_page.py.

Reconnects are deduplicated here, in `record_views` (a session within DEDUPE_WINDOW of the
viewer's previous view of the app is not a new view), not in the proxy.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

import models.analytics  # noqa: F401  (registers the aggregate tables)
from backend.analytics import reports as analytics
from backend.analytics.store import (
    AGGREGATES,
    APP_TOTAL,
    APP_VIEWER,
    DEDUPE_WINDOW,
    EVENTS,
    VIEWER_MONTH,
    WORKSPACE_MONTH,
)
from backend.context import Context
from backend.errors import NotFound, PermissionDenied
from models import App, session_scope
from tests.support.analytics_world import World, at, count, months


# Monthly viewers -------------------------------------------------------------------------
def test_months_are_utc_calendar_months(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    cest = timezone(timedelta(hours=2))
    analytics.record_views(ctx, [
        (w.app1, "v:a", at(2024, 1, 31, 23, 59, 59)),          # January (UTC)
        (w.app1, "v:b", at(2024, 2, 1, 0, 0, 0)),              # February
        (w.app1, "v:c", datetime(2024, 2, 1, 1, 30, tzinfo=cest)),  # 23:30 UTC, January
    ])
    points = analytics.workspace_monthly_viewers(ctx, w.alice, w.ws, now=at(2024, 3, 5))
    assert months(points) == [("2024-01", 2, True), ("2024-02", 1, True),
                              ("2024-03", 0, False)]
    assert all(p.month.day == 1 for p in points)
    assert "UTC" in analytics.MONTH_NOTE
    with ctx.engine.connect() as conn:  # stored in UTC, read back aware
        times = [t for (t,) in conn.execute(select(EVENTS.c.time).order_by(EVENTS.c.time))]
    assert times[0] == at(2024, 1, 31, 23, 30) and times[0].utcoffset() == timedelta(0)


def test_current_month_is_in_progress_and_gaps_are_zero(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    analytics.record_views(ctx, [(w.app1, "v:a", at(2023, 11, 3)),
                                 (w.app1, "v:a", at(2024, 2, 10))])
    now = at(2024, 2, 29, 23, 59)
    assert months(analytics.workspace_monthly_viewers(ctx, w.alice, w.ws, now=now)) == [
        ("2023-11", 1, True), ("2023-12", 0, True), ("2024-01", 0, True),
        ("2024-02", 1, False)]
    assert months(analytics.workspace_monthly_viewers(ctx, w.alice, w.ws, now=now,
                                                      months=2)) == [
        ("2024-01", 0, True), ("2024-02", 1, False)]
    # A minute later February is complete and March has begun.
    later = analytics.workspace_monthly_viewers(ctx, w.alice, w.ws, now=at(2024, 3, 1, 0, 0))
    assert months(later)[-2:] == [("2024-02", 1, True), ("2024-03", 0, False)]


def test_a_viewer_counts_once_per_month_however_many_apps(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    jan = at(2024, 1, 10)
    analytics.record_views(ctx, [
        (w.app1, "u:7", jan), (w.app2, "u:7", jan + timedelta(hours=1)),
        (w.private, "u:7", jan + timedelta(days=3)), (w.app1, "u:7", jan + timedelta(days=9)),
        (w.app2, "v:x", jan), (w.app1, "u:7", at(2024, 2, 2)),
        (w.app3, "u:7", jan),  # another workspace: counted there
    ])
    analytics.record_views(ctx, [(w.app2, "u:7", jan + timedelta(days=20))])  # later batch
    points = analytics.workspace_monthly_viewers(ctx, w.alice, w.ws, now=at(2024, 2, 20))
    assert months(points) == [("2024-01", 2, True), ("2024-02", 1, False)]
    assert months(analytics.workspace_monthly_viewers(ctx, w.olga, w.other_ws,
                                                      now=at(2024, 2, 20))) == [
        ("2024-01", 1, True), ("2024-02", 0, False)]
    assert analytics.app_viewers(ctx, w.alice, w.app1, now=jan).total_unique == 1


def test_empty_workspace_has_no_points(analytics_world: World) -> None:
    w = analytics_world
    assert analytics.workspace_monthly_viewers(w.ctx, w.alice, w.ws) == []


def test_reconnects_are_not_new_views(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    t = at(2024, 5, 1, 9)
    recorded = analytics.record_views(ctx, [(w.app1, "v:r", t),
                                            (w.app1, "v:r", t + timedelta(seconds=20))])
    assert recorded == 1
    assert analytics.record_views(ctx, [(w.app1, "v:r", t + timedelta(seconds=45))]) == 0
    assert analytics.record_views(ctx, [(w.app2, "v:r", t + timedelta(seconds=45))]) == 1
    assert analytics.record_views(ctx, [(w.app1, "v:r", t + DEDUPE_WINDOW)]) == 1
    result = analytics.app_viewers(ctx, w.alice, w.app1, now=t + timedelta(minutes=5))
    assert (result.total_unique, result.total_views) == (1, 2)
    assert result.recent[0].views == 2 and result.recent[0].last_view == t + DEDUPE_WINDOW
    assert count(ctx, EVENTS) == 3


def test_aggregates_match_a_recount_of_the_raw_events(analytics_world: World) -> None:
    """Random events in random batches (some twice): the counters equal the distinct sets,
    and rebuild_aggregates reproduces them."""
    ctx, w = analytics_world.ctx, analytics_world
    rng = random.Random(8)
    app_ws = {w.app1: w.ws, w.app2: w.ws, w.private: w.ws, w.app3: w.other_ws}
    start = at(2024, 1, 1, 0)
    events = [(rng.choice(list(app_ws)), f"v:{rng.randrange(60)}",
               start + timedelta(minutes=rng.randrange(150 * 24 * 60))) for _ in range(3000)]
    rng.shuffle(events)
    for i in range(0, len(events), 700):
        analytics.record_views(ctx, events[i:i + 700], dedupe=False)
    analytics.record_views(ctx, events[:500], dedupe=False)  # replayed: uniques unchanged
    events += events[:500]

    def state() -> tuple[Any, ...]:
        with ctx.engine.connect() as conn:
            return tuple(sorted(conn.execute(select(t)).all()) for t in AGGREGATES)

    expected_months: dict[tuple[int, date], set[str]] = {}
    for app, key, when in events:
        expected_months.setdefault((app_ws[app], when.date().replace(day=1)), set()).add(key)
    with ctx.engine.connect() as conn:
        got = {(ws, m): n for ws, m, n in conn.execute(select(WORKSPACE_MONTH))}
        totals = {a: (u, v) for a, u, v in conn.execute(select(APP_TOTAL))}
    assert got == {k: len(v) for k, v in expected_months.items()}
    for app in app_ws:
        mine = [e for e in events if e[0] == app]
        assert totals[app] == (len({k for _, k, _ in mine}), len(mine))
    before = state()
    assert analytics.rebuild_aggregates(ctx) == len(events)
    assert state() == before


def test_bad_events_are_refused_and_unknown_apps_dropped(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    with pytest.raises(ValueError, match="timezone"):
        analytics.record_views(ctx, [(w.app1, "v:a", datetime(2024, 1, 1))])
    with pytest.raises(ValueError, match="viewer_key"):
        analytics.record_views(ctx, [(w.app1, "alice@example.com", at(2024, 1, 1))])
    assert analytics.record_views(ctx, [(9999, "v:a", at(2024, 1, 1)),
                                        analytics.View(w.app1, "v:a", at(2024, 1, 1))]) == 1
    assert analytics.record_views(ctx, []) == 0


# Permissions -----------------------------------------------------------------------------
def test_everyone_with_access_may_read_and_nobody_else(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    analytics.record_views(ctx, [(w.app1, "v:a", at(2024, 1, 1))])
    for user in (w.victor, w.alice, w.admin):
        assert analytics.workspace_monthly_viewers(ctx, user, w.ws, now=at(2024, 2, 1))
        assert analytics.app_viewers(ctx, user, w.app1).total_unique == 1
        assert analytics.app_daily_views(ctx, user, w.app1, days=2)
    with pytest.raises(PermissionDenied, match="viewer role"):
        analytics.workspace_monthly_viewers(ctx, w.olga, w.ws)
    for call in (analytics.app_viewers, analytics.app_daily_views):
        with pytest.raises(NotFound):
            call(ctx, w.olga, w.app1)
    with pytest.raises(NotFound):
        analytics.workspace_monthly_viewers(ctx, w.admin, 9999)
    with session_scope(ctx.engine) as s:
        s.get(App, w.app2).desired_state = "deleted"
    with pytest.raises(NotFound):
        analytics.app_viewers(ctx, w.alice, w.app2)


def test_viewable_workspaces(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    mine = analytics.viewable_workspaces(ctx, w.victor)
    assert [(x.name, x.role, [a.subdomain for a in x.apps]) for x in mine] == [
        ("team", "viewer", ["one", "secret", "two"])]
    assert [x.name for x in analytics.viewable_workspaces(ctx, w.admin)] == ["other", "team"]
    assert analytics.viewable_workspaces(ctx, w.ivy) == []


# Retention -------------------------------------------------------------------------------
def test_prune_deletes_identities_and_keeps_counts(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
    analytics.record_views(ctx, [(w.app1, "v:old", at(2024, 1, 5)),
                                 (w.app1, "v:both", at(2024, 1, 6)),
                                 (w.app1, "v:both", at(2024, 3, 20)),
                                 (w.app2, "v:new", at(2024, 3, 25))])
    now = at(2024, 4, 1)
    assert analytics.prune_views(ctx, now, days=0) == analytics.PruneResult(0, 0, 0)
    # A stand-in context: the purge reads only the retention setting, data_dir and the engine.
    retention = Context(settings=SimpleNamespace(analytics_retention_days=30,  # type: ignore[arg-type]
                                                 data_dir=ctx.settings.data_dir),
                        engine=ctx.engine)
    assert analytics.prune_views(retention, now) == analytics.PruneResult(2, 2, 1)
    with ctx.engine.connect() as conn:
        assert sorted(k for (k,) in conn.execute(select(EVENTS.c.viewer_key))) == \
            ["v:both", "v:new"]
        assert {k for (k,) in conn.execute(select(APP_VIEWER.c.viewer_key))} == \
            {"v:both", "v:new"}
        assert {r.month for r in conn.execute(select(VIEWER_MONTH))} == {date(2024, 3, 1)}
    # The chart keeps January; the all-time total keeps the pruned viewer.
    points = analytics.workspace_monthly_viewers(ctx, w.alice, w.ws, now=now)
    assert months(points)[0] == ("2024-01", 2, True)
    assert analytics.app_viewers(ctx, w.alice, w.app1, now=now).total_unique == 2
    assert analytics.prune_views(ctx, now) == analytics.PruneResult(0, 0, 0)  # setting: 0
