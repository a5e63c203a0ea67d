"""Analytics of one app's viewers: stable per-workspace pseudonyms, members named on public
apps, authorised viewers of a private app by identity, the 20 most recent viewers, daily
views by UTC day, and the CSV exports.
"""

from __future__ import annotations

from datetime import date, timedelta

import models.analytics  # noqa: F401  (registers the aggregate tables)
from backend.analytics import reports as analytics
from models import User
from tests.support.analytics_world import World, at, make_user


# App viewers: identities -----------------------------------------------------------------
def test_pseudonyms_are_stable_per_workspace_and_need_the_secret(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
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


def test_members_are_named_on_public_apps(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
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


def test_private_app_shows_authorised_viewers_by_identity(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
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


def test_recent_viewers_are_the_last_20_newest_first(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
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


def test_daily_views_are_utc_days_with_zeros(analytics_world: World) -> None:
    ctx, w = analytics_world.ctx, analytics_world
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
