"""Analytics: how many people view a workspace's apps, and who viewed each app recently.

Two tabs, as on Community Cloud:
- Workspace: unique viewers per calendar month (UTC) over all apps of the workspace, an
  Altair line: solid over complete months, dashed from the last complete month to the
  current, in-progress one; tooltips on the points; CSV download.
- App viewers: the app's all-time unique viewers, its 20 most recent unique viewers (newest
  first, relative time, exact time in the tooltip), daily views of the last 30 days; CSV.

`?app=<id>` (the "Analytics" entry of an app's menu) opens App viewers with that app
selected. While App viewers is open the URL carries the selected app, so it can be shared;
switching to Workspace drops it. The tabs track state (`on_change="rerun"`), so only the
open tab's queries run. Queries are cached for `CACHE_SECONDS` per user and ids
(`st.cache_data`): with the proxy's one-second flush a view shows within a few seconds.
They read aggregates (backend.analytics.reports), never the raw events.

The body runs only as a page (`__main__`), so tests can import the chart builders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import streamlit as st

from backend.analytics import reports as analytics
from backend.context import Context
from backend.errors import BackendError
from pages.dashboard import _ui as ui

TABS = ("Workspace", "App viewers")
TAB_KEY = "analytics_tab"
APP_KEY = "analytics_app"
HANDLED_KEY = "_analytics_query_app"  # the ?app= value already applied to the widgets
LAST_APP_KEY = "_analytics_last_app"  # the app selector's value outlives its hidden tab
DAYS = 30
LABEL_EVERY = 5  # days between labels on the daily chart
CACHE_SECONDS = 2  # the proxy writes views within a second (ViewRecorder.interval)
COLOR = "#FF4B4B"
DASH = [6, 4]
KIND_ICON = {"member": "👤", "authorised": "🔑", "pseudonym": "🎭", "anonymous": "❔"}


# Charts (pure: tested through .to_dict()) --------------------------------------------------
def _utc(day: Any) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def monthly_chart(points: Sequence[analytics.MonthPoint]) -> alt.LayerChart | alt.FacetChart:
    """Unique viewers per month: a solid line over complete months, a dashed one from the
    last complete month to the current month, and points with tooltips."""
    rows = [{"month": _utc(p.month), "label": p.month.strftime("%B %Y"), "viewers": p.viewers,
             "status": "complete" if p.complete else "in progress (so far)"} for p in points]
    complete = [r for p, r in zip(points, rows, strict=True) if p.complete]
    first_open = next((i for i, p in enumerate(points) if not p.complete), len(points))
    in_progress = rows[max(first_open - 1, 0):] if first_open < len(points) else []
    x = alt.X("month:T", timeUnit="utcyearmonth", title="Month (UTC)",
              scale=alt.Scale(type="utc"), axis=alt.Axis(format="%b %Y", tickCount="month"))
    y = alt.Y("viewers:Q", title="Unique viewers", scale=alt.Scale(zero=True),
              axis=alt.Axis(tickMinStep=1, format=",d"))
    tooltip = [alt.Tooltip("label:N", title="Month (UTC)"),
               alt.Tooltip("viewers:Q", title="Unique viewers", format=","),
               alt.Tooltip("status:N", title="Month")]
    solid = alt.Chart(alt.Data(values=complete)).mark_line(color=COLOR).encode(x=x, y=y)
    dashed = alt.Chart(alt.Data(values=in_progress)).mark_line(
        color=COLOR, strokeDash=DASH).encode(x=x, y=y)
    dots = alt.Chart(alt.Data(values=rows)).mark_point(color=COLOR, size=60).encode(
        x=x, y=y, tooltip=tooltip,
        fill=alt.condition("datum.status == 'complete'", alt.value(COLOR), alt.value("white")))
    return alt.layer(solid, dashed, dots)


def daily_chart(points: Sequence[analytics.DayPoint]) -> alt.Chart:
    """Views per day: one bar per UTC day, labelled with that day. The axis is ordinal (the
    days as text, in order): on a time axis a day's bar spans to the next midnight, and the
    browser's time zone moves the ticks, so the last bar read as tomorrow. Labels: today,
    and every `LABEL_EVERY`th day before it."""
    rows = [{"day": p.day.strftime("%b %d"), "label": p.day.strftime("%a %d %B %Y"),
             "views": p.views} for p in points]
    labelled = [str(r["day"]) for r in rows[::-LABEL_EVERY]]  # today, back in steps
    return alt.Chart(alt.Data(values=rows)).mark_bar(color=COLOR).encode(
        x=alt.X("day:O", title="Day (UTC)", sort=None,
                axis=alt.Axis(labelAngle=0, values=labelled[::-1])),
        y=alt.Y("views:Q", title="Views", axis=alt.Axis(tickMinStep=1, format=",d")),
        tooltip=[alt.Tooltip("label:N", title="Day (UTC)"),
                 alt.Tooltip("views:Q", title="Views", format=",")])


# Cached queries: keyed on the database, the user id and the ids --------------------------
@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def monthly(_ctx: Context, _user: Any, db: str, user_id: int,
            workspace_id: int) -> list[analytics.MonthPoint]:
    return analytics.workspace_monthly_viewers(_ctx, _user, workspace_id)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def viewers(_ctx: Context, _user: Any, db: str, user_id: int,
            app_id: int) -> analytics.AppViewers:
    return analytics.app_viewers(_ctx, _user, app_id)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def daily(_ctx: Context, _user: Any, db: str, user_id: int, app_id: int,
          days: int) -> list[analytics.DayPoint]:
    return analytics.app_daily_views(_ctx, _user, app_id, days=days)


# Selection -------------------------------------------------------------------------------
def _query_app() -> int | None:
    try:
        return int(st.query_params.get("app", ""))
    except ValueError:
        return None


def apply_query_app(workspaces: list[analytics.WorkspaceRef]) -> str:
    """A new ?app=<id>: select its workspace (the dashboard's current workspace) and the
    app, and open App viewers. Returns a warning when the app is not one the user sees."""
    ss = st.session_state
    raw = st.query_params.get("app")
    if raw is None:
        ss.pop(HANDLED_KEY, None)
        return ""
    # The tabs' state is dropped by Streamlit on a run of another page, so its absence
    # means a new visit: a ?app= link opens App viewers again even for the same app.
    if raw == ss.get(HANDLED_KEY) and TAB_KEY in ss:
        return ""
    ss[HANDLED_KEY] = raw
    wanted = _query_app()
    for ws in workspaces:
        if any(a.id == wanted for a in ws.apps):
            ss[ui.WORKSPACE_KEY] = ws.id
            ss[APP_KEY] = wanted
            ss[TAB_KEY] = TABS[1]
            return ""
    return (f"There is no app {ui.md(raw)} that you can see (it may have been deleted). "
            "Pick an app below.")


def drop_app_on_workspace_tab() -> None:
    """Back on Workspace after App viewers (whose app the URL carries): drop ?app=, so
    that the next ?app= from an app's menu opens App viewers again."""
    ss = st.session_state
    if ss.get(TAB_KEY) == TABS[0] and ss.get(HANDLED_KEY) is not None and \
            st.query_params.get("app") == ss.get(HANDLED_KEY):
        st.query_params.pop("app", None)
        ss.pop(HANDLED_KEY, None)


# Tabs ------------------------------------------------------------------------------------
def workspace_tab(ctx: Context, user: Any, ws: analytics.WorkspaceRef) -> None:
    points = monthly(ctx, user, ctx.settings.db_url, user.id, ws.id)
    if not points:
        with st.container(border=True, key="analytics_empty"):
            st.subheader("No viewers yet")
            st.markdown(
                f"Nobody has opened an app of workspace **{ui.md(ws.name)}** yet. Each "
                "time someone opens one of its apps we count them, once per month however "
                "many apps they open; the chart of unique viewers per month appears here "
                "after the first view. Share an app's URL to get started.")
        return
    current, done = points[-1], [p for p in points if p.complete]
    cols = st.columns(3)
    cols[0].metric(f"{current.month:%B %Y} so far", f"{current.viewers:,}",
                   help="Unique viewers of the current, in-progress month (UTC).")
    if done:
        last = done[-1]
        delta = last.viewers - done[-2].viewers if len(done) > 1 else None
        cols[1].metric(f"{last.month:%B %Y}", f"{last.viewers:,}", delta=delta,
                       help="Unique viewers of the last complete month, and the change "
                            "from the month before.")
    cols[2].metric("Peak month", f"{max(p.viewers for p in points):,}")
    st.altair_chart(monthly_chart(points), width="stretch", key="monthly_chart")
    st.caption(f"Unique viewers of any app in **{ui.md(ws.name)}**, per month. "
               f"{analytics.MONTH_NOTE} A viewer counts once a month, however many apps they "
               "open. Solid line: complete months; dotted line: the current month so far.")
    st.download_button("Download CSV", analytics.monthly_viewers_csv(points),
                       file_name=f"{ws.name.replace('/', '-')}-monthly-viewers.csv",
                       mime="text/csv",
                       key="csv_monthly", icon=ui.ICON["download"], on_click="ignore")


def choose_app(ws: analytics.WorkspaceRef) -> analytics.AppRef:
    by_id = {a.id: a for a in ws.apps}
    if st.session_state.get(APP_KEY) not in by_id:  # also: dropped while Workspace was open
        last = st.session_state.get(LAST_APP_KEY)
        st.session_state[APP_KEY] = last if last in by_id else ws.apps[0].id
    chosen = st.selectbox(
        "App", list(by_id), key=APP_KEY, width=420,
        format_func=lambda i: by_id[i].subdomain + (" · private"
                                                    if by_id[i].visibility != "public" else ""))
    st.query_params["app"] = str(chosen)
    st.session_state[HANDLED_KEY] = str(chosen)
    st.session_state[LAST_APP_KEY] = chosen
    return by_id[chosen]


def viewer_row(v: analytics.RecentViewer, index: int) -> None:
    with st.container(key=f"viewer_{index}"):
        name, when = st.columns([3, 1], vertical_alignment="center")
        badge = " :blue-badge[member]" if v.is_member else ""
        name.markdown(f"{KIND_ICON.get(v.kind, '❔')} **{ui.md(v.display_name)}**{badge}")
        when.caption(v.relative, help=f"Last view: {ui.exact_time(v.last_view)} · "
                                      f"{v.views:,} view{'' if v.views == 1 else 's'}")


def app_tab(ctx: Context, user: Any, ws: analytics.WorkspaceRef) -> None:
    if not ws.apps:
        st.info(f"Workspace **{ui.md(ws.name)}** has no apps yet: deploy one, and who views "
                "it shows up here.")
        return
    app = choose_app(ws)
    data = viewers(ctx, user, ctx.settings.db_url, user.id, app.id)
    cols = st.columns(3)
    cols[0].metric("Unique viewers (all time)", f"{data.total_unique:,}")
    cols[1].metric("Views (all time)", f"{data.total_views:,}",
                   help="New sessions; a reconnect within a minute is not a new view.")
    st.subheader("Recent viewers")
    if data.visibility == "public":
        st.caption(f"The last {analytics.RECENT_LIMIT} unique viewers, newest first. Public "
                   f"app: members of {ui.md(ws.name)} are shown by name, everyone else under "
                   "a random pseudonym that stays the same for the same viewer.")
    else:
        st.caption(f"The last {analytics.RECENT_LIMIT} unique viewers, newest first. Private "
                   "app: viewers are shown by name. An *Anonymous viewer* has no known "
                   "identity: a visitor from when the app was public, or someone whose access "
                   "was removed since.")
    if not data.recent:
        st.info("Nobody has viewed this app yet.")
    for i, v in enumerate(data.recent):
        viewer_row(v, i)
    days = daily(ctx, user, ctx.settings.db_url, user.id, app.id, DAYS)
    st.subheader(f"Daily views, last {DAYS} days")
    st.altair_chart(daily_chart(days), width="stretch", key="daily_chart")
    st.caption(f"Views per day (UTC) of {ui.md(app.subdomain)}: each new session counts.")
    left, right = st.columns(2)
    left.download_button("Download daily views (CSV)", analytics.daily_views_csv(days),
                         file_name=f"{app.subdomain}-daily-views.csv", mime="text/csv",
                         key="csv_daily", icon=ui.ICON["download"], on_click="ignore")
    right.download_button("Download recent viewers (CSV)",
                          analytics.recent_viewers_csv(data.recent),
                          file_name=f"{app.subdomain}-recent-viewers.csv", mime="text/csv",
                          key="csv_recent", icon=ui.ICON["download"], on_click="ignore")


def main() -> None:
    ctx, user = ui.page_context()
    workspaces = {w.id: w for w in analytics.viewable_workspaces(ctx, user)}
    warning = apply_query_app(list(workspaces.values()))
    drop_app_on_workspace_tab()
    title, switch = st.columns([4.6, 1.6], vertical_alignment="bottom")
    title.title("Analytics")
    with switch:
        current = ui.workspace_switcher(ctx, user)  # shared with My apps
    if warning:
        st.warning(warning)
    if current is None:
        st.info("You are not in any workspace yet. Deploy an app, or ask a workspace admin "
                "to add you, and its analytics show up here.")
        return
    ws = workspaces.get(current[0]) or analytics.WorkspaceRef(*current, apps=())
    workspace, app_viewers = st.tabs(list(TABS), key=TAB_KEY, on_change="rerun")
    try:
        with workspace:
            if workspace.open is not False:
                workspace_tab(ctx, user, ws)
        with app_viewers:
            if app_viewers.open is not False:
                app_tab(ctx, user, ws)
    except BackendError as e:
        st.error(str(e))


if __name__ == "__main__":
    main()
