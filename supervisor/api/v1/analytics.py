"""`/apps/{app_id}/analytics` (viewers) and `/apps/{app_id}/usage` (memory and CPU)."""

from __future__ import annotations

import math

from aiohttp import web

from backend.analytics import reports as analytics
from backend.analytics import resources, usage
from backend.apps import service as app_service
from backend.context import Context
from supervisor.api.support import ApiError, ok, path_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of


async def app_analytics(ctx: Context, request: web.Request) -> web.Response:
    app_id, user = path_int(request, "app_id"), user_of(request)
    viewers = await call(analytics.app_viewers, ctx, user, app_id)
    view = await call(app_service.get_app, ctx, user, app_id)
    monthly = await call(analytics.workspace_monthly_viewers, ctx, user, view.workspace_id)
    return ok({"app_id": app_id, "visibility": viewers.visibility,
               "total_unique_viewers": viewers.total_unique,
               "total_views": viewers.total_views,
               "recent_viewers": [{"name": r.display_name, "kind": r.kind,
                                   "last_view": r.last_view, "views": r.views}
                                  for r in viewers.recent],
               "workspace_monthly_viewers": [
                   {"month": p.month, "viewers": p.viewers, "complete": p.complete}
                   for p in monthly]})


async def app_usage(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    hours = query_float(request, "hours", usage.DEFAULT_HOURS, usage.MAX_HOURS)
    res = await call(resources.app_resources, ctx, user_of(request), app_id, hours)
    series, warning = res.series, res.warning
    return ok({"app_id": app_id, "since": series.since, "until": series.until,
               "memory_limit_bytes": series.memory_limit_bytes,
               "downsampled": series.downsampled,
               "points": [{"at": p.at, "memory_bytes": p.memory_bytes,
                           "peak_memory_bytes": p.peak_memory_bytes,
                           "memory_limit_bytes": p.memory_limit_bytes,
                           "cpu_percent": p.cpu_percent} for p in series.points],
               "instances": [{"at": p.at, "instance": p.instance,
                              "memory_bytes": p.memory_bytes, "uss_bytes": p.uss_bytes,
                              "cpu_percent": p.cpu_percent} for p in res.instances],
               "memory_warning": None if warning is None else {
                   "since": warning.since, "peak_memory_bytes": warning.peak_bytes,
                   "memory_limit_bytes": warning.limit_bytes, "percent": warning.percent}})


def query_float(request: web.Request, name: str, default: float, high: float) -> float:
    """A number query parameter above 0 and at most `high`; 422 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= high:  # also refuses nan and inf
        raise ApiError(422, "invalid", f"{name} is a number above 0 and at most {high:g}.",
                       field=name)
    return value


ENDPOINTS = [
    Endpoint("GET", "/apps/{app_id}/analytics", app_analytics, "read", "Viewer analytics"),
    Endpoint("GET", "/apps/{app_id}/usage", app_usage, "read",
             "Memory (PSS: shared pages counted once) and CPU use over the last ?hours= "
             "(default 24, at most 2160), at most 500 points: the app's sum, each "
             "instance's (with USS), and the memory warning while one is current"),
]
