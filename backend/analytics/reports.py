"""Analytics: workspace viewers per month and app viewers, for everyone with access to the
workspace (viewer role and up, site admins).

The proxy records a view per new Streamlit session; `backend.analytics.store` keeps the
aggregates this module reads (design notes there). Everything here reads a handful of rows
per call, whatever the number of events.

- Months and days are UTC calendar months and days (`MONTH_NOTE` says so on the page).
- A viewer is a viewer key: "u:<user id>" for a signed-in user, "v:<visitor id>" for an
  anonymous visitor (a random first-party cookie id). A viewer counts once per month in a
  workspace however many of its apps they open, and once per app all time.
- Identities (the seed's rules): workspace members are shown by name. On a public app
  everyone else is a pseudonym ("Curious Otter 4821"): HMAC-SHA256 of the workspace id and
  viewer key under the server secret `analytics_pseudonyms`, so it is stable per viewer and
  workspace, differs between workspaces, and reveals nothing without the secret. On a
  private app authorised viewers are shown by identity (site admins by name, invited
  viewers by name and email); viewers without a known identity (visitors, or users whose
  access was removed, e.g. the app was public before) are "Anonymous viewer".
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session, col, select

from backend.accounts import keys
from backend.analytics.store import (
    APP_DAY,
    APP_TOTAL,
    APP_VIEWER,
    WORKSPACE_MONTH,
    PruneResult,
    View,
    month_start,
    prune_views,
    rebuild_aggregates,
    record_views,
    utc_day,
)
from backend.context import Context
from backend.errors import NotFound
from backend.workspaces import require_role, role_in, visible_workspace_ids
from models import (
    App,
    AppViewer,
    Membership,
    User,
    Workspace,
    id_of,
    session_scope,
    table_of,
)

__all__ = ["AppRef", "AppViewers", "DayPoint", "MonthPoint", "PruneResult", "RecentViewer",
           "View", "WorkspaceRef", "app_daily_views", "app_viewers", "daily_views_csv",
           "monthly_viewers_csv", "prune_views", "pseudonym", "rebuild_aggregates",
           "record_views", "recent_viewers_csv", "relative_time", "viewable_workspaces",
           "workspace_monthly_viewers"]

MONTH_NOTE = "Months are calendar months in UTC."
RECENT_LIMIT = 20
PSEUDONYM_SECRET = "analytics_pseudonyms"
ANONYMOUS = "Anonymous viewer"

ADJECTIVES = (
    "Agile", "Bold", "Brave", "Bright", "Calm", "Clever", "Cosmic", "Curious", "Daring",
    "Eager", "Fancy", "Fearless", "Friendly", "Gentle", "Glad", "Golden", "Happy", "Honest",
    "Jolly", "Keen", "Kind", "Lively", "Lucky", "Merry", "Mighty", "Nimble", "Noble",
    "Patient", "Playful", "Polite", "Proud", "Quick", "Quiet", "Radiant", "Rapid", "Shy",
    "Silent", "Sleepy", "Smart", "Snappy", "Sunny", "Swift", "Tidy", "Upbeat", "Vivid",
    "Warm", "Wise", "Witty", "Zany", "Zesty")
ANIMALS = (
    "Albatross", "Alpaca", "Badger", "Beaver", "Bison", "Crane", "Dolphin", "Eagle", "Falcon",
    "Ferret", "Finch", "Fox", "Gazelle", "Gecko", "Heron", "Hedgehog", "Ibis", "Jaguar",
    "Koala", "Lemur", "Lynx", "Marmot", "Meerkat", "Narwhal", "Newt", "Ocelot", "Orca",
    "Otter", "Owl", "Panda", "Pelican", "Penguin", "Puffin", "Quokka", "Rabbit", "Raccoon",
    "Raven", "Salamander", "Seal", "Sparrow", "Squirrel", "Stork", "Tapir", "Tiger",
    "Toucan", "Turtle", "Walrus", "Wombat", "Yak", "Zebra")


# Results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonthPoint:
    month: date  # first day of the UTC calendar month
    viewers: int  # unique viewers of any app of the workspace in that month
    complete: bool  # False for the current, in-progress month


@dataclass(frozen=True)
class DayPoint:
    day: date  # UTC calendar day
    views: int


@dataclass(frozen=True)
class RecentViewer:
    display_name: str
    is_member: bool
    last_view: datetime
    relative: str  # "2 hours ago", relative to the `now` of the query
    kind: str  # member | authorised | pseudonym | anonymous
    views: int


@dataclass(frozen=True)
class AppViewers:
    app_id: int
    visibility: str
    total_unique: int  # all time
    total_views: int
    recent: list[RecentViewer]  # at most RECENT_LIMIT, newest first


@dataclass(frozen=True)
class AppRef:
    id: int
    subdomain: str
    visibility: str


@dataclass(frozen=True)
class WorkspaceRef:
    id: int
    name: str
    role: str
    apps: tuple[AppRef, ...]  # by subdomain


# Helpers ---------------------------------------------------------------------------------
def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _next_month(m: date) -> date:
    return date(m.year + m.month // 12, m.month % 12 + 1, 1)


def relative_time(when: datetime, now: datetime | None = None) -> str:
    """'just now', '5 minutes ago', '2 hours ago', '3 days ago', '2 weeks ago', ..."""
    seconds = (_now(now) - when).total_seconds()
    if seconds < 10:
        return "just now"
    for limit, unit, size in ((60, "second", 1), (3600, "minute", 60),
                              (86400, "hour", 3600), (7 * 86400, "day", 86400),
                              (30 * 86400, "week", 7 * 86400),
                              (365 * 86400, "month", 30 * 86400)):
        if seconds < limit:
            n = int(seconds // size)
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    n = int(seconds // (365 * 86400))
    return f"{n} year{'' if n == 1 else 's'} ago"


def pseudonym(secret: str, workspace_id: int, viewer_key: str) -> str:
    """A random-looking, stable name for a viewer in one workspace ("Curious Otter 4821")."""
    digest = hmac.new(secret.encode(), f"{workspace_id}\x00{viewer_key}".encode(),
                      hashlib.sha256).digest()
    adjective = ADJECTIVES[int.from_bytes(digest[0:4], "big") % len(ADJECTIVES)]
    animal = ANIMALS[int.from_bytes(digest[4:8], "big") % len(ANIMALS)]
    number = 1000 + int.from_bytes(digest[8:12], "big") % 9000
    return f"{adjective} {animal} {number}"


def _workspace_for_reading(session: Session, user: User, workspace_id: int) -> Workspace:
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"Workspace {workspace_id} does not exist.")
    require_role(session, user, workspace_id, "viewer", "see its analytics")
    return ws


def _app_for_reading(session: Session, user: User, app_id: int) -> App:
    app = session.get(App, app_id)
    if app is None or app.desired_state == "deleted" or \
            role_in(session, user, app.workspace_id) is None:
        raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
    return app


# Queries ---------------------------------------------------------------------------------
def viewable_workspaces(ctx: Context, user: User) -> list[WorkspaceRef]:
    """The workspaces whose analytics `user` may read (by name), each with its apps."""
    with session_scope(ctx.engine) as s:
        visible = visible_workspace_ids(s, user)
        q = select(Workspace)
        if visible is not None:
            q = q.where(col(Workspace.id).in_(visible))
        workspaces = list(s.exec(q.order_by(Workspace.name)).all())
        ids = [id_of(w) for w in workspaces]
        apps: dict[int, list[AppRef]] = {i: [] for i in ids}
        a = table_of(App)
        of_workspaces = (select(a.c.id, a.c.workspace_id, a.c.subdomain, a.c.visibility)
                         .where(a.c.workspace_id.in_(ids), a.c.desired_state != "deleted")
                         .order_by(a.c.subdomain))
        for app_id, ws_id, sub, vis in s.connection().execute(of_workspaces):
            apps[ws_id].append(AppRef(app_id, sub, vis))
        return [WorkspaceRef(i, w.name, role_in(s, user, i) or "", tuple(apps[i]))
                for i, w in zip(ids, workspaces, strict=True)]


def workspace_monthly_viewers(ctx: Context, user: User, workspace_id: int,
                              now: datetime | None = None,
                              months: int | None = None) -> list[MonthPoint]:
    """Unique viewers per UTC calendar month over all apps of the workspace, from the first
    month with a view to the current month (zeros filled in); the current month is not
    `complete`. Only the last `months` months when given. Empty when nobody viewed yet."""
    current = month_start(_now(now))
    with session_scope(ctx.engine) as s:
        _workspace_for_reading(s, user, workspace_id)
        t = WORKSPACE_MONTH
        rows = s.exec(select(t.c.month, t.c.viewers)
                      .where(t.c.workspace_id == workspace_id)).all()
    counts = {m: n for m, n in rows}
    if not counts:
        return []
    first, last = min(counts), max(max(counts), current)
    if months is not None:
        start = current
        for _ in range(months - 1):
            start = (start - timedelta(days=1)).replace(day=1)
        first = max(first, start)
    points, m = [], first
    while m <= last:
        points.append(MonthPoint(m, counts.get(m, 0), m < current))
        m = _next_month(m)
    return points


def app_viewers(ctx: Context, user: User, app_id: int, now: datetime | None = None,
                limit: int = RECENT_LIMIT) -> AppViewers:
    """All-time unique viewers of the app and its most recent unique viewers (at most
    `limit`, newest first), named by the identity rules of this module's docstring."""
    now = _now(now)
    with session_scope(ctx.engine) as s:
        app = _app_for_reading(s, user, app_id)
        total = s.exec(select(APP_TOTAL.c.unique_viewers, APP_TOTAL.c.views)
                       .where(APP_TOTAL.c.app_id == app_id)).first()
        t = APP_VIEWER
        rows = s.exec(select(t.c.viewer_key, t.c.last_view, t.c.views)
                      .where(t.c.app_id == app_id)
                      .order_by(t.c.last_view.desc(), t.c.viewer_key).limit(limit)).all()
        user_ids = [int(k[2:]) for k, _, _ in rows if k.startswith("u:") and k[2:].isdigit()]
        users = {u.id: u for u in s.exec(select(User).where(
            col(User.id).in_(user_ids))).all()}
        members = set(s.exec(select(Membership.user_id).where(
            Membership.workspace_id == app.workspace_id,
            col(Membership.user_id).in_(user_ids))).all())
        invited: set[str] = set()
        if app.visibility != "public":
            invited = {e.strip().lower() for e in s.exec(select(AppViewer.email).where(
                AppViewer.app_id == app_id)).all()}
        workspace_id, visibility = app.workspace_id, app.visibility
    secret = keys.load_or_create_secret(ctx, PSEUDONYM_SECRET) if visibility == "public" \
        else ""
    recent = []
    for key, last_view, views in rows:
        u = users.get(int(key[2:])) if key.startswith("u:") and key[2:].isdigit() else None
        name, kind = ANONYMOUS, "anonymous"
        if u is not None and u.id in members:
            name, kind = u.name or u.username, "member"
        elif visibility == "public":
            name, kind = pseudonym(secret, workspace_id, key), "pseudonym"
        elif u is not None and u.is_admin:
            name, kind = u.name or u.username, "authorised"
        elif u is not None and u.email and u.email.strip().lower() in invited:
            name, kind = f"{u.name or u.username} ({u.email})", "authorised"
        recent.append(RecentViewer(name, kind == "member", last_view,
                                   relative_time(last_view, now), kind, views))
    return AppViewers(app_id, visibility, total[0] if total else 0, total[1] if total else 0,
                      recent)


