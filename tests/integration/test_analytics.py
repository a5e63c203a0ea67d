"""Analytics: aggregation on a controlled clock (`now=`), identities and pseudonyms,
permissions, retention, the Altair charts' Vega specs, the page under AppTest, and
screenshots of both tabs in Chromium.

Reconnects are deduplicated here, in `record_views` (a session within DEDUPE_WINDOW of the
viewer's previous view of the app is not a new view), not in the proxy.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import streamlit as st
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import models.analytics  # noqa: F401  (registers the aggregate tables)
from backend.accounts import auth
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
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.errors import NotFound, PermissionDenied
from models import App, AppViewer, Membership, User, Workspace, session_scope

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "dashboard" / "analytics.py")
ARTIFACTS = ROOT / "test-artifacts"
UTC = UTC


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=UTC)


# Seeding ---------------------------------------------------------------------------------
@dataclass
class World:
    ctx: Context
    admin: User
    ws: int  # workspace "team"
    other_ws: int  # workspace "other"
    app1: int  # public, team
    app2: int  # public, team
    private: int  # private, team
    app3: int  # public, other
    alice: User  # team developer
    victor: User  # team viewer
    olga: User  # not in team
    ivy: User  # invited viewer of the private app


def make_user(ctx: Context, username: str, name: str = "", email: str = "",
              is_admin: bool = False) -> User:
    with session_scope(ctx.engine) as s:
        user = User(username=username, name=name or username, email=email, is_admin=is_admin)
        s.add(user)
        s.flush()
        s.refresh(user)
        return user


def make_workspace(ctx: Context, name: str, members: dict[int, str]) -> int:
    with session_scope(ctx.engine) as s:
        ws = Workspace(name=name)
        s.add(ws)
        s.flush()
        for user_id, role in members.items():
            s.add(Membership(user_id=user_id, workspace_id=ws.id, role=role))
        return ws.id


def make_app(ctx: Context, ws: int, subdomain: str, visibility: str = "public") -> int:
    with session_scope(ctx.engine) as s:
        app = App(workspace_id=ws, subdomain=subdomain, repo_url=f"/r/{subdomain}",
                  visibility=visibility)
        s.add(app)
        s.flush()
        return app.id


@pytest.fixture
def world(ctx: Context) -> World:
    admin = make_user(ctx, "root", "Site Admin", "root@example.com", is_admin=True)
    alice = make_user(ctx, "alice", "Alice Developer", "alice@example.com")
    victor = make_user(ctx, "victor", "Victor Viewer", "victor@example.com")
    olga = make_user(ctx, "olga", "Olga Outsider", "olga@example.com")
    ivy = make_user(ctx, "ivy", "Ivy Invited", "Ivy@Example.com")
    ws = make_workspace(ctx, "team", {alice.id: "developer", victor.id: "viewer"})
    other = make_workspace(ctx, "other", {olga.id: "admin"})
    private = make_app(ctx, ws, "secret", "private")
    with session_scope(ctx.engine) as s:
        s.add(AppViewer(app_id=private, email="ivy@example.com"))
    return World(ctx, admin, ws, other, make_app(ctx, ws, "one"), make_app(ctx, ws, "two"),
                 private, make_app(ctx, other, "three"), alice, victor, olga, ivy)


def months(points: list[analytics.MonthPoint]) -> list[tuple[str, int, bool]]:
    return [(p.month.strftime("%Y-%m"), p.viewers, p.complete) for p in points]


def count(ctx: Context, table: Any) -> int:
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


# Monthly viewers -------------------------------------------------------------------------
def test_months_are_utc_calendar_months(world: World) -> None:
    ctx, w = world.ctx, world
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


def test_current_month_is_in_progress_and_gaps_are_zero(world: World) -> None:
    ctx, w = world.ctx, world
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


def test_a_viewer_counts_once_per_month_however_many_apps(world: World) -> None:
    ctx, w = world.ctx, world
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


def test_empty_workspace_has_no_points(world: World) -> None:
    assert analytics.workspace_monthly_viewers(world.ctx, world.alice, world.ws) == []


def test_reconnects_are_not_new_views(world: World) -> None:
    ctx, w = world.ctx, world
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


def test_aggregates_match_a_recount_of_the_raw_events(world: World) -> None:
    """Random events in random batches (some twice): the counters equal the distinct sets,
    and rebuild_aggregates reproduces them."""
    ctx, w = world.ctx, world
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


def test_bad_events_are_refused_and_unknown_apps_dropped(world: World) -> None:
    ctx, w = world.ctx, world
    with pytest.raises(ValueError, match="timezone"):
        analytics.record_views(ctx, [(w.app1, "v:a", datetime(2024, 1, 1))])
    with pytest.raises(ValueError, match="viewer_key"):
        analytics.record_views(ctx, [(w.app1, "alice@example.com", at(2024, 1, 1))])
    assert analytics.record_views(ctx, [(9999, "v:a", at(2024, 1, 1)),
                                        analytics.View(w.app1, "v:a", at(2024, 1, 1))]) == 1
    assert analytics.record_views(ctx, []) == 0


# App viewers: identities -----------------------------------------------------------------
def test_pseudonyms_are_stable_per_workspace_and_need_the_secret(world: World) -> None:
    ctx, w = world.ctx, world
    t = at(2024, 4, 1)
    olga_key = f"u:{w.olga.id}"  # signed in, but outside workspace "team"
    analytics.record_views(ctx, [(w.app1, "v:cookie-1", t), (w.app2, "v:cookie-1", t),
                                 (w.app3, "v:cookie-1", t), (w.app1, olga_key, t)])

    def names(user: User, app: int) -> dict[str, str]:
        return {v.display_name: v.kind for v in
                analytics.app_viewers(ctx, user, app, now=t).recent}

    one, again, two = names(w.alice, w.app1), names(w.victor, w.app1), names(w.alice, w.app2)
    assert one == again and set(one.values()) == {"pseudonym"}
    visitor = next(iter(two))
    assert visitor in one  # the same visitor has the same name in every app of the workspace
    assert names(w.olga, w.app3) != {visitor: "pseudonym"}  # another workspace, another name
    olga_name = next(n for n in one if n != visitor)
    assert "olga" not in olga_name.lower() and "example" not in olga_name
    assert len(olga_name.split()) == 3 and olga_name.split()[2].isdigit()

    secret_file = ctx.settings.data_dir / "keys" / analytics.PSEUDONYM_SECRET
    secret = secret_file.read_text()
    assert analytics.pseudonym(secret, w.ws, "v:cookie-1") == visitor
    assert analytics.pseudonym(secret + "x", w.ws, "v:cookie-1") != visitor
    secret_file.write_text("a-new-server-secret")
    assert visitor not in names(w.alice, w.app1)


def test_members_are_named_on_public_apps(world: World) -> None:
    ctx, w = world.ctx, world
    t = at(2024, 4, 1)
    analytics.record_views(ctx, [(w.app1, f"u:{w.alice.id}", t),
                                 (w.app1, f"u:{w.victor.id}", t + timedelta(minutes=1)),
                                 (w.app1, f"u:{w.admin.id}", t + timedelta(minutes=2))])
    recent = analytics.app_viewers(ctx, w.victor, w.app1, now=t).recent
    assert [(v.display_name, v.is_member, v.kind) for v in recent][:2] == [
        (analytics.pseudonym(analytics.keys.load_or_create_secret(ctx, "analytics_pseudonyms"),
                             w.ws, f"u:{w.admin.id}"), False, "pseudonym"),
        ("Victor Viewer", True, "member")]
    assert recent[2].display_name == "Alice Developer" and recent[2].is_member


def test_private_app_shows_authorised_viewers_by_identity(world: World) -> None:
    ctx, w = world.ctx, world
    t = at(2024, 6, 1)
    ghost = make_user(ctx, "ghost", "Ghost Formerly Invited", "ghost@example.com")
    analytics.record_views(ctx, [
        (w.private, f"u:{w.alice.id}", t),
        (w.private, f"u:{w.ivy.id}", t + timedelta(minutes=1)),
        (w.private, f"u:{w.admin.id}", t + timedelta(minutes=2)),
        (w.private, f"u:{ghost.id}", t + timedelta(minutes=3)),  # access since removed
        (w.private, "v:from-when-it-was-public", t + timedelta(minutes=4)),
        (w.private, "u:424242", t + timedelta(minutes=5)),  # account deleted
    ])
    recent = analytics.app_viewers(ctx, w.victor, w.private, now=t + timedelta(hours=1)).recent
    assert [(v.display_name, v.kind, v.is_member) for v in recent] == [
        ("Anonymous viewer", "anonymous", False),
        ("Anonymous viewer", "anonymous", False),
        ("Anonymous viewer", "anonymous", False),
        ("Site Admin", "authorised", False),
        ("Ivy Invited (Ivy@Example.com)", "authorised", False),
        ("Alice Developer", "member", True),
    ]
    assert not any("Ghost" in v.display_name for v in recent)


def test_recent_viewers_are_the_last_20_newest_first(world: World) -> None:
    ctx, w = world.ctx, world
    t = at(2024, 7, 1, 8)
    analytics.record_views(ctx, [(w.app1, f"v:{i:02d}", t + timedelta(minutes=i))
                                 for i in range(25)])
    analytics.record_views(ctx, [(w.app1, "v:03", t + timedelta(hours=2))])  # back again
    now = t + timedelta(hours=3)
    result = analytics.app_viewers(ctx, w.alice, w.app1, now=now)
    assert (result.total_unique, result.total_views, len(result.recent)) == (25, 26, 20)
    times = [v.last_view for v in result.recent]
    assert times == sorted(times, reverse=True)
    assert times[0] == t + timedelta(hours=2) and result.recent[0].relative == "1 hour ago"
    assert times[1] == t + timedelta(minutes=24)
    assert result.recent[1].relative == "2 hours ago"
    assert times[-1] == t + timedelta(minutes=6)  # 25 viewers, the 20 newest


def test_relative_time() -> None:
    now = at(2024, 7, 1)
    cases = {timedelta(seconds=3): "just now", timedelta(seconds=42): "42 seconds ago",
             timedelta(minutes=1): "1 minute ago", timedelta(hours=2, minutes=5): "2 hours ago",
             timedelta(days=1): "1 day ago", timedelta(days=16): "2 weeks ago",
             timedelta(days=65): "2 months ago", timedelta(days=800): "2 years ago"}
    for ago, text in cases.items():
        assert analytics.relative_time(now - ago, now) == text


def test_daily_views_are_utc_days_with_zeros(world: World) -> None:
    ctx, w = world.ctx, world
    analytics.record_views(ctx, [(w.app1, "v:a", at(2024, 3, 9, 23, 59)),
                                 (w.app1, "v:b", at(2024, 3, 10, 0, 1)),
                                 (w.app1, "v:c", at(2024, 3, 10, 8)),
                                 (w.app1, "v:d", at(2024, 1, 1))])
    points = analytics.app_daily_views(ctx, w.alice, w.app1, days=3, now=at(2024, 3, 11, 6))
    assert [(p.day.isoformat(), p.views) for p in points] == [
        ("2024-03-09", 1), ("2024-03-10", 2), ("2024-03-11", 0)]
    assert analytics.daily_views_csv(points) == \
        "day_utc,views\n2024-03-09,1\n2024-03-10,2\n2024-03-11,0\n"


def test_csv_exports() -> None:
    points = [analytics.MonthPoint(date(2024, 1, 1), 3, True),
              analytics.MonthPoint(date(2024, 2, 1), 1, False)]
    assert analytics.monthly_viewers_csv(points) == \
        "month_utc,unique_viewers,complete\n2024-01,3,true\n2024-02,1,false\n"
    recent = [analytics.RecentViewer('Ann "A", B', True, at(2024, 2, 1, 10), "x", "member", 2)]
    assert analytics.recent_viewers_csv(recent) == (
        'viewer,member,last_view_utc,views\n"Ann ""A"", B",true,2024-02-01T10:00:00+00:00,2\n')


# Permissions -----------------------------------------------------------------------------
def test_everyone_with_access_may_read_and_nobody_else(world: World) -> None:
    ctx, w = world.ctx, world
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


def test_viewable_workspaces(world: World) -> None:
    ctx, w = world.ctx, world
    mine = analytics.viewable_workspaces(ctx, w.victor)
    assert [(x.name, x.role, [a.subdomain for a in x.apps]) for x in mine] == [
        ("team", "viewer", ["one", "secret", "two"])]
    assert [x.name for x in analytics.viewable_workspaces(ctx, w.admin)] == ["other", "team"]
    assert analytics.viewable_workspaces(ctx, w.ivy) == []


# Retention -------------------------------------------------------------------------------
def test_prune_deletes_identities_and_keeps_counts(world: World) -> None:
    ctx, w = world.ctx, world
    analytics.record_views(ctx, [(w.app1, "v:old", at(2024, 1, 5)),
                                 (w.app1, "v:both", at(2024, 1, 6)),
                                 (w.app1, "v:both", at(2024, 3, 20)),
                                 (w.app2, "v:new", at(2024, 3, 25))])
    now = at(2024, 4, 1)
    assert analytics.prune_views(ctx, now, days=0) == analytics.PruneResult(0, 0, 0)
    retention = Context(settings=SimpleNamespace(analytics_retention_days=30,  # type: ignore
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


# Charts ----------------------------------------------------------------------------------
def page_module() -> Any:
    sys.path.insert(0, str(ROOT))
    from pages.dashboard import analytics as page
    return page


def line_layers(spec: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(solid line layers, dashed line layers) of a layered Vega-Lite spec."""
    lines = [layer for layer in spec["layer"]
             if (layer["mark"]["type"] if isinstance(layer["mark"], dict)
                 else layer["mark"]) == "line"]
    dashed = [layer for layer in lines if layer["mark"].get("strokeDash")]
    return [layer for layer in lines if layer not in dashed], dashed


