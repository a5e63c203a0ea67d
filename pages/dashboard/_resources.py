"""Memory and CPU of one app over time, against its limit: the section App details and the
Manage app panel show (`resources_section`), read through `backend.analytics.resources`.

Memory is PSS summed over the app's instances (each shared page counted once), one line
"All instances"; with more than one instance each has its own line too. The tooltip adds
the peak of a downsampled point and the private memory (USS). The limit is a dashed rule,
the warning threshold (`memory_warning_percent`) a dotted one; while the app has stayed
above it for `memory_warning_minutes` a warning box says so (the developers also got a
notice and an email). CPU is a second chart, in % of one core. `memory_chart`,
`cpu_chart`, `now_caption` and `memory_caption` are pure, so tests read them.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import streamlit as st

from backend.analytics import resources
from backend.context import Context
from backend.errors import NotFound
from pages.dashboard import _ui as ui

MIB = 1 << 20
RANGES = {"Last hour": 1.0, "Last 6 hours": 6.0, "Last 24 hours": 24.0,
          "Last 7 days": 24.0 * 7, "Last 14 days": 24.0 * 14}
TOTAL = "All instances"
RED, GREY, ORANGE = "#FF4B4B", "#808495", "#FFA421"
STOPPED_STATES = frozenset({"crashed", "stopped", "sleeping", "build_failed", "deleting"})


def _x(res: resources.Resources, title: str | None = "Time (UTC)") -> alt.X:
    return alt.X("at:T", title=title, scale=alt.Scale(
        type="utc", domain=[res.series.since.isoformat(), res.series.until.isoformat()]))


def _instances(res: resources.Resources) -> list[str]:
    return sorted({p.instance for p in res.instances})


def memory_rows(res: resources.Resources) -> list[dict[str, Any]]:
    """One row per point and line: the sum, and each instance when there are several."""
    uss: dict[str, int] = {}
    for p in res.instances:
        if p.uss_bytes is not None:
            uss[p.at.isoformat()] = uss.get(p.at.isoformat(), 0) + p.uss_bytes
    rows = [{"at": p.at.isoformat(), "time": ui.exact_time(p.at), "series": TOTAL,
             "memory": round(p.memory_bytes / MIB, 1),
             "peak": round(p.peak_memory_bytes / MIB, 1),
             "uss": round(uss[p.at.isoformat()] / MIB, 1) if p.at.isoformat() in uss else None,
             "limit": round(p.memory_limit_bytes / MIB)} for p in res.series.points]
    if len(_instances(res)) > 1:
        rows += [{"at": p.at.isoformat(), "time": ui.exact_time(p.at),
                  "series": f"Instance {p.instance}", "memory": round(p.memory_bytes / MIB, 1),
                  "peak": round(p.memory_bytes / MIB, 1),
                  "uss": None if p.uss_bytes is None else round(p.uss_bytes / MIB, 1),
                  "limit": None} for p in res.instances]
    return rows


def memory_chart(res: resources.Resources, warn_percent: float,
                 height: int = 240) -> alt.LayerChart | alt.FacetChart:
    """Memory (MiB) per line, points for tooltips, the limit and the warning threshold."""
    rows = memory_rows(res)
    names = [TOTAL] + [f"Instance {n}" for n in _instances(res)] if \
        len(_instances(res)) > 1 else [TOTAL]
    scale = alt.Scale(domain=names,
                      range=[RED, "#0068C9", "#29B09D", "#7D353B", "#FFABAB"][:len(names)])
    color = alt.Color("series:N", title=None, scale=scale,
                      legend=alt.Legend(orient="top") if len(names) > 1 else None)
    y = alt.Y("memory:Q", title="Memory (MiB)", scale=alt.Scale(zero=True))
    tooltip = [alt.Tooltip("time:N", title="Time"), alt.Tooltip("series:N", title="Of"),
               alt.Tooltip("memory:Q", title="MiB (PSS)"),
               alt.Tooltip("peak:Q", title="Peak MiB"),
               alt.Tooltip("uss:Q", title="Private MiB (USS)"),
               alt.Tooltip("limit:Q", title="Limit MiB")]
    data = alt.Data(values=rows)
    line = alt.Chart(data).mark_line().encode(x=_x(res), y=y, color=color)
    points = alt.Chart(data).mark_point(size=18, filled=True).encode(
        x=_x(res), y=y, tooltip=tooltip,
        color=alt.Color("series:N", scale=scale, legend=None))
    limit = round(res.series.memory_limit_bytes / MIB)
    marks = [{"y": limit, "label": f"Limit {limit} MiB", "kind": "limit"}]
    if warn_percent > 0:
        marks.append({"y": round(limit * warn_percent / 100), "kind": "warning",
                      "label": f"Warning at {warn_percent:g} % ({limit * warn_percent / 100:.0f}"
                               " MiB)"})
    rules = alt.Chart(alt.Data(values=marks)).mark_rule(color=GREY).encode(
        y="y:Q", tooltip=[alt.Tooltip("label:N", title="Memory")],
        stroke=alt.Stroke("kind:N", scale=alt.Scale(domain=["limit", "warning"],
                                                    range=[GREY, ORANGE]), legend=None),
        strokeDash=alt.StrokeDash("kind:N", scale=alt.Scale(
            domain=["limit", "warning"], range=[[6, 4], [2, 3]]), legend=None))
    return alt.layer(line, points, rules).properties(height=height)


def cpu_chart(res: resources.Resources,
              height: int = 140) -> alt.LayerChart | alt.FacetChart:
    """CPU (% of one core) of the sum, and of each instance when there are several."""
    rows: list[dict[str, Any]] = [
        {"at": p.at.isoformat(), "time": ui.exact_time(p.at), "series": TOTAL,
         "cpu": round(p.cpu_percent or 0.0, 1)} for p in res.series.points]
    if len(_instances(res)) > 1:
        rows += [{"at": p.at.isoformat(), "time": ui.exact_time(p.at),
                  "series": f"Instance {p.instance}", "cpu": round(p.cpu_percent, 1)}
                 for p in res.instances]
    data = alt.Data(values=rows)
    top = max([10.0] + [float(r["cpu"]) * 1.1 for r in rows])  # idle: a flat line at 0
    y = alt.Y("cpu:Q", title="CPU %", scale=alt.Scale(domain=[0, round(top)]),
              axis=alt.Axis(format=".0f", tickCount=3))
    color = alt.Color("series:N", title=None, legend=None)
    x = _x(res, title=None)  # the memory chart above names the axis
    line = alt.Chart(data).mark_line(strokeWidth=1.5).encode(x=x, y=y, color=color)
    points = alt.Chart(data).mark_point(size=12, filled=True).encode(
        x=x, y=y, color=color,
        tooltip=[alt.Tooltip("time:N", title="Time"), alt.Tooltip("series:N", title="Of"),
                 alt.Tooltip("cpu:Q", title="CPU %")])
    return alt.layer(line, points).properties(height=height)


def memory_caption(state: str, memory: int, limit: int, when: str) -> str:
    """The last sample's figure: current while the app runs, else the figure of when it
    stopped (an app stopped over its limit uses no memory now)."""
    figure = f"{memory / MIB:,.0f} MiB of {limit / MIB:,.0f} MiB"
    if state == "over_limit":
        return f"When it was stopped over its memory limit ({when}): {figure}"
    if state in STOPPED_STATES:
        return f"At the time it stopped ({when}): {figure}; it uses no memory now"
    return f"Latest: {figure}"


def now_caption(res: resources.Resources, state: str) -> str:
    """The newest figures: memory of limit (and %), CPU, instances; '' without samples."""
    if not res.series.points:
        return ""
    latest = res.series.points[-1]
    text = memory_caption(state, latest.memory_bytes, latest.memory_limit_bytes,
                          ui.relative_time(latest.at))
    if latest.memory_limit_bytes and state not in STOPPED_STATES | {"over_limit"}:
        text += f" ({100 * latest.memory_bytes / latest.memory_limit_bytes:.0f} %)"
        text += f" · CPU {latest.cpu_percent or 0.0:.0f} % of a core"
        count = len({p.instance for p in res.instances if p.at == latest.at})
        if count > 1:
            text += f" · {count} instances"
    if res.series.downsampled:
        text += " · downsampled: each point is the mean of its interval"
    return text


def warning_text(warning: resources.Warning, minutes: float) -> str:
    span = f"{minutes * 60:g} seconds" if minutes < 1 else f"{minutes:g} minutes"
    return (f"This app has used more than {warning.percent:g} % of its memory limit for "
            f"over {span} (above it since {ui.exact_time(warning.since)}; highest "
            f"{warning.peak_bytes / MIB:,.0f} MiB of {warning.limit_bytes / MIB:,.0f} MiB). "
            "If it goes over the limit it is stopped: reduce its memory use (st.cache_data, "
            "st.cache_resource, load less at once). Its developers were notified.")


def resources_section(ctx: Context, user: Any, app_id: int, state: str, key: str,
                      default: str = "Last 24 hours", compact: bool = False) -> None:
    """The range picker, the warning box, both charts and the newest figures."""
    choice = st.segmented_control("Range", list(RANGES), default=default, key=key,
                                  label_visibility="collapsed")
    try:
        res = resources.app_resources(ctx, user, app_id, RANGES[choice or default])
    except NotFound:
        return
    if res.warning is not None:
        st.warning(warning_text(res.warning, ctx.settings.memory_warning_minutes),
                   icon=":material/memory:")
    if not res.series.points:
        st.caption("No memory samples in this range yet: they are taken while the app "
                   "runs, every minute by default.")
        return
    st.altair_chart(memory_chart(res, ctx.settings.memory_warning_percent,
                                 180 if compact else 240), width="stretch")
    st.altair_chart(cpu_chart(res, 110 if compact else 140), width="stretch")
    st.caption(now_caption(res, state))