def app_daily_views(ctx: Context, user: User, app_id: int, days: int = 30,
                    now: datetime | None = None) -> list[DayPoint]:
    """Views per UTC day over the last `days` days, today included (zeros filled in)."""
    today = utc_day(_now(now))
    first = today - timedelta(days=days - 1)
    with session_scope(ctx.engine) as s:
        _app_for_reading(s, user, app_id)
        rows = s.exec(select(APP_DAY.c.day, APP_DAY.c.views)
                      .where(APP_DAY.c.app_id == app_id, APP_DAY.c.day >= first,
                             APP_DAY.c.day <= today)).all()
    counts = {d: n for d, n in rows}
    return [DayPoint(first + timedelta(days=i), counts.get(first + timedelta(days=i), 0))
            for i in range(days)]


# CSV exports -----------------------------------------------------------------------------
def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def monthly_viewers_csv(points: Sequence[MonthPoint]) -> str:
    return _csv(("month_utc", "unique_viewers", "complete"),
                [(p.month.strftime("%Y-%m"), p.viewers, str(p.complete).lower())
                 for p in points])


def daily_views_csv(points: Sequence[DayPoint]) -> str:
    return _csv(("day_utc", "views"), [(p.day.isoformat(), p.views) for p in points])


def recent_viewers_csv(viewers: Sequence[RecentViewer]) -> str:
    return _csv(("viewer", "member", "last_view_utc", "views"),
                [(v.display_name, str(v.is_member).lower(),
                  v.last_view.astimezone(UTC).isoformat(timespec="seconds"), v.views)
                 for v in viewers])