def test_monthly_chart_is_solid_then_dashed_for_the_current_month() -> None:
    page = page_module()
    points = [analytics.MonthPoint(date(2024, m, 1), n, m < 4)
              for m, n in ((1, 5), (2, 7), (3, 6), (4, 2))]
    spec = page.monthly_chart(points).to_dict()
    solid, dashed = line_layers(spec)
    assert len(solid) == 1 and len(dashed) == 1
    assert [r["month"][:7] for r in solid[0]["data"]["values"]] == ["2024-01", "2024-02",
                                                                      "2024-03"]
    assert [r["month"][:7] for r in dashed[0]["data"]["values"]] == ["2024-03", "2024-04"]
    assert solid[0]["encoding"]["x"]["title"] == "Month (UTC)"
    tooltips = [t["title"] for layer in spec["layer"]
                for t in layer.get("encoding", {}).get("tooltip", [])]
    assert {"Month (UTC)", "Unique viewers"} <= set(tooltips)
    only_current = page.monthly_chart([analytics.MonthPoint(date(2024, 4, 1), 2, False)])
    solid, dashed = line_layers(only_current.to_dict())
    assert solid[0]["data"]["values"] == [] and len(dashed[0]["data"]["values"]) == 1


# The page under AppTest ------------------------------------------------------------------
@dataclass
class Dash:
    ctx: Context
    admin: Any


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         database_url: str) -> Iterator[Dash]:
    """Settings in the environment, as the dashboard reads them (like test_dashboard)."""
    for name in list(os.environ):
        if name.startswith("STCLOUD_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("STCLOUD_DATA_DIR", str(tmp_path / "data"))
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STCLOUD_DOMAIN", "cloud.test")
    monkeypatch.setenv("STCLOUD_PORT", "8080")
    monkeypatch.chdir(ROOT)
    ctx = open_context()
    username, _ = auth.ensure_first_admin(ctx)
    yield Dash(ctx, auth.get_user(ctx, username))
    st.cache_data.clear()
    st.cache_resource.clear()


def seed(d: Dash) -> tuple[Any, Any]:
    """Two apps of workspace "owner" with views over 14 months up to now."""
    hello = apps.deploy_app(d.ctx, d.admin, repo_url="https://github.com/owner/hello",
                            subdomain="hello")
    other = apps.deploy_app(d.ctx, d.admin, repo_url="https://github.com/owner/other",
                            subdomain="other")
    now = datetime.now(UTC)
    rng = random.Random(3)
    events = [(hello.id, f"v:{rng.randrange(80)}", now - timedelta(minutes=rng.randrange(
        420 * 24 * 60))) for _ in range(600)]
    events += [(other.id, f"u:{d.admin.id}", now - timedelta(hours=2)),
               (hello.id, f"u:{d.admin.id}", now - timedelta(minutes=3))]
    analytics.record_views(d.ctx, events)
    return hello, other


def open_page(user: Any, query: dict[str, str] | None = None,
              tab: str | None = None) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=30)
    app.session_state["authentication_status"] = True
    app.session_state["username"] = user.username
    if query:
        app.query_params.update(query)
    if tab:
        app.session_state["analytics_tab"] = tab
    app.run()
    assert not app.exception, app.exception
    return app


