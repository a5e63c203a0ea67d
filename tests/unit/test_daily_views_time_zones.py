"""Analytics' daily views end on today, whatever the server's time zone: the days are UTC
days, so with the supervisor's process in a zone ahead of UTC (where the local date is
already tomorrow) or behind it (still yesterday), today's view is on the last day and that
day is today's UTC date, never the next one. The browser side (labels in the viewer's time
zone) is tests/browser/test_admin_live_settings.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from backend.analytics import reports
from backend.analytics.store import record_views
from backend.context import Context
from tests.support.analytics_world import make_app, make_user, make_workspace

ZONES = ("Pacific/Kiritimati", "Asia/Tokyo", "UTC", "America/Los_Angeles",
         "Pacific/Pago_Pago")


@pytest.fixture
def server_zone(request: pytest.FixtureRequest,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("server_zone", ZONES, indirect=True)
@pytest.mark.parametrize("hour", [0, 12, 23])
def test_todays_view_is_on_the_last_day_in_any_server_zone(ctx: Context, server_zone: str,
                                                           hour: int) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    app_id = make_app(ctx, make_workspace(ctx, "team", {}), "daily")
    now = datetime(2026, 12, 7, hour, 30, tzinfo=UTC)
    local = datetime.fromtimestamp(now.timestamp()).date()  # the server's own calendar
    record_views(ctx, [(app_id, "u:1", now)])
    points = reports.app_daily_views(ctx, admin, app_id, days=30, now=now)
    assert [p.day for p in points][-1] == date(2026, 12, 7), (server_zone, local)
    assert [p.views for p in points][-1] == 1 and sum(p.views for p in points) == 1
    assert points[0].day == date(2026, 11, 8)