def charts(app: AppTest) -> list[dict[str, Any]]:
    return [json.loads(e.proto.spec) for e in app.get("vega_lite_chart")]


def page_text(app: AppTest) -> str:
    parts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "error"):
        parts += [str(e.value) for e in getattr(app, kind)]
    parts += [f"{m.label}={m.value}" for m in app.metric]
    return "\n".join(parts)


def test_page_workspace_tab_renders_the_chart(dash: Dash) -> None:
    seed(dash)
    app = open_page(dash.admin)
    assert [t.value for t in app.title] == ["Analytics"]
    assert [t.label for t in app.tabs] == ["Workspace", "App viewers"]
    (spec,) = charts(app)
    solid, dashed = line_layers(spec)
    assert solid and dashed and solid[0]["data"]["values"]
    assert len(dashed[0]["data"]["values"]) == 2
    text = page_text(app)
    assert "so far" in text and "Months are calendar months in UTC." in text
    assert app.get("download_button")[0].proto.label == "Download CSV"
    assert "App" not in [s.label for s in app.selectbox]  # the other tab did not run


def test_page_app_viewers_tab_lists_recent_viewers(dash: Dash) -> None:
    hello, _ = seed(dash)
    app = open_page(dash.admin, tab="App viewers")
    (select_app,) = [s for s in app.selectbox if s.key == "analytics_app"]
    assert select_app.value == hello.id  # the first app (by name) is preselected
    assert app.query_params["app"] == str(hello.id)
    text = page_text(app)
    assert "Unique viewers (all time)=81" in text
    names = [m.value for m in app.markdown if m.value.startswith(("👤", "🎭"))]
    assert len(names) == 20 and names[0] == "👤 **Administrator** :blue-badge[member]"
    assert "3 minutes ago" in [c.value for c in app.caption]
    assert any(c.proto.help.startswith("Last view: ") for c in app.caption)
    assert [c["mark"]["type"] for c in charts(app)] == ["bar"]
    assert {b.proto.label for b in app.get("download_button")} == {
        "Download daily views (CSV)", "Download recent viewers (CSV)"}
    app.session_state["analytics_tab"] = "Workspace"
    app.run()
    assert "app" not in app.query_params and len(charts(app)) == 1


def test_page_query_app_preselects_the_app_and_tab(dash: Dash) -> None:
    _, other = seed(dash)
    alone = apps.deploy_app(dash.ctx, dash.admin, repo_url="https://github.com/solo/app",
                            subdomain="solo-app")
    app = open_page(dash.admin, query={"app": str(other.id)})
    assert app.session_state["analytics_tab"] == "App viewers"
    assert app.selectbox(key="analytics_app").value == other.id
    assert "👤 **Administrator** :blue-badge[member]" in [m.value for m in app.markdown]
    # An app of another workspace switches the workspace too.
    app = open_page(dash.admin, query={"app": str(alone.id)})
    solo = next(w for w in analytics.viewable_workspaces(dash.ctx, dash.admin)
                if w.name == "solo")
    assert app.selectbox(key="current_workspace").value == solo.id  # the dashboard's
    assert app.selectbox(key="analytics_app").value == alone.id
    assert "Nobody has viewed this app yet." in page_text(app)
    app = open_page(dash.admin, query={"app": "12345"})
    assert "There is no app 12345" in page_text(app)


NAV = """
import streamlit as st
st.navigation([st.Page({other!r}, title="Other", default=True),
               st.Page({page!r}, title="Analytics", url_path="analytics")]).run()
"""


def test_page_link_from_another_page_opens_app_viewers_each_time(dash: Dash,
                                                                tmp_path: Path) -> None:
    """As from an app's menu on My apps: ?app= opens App viewers, also a second time for the
    same app after the user went back to Workspace and left the page."""
    hello, other = seed(dash)
    (tmp_path / "other.py").write_text("import streamlit as st\nst.title('Other')\n")
    nav = tmp_path / "nav.py"
    nav.write_text(NAV.format(other=str(tmp_path / "other.py"), page=PAGE))
    app = AppTest.from_file(str(nav), default_timeout=30)
    app.session_state["authentication_status"] = True
    app.session_state["username"] = dash.admin.username
    app.run()
    for _ in range(2):
        app.query_params["app"] = str(other.id)
        app.switch_page(PAGE).run()
        assert not app.exception, app.exception
        assert app.session_state["analytics_tab"] == "App viewers"
        assert app.selectbox(key="analytics_app").value == other.id
        app.session_state["analytics_tab"] = "Workspace"
        app.run()
        assert "app" not in app.query_params and len(charts(app)) == 1
        app.session_state["analytics_tab"] = "App viewers"
        app.run()  # the app chosen before is still chosen, and back in the URL
        assert app.selectbox(key="analytics_app").value == other.id
        assert app.query_params["app"] == str(other.id)
        app.switch_page(str(tmp_path / "other.py")).run()
        assert [t.value for t in app.title] == ["Other"]


def test_page_empty_state(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url="https://github.com/owner/hello")
    app = open_page(dash.admin)
    assert "No viewers yet" in page_text(app)
    assert charts(app) == []
    nobody = auth.create_user(dash.ctx, "nobody", "nobody-password")
    assert "You are not in any workspace yet" in page_text(open_page(nobody))


# Chromium: screenshots of both tabs ------------------------------------------------------
HARNESS = """
import streamlit as st
st.set_page_config(page_title="Analytics", layout="wide")
st.session_state["authentication_status"] = True
st.session_state["username"] = "admin"
st.navigation([st.Page({page!r}, title="Analytics")], position="hidden").run()
"""


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.mark.browser
def test_screenshots_of_both_tabs(dash: Dash, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (apt-get install chromium)")
    seed(dash)
    from tests.conftest import free_port
    harness = tmp_path / "analytics_harness.py"
    harness.write_text(HARNESS.format(page=PAGE))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(harness), "--server.headless=true",
         f"--server.port={port}", "--server.address=127.0.0.1",
         "--browser.gatherUsageStats=false"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            chart = page.locator("[data-testid='stVegaLiteChart']").first
            chart.wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(1500)
            box = chart.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100
            page.screenshot(path=str(ARTIFACTS / "analytics-workspace.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 2000})
            page.get_by_role("tab", name="App viewers").click()
            page.get_by_text("Recent viewers").wait_for(timeout=30_000)
            page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            assert page.get_by_text("Administrator").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "analytics-app-viewers.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
