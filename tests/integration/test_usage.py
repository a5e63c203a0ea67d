"""Memory usage over time: the sampler (supervisor/control/usage_sampler.py) with the real
process runtime, the series (backend/analytics/usage.py: downsampling, permissions,
retention), the API route and the chart on the App details page (AppTest)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import pytest
from sqlmodel import select

from backend import workspaces
from backend.accounts import auth
from backend.analytics import usage
from backend.apps import service as apps
from backend.errors import NotFound, ValidationError
from models import App, session_scope
from models.usage import UsageSample
from pages.dashboard import _ui as ui
from supervisor.control.usage_sampler import sample_once
from supervisor.runtimes.process import ProcessRuntime
from tests.support.api_world import World, run
from tests.support.api_world import auth as api_auth
from tests.support.dashboard import REPO, Dash, open_dashboard

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MIB = 1 << 20


def running_app(ctx: Any, admin: Any, state: dict[str, Any] | None = None,
                subdomain: str = "sampled") -> int:
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain=subdomain)
    with session_scope(ctx.engine) as s:
        row = s.get(App, app.id)
        row.state = "running"
        row.memory_limit_mb = 300
        row.runtime_state = json.dumps({"engine": "process", "instance": state or {}})
        s.add(row)
    return app.id


# The sampler -----------------------------------------------------------------------------
def test_sampler_writes_a_row_per_running_app_from_the_process_runtime(ctx, admin) -> None:
    """A real process (holding ~40 MiB) read by ProcessRuntime.usage through its saved
    instance state, as the leader's scheduled job does."""
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys, time\nx = b'x' * (40 << 20)\nprint('ok', flush=True)\n"
                             "sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
        state = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}
        app_id = running_app(ctx, admin, state)
        idle = running_app(ctx, admin, {}, subdomain="no-instance")  # nothing to read
        runtime = ProcessRuntime(dataclasses.replace(ctx.settings,
                                                     process_memory_limit="off"))
        assert asyncio.run(sample_once(ctx, runtime, now=T0)) == 1
        assert asyncio.run(sample_once(ctx, runtime, now=T0 + timedelta(minutes=1))) == 1
    finally:
        proc.kill()
        proc.wait(10)
    with session_scope(ctx.engine) as s:
        rows = list(s.exec(select(UsageSample).order_by(UsageSample.at)))
    assert [r.app_id for r in rows] == [app_id, app_id] and idle not in {r.app_id for r in rows}
    assert all(r.memory_bytes >= 40 * MIB and r.memory_limit_bytes == 300 * MIB for r in rows)
    assert rows[0].at == T0 and rows[0].cpu_percent is not None
    # Gone: the next pass skips it instead of failing.
    assert asyncio.run(sample_once(ctx, ProcessRuntime(ctx.settings))) == 0


# The series ------------------------------------------------------------------------------
def test_short_ranges_are_returned_as_sampled(ctx, admin) -> None:
    app_id = running_app(ctx, admin)
    for i in range(5):
        usage.record_sample(ctx, app_id, (100 + i) * MIB, 300 * MIB, 1.5,
                            at=T0 + timedelta(minutes=i))
    usage.record_sample(ctx, app_id, 999 * MIB, 300 * MIB, at=T0 - timedelta(hours=2))
    series = usage.app_usage(ctx, admin, app_id, hours=1, now=T0 + timedelta(minutes=10))
    assert not series.downsampled and series.memory_limit_bytes == 300 * MIB
    assert [p.memory_bytes // MIB for p in series.points] == [100, 101, 102, 103, 104]
    assert series.points[0].at == T0


def test_long_ranges_are_downsampled_keeping_mean_and_peak(ctx, admin) -> None:
    app_id = running_app(ctx, admin)
    with session_scope(ctx.engine) as s:  # 14 days, one sample a minute
        s.add_all(UsageSample(app_id=app_id, at=T0 + timedelta(minutes=i),
                              memory_bytes=(500 if i == 7000 else 100) * MIB,
                              memory_limit_bytes=300 * MIB, cpu_percent=2.0)
                  for i in range(14 * 24 * 60))
    now = T0 + timedelta(days=14)
    series = usage.app_usage(ctx, admin, app_id, hours=14 * 24, now=now)
    assert series.downsampled and 400 < len(series.points) <= usage.MAX_POINTS
    assert max(p.peak_memory_bytes for p in series.points) == 500 * MIB  # the spike stays
    assert max(p.memory_bytes for p in series.points) < 500 * MIB  # the mean smooths it
    assert all(p.memory_limit_bytes == 300 * MIB and p.cpu_percent == 2.0
               for p in series.points)
    assert [p.at for p in series.points] == sorted(p.at for p in series.points)


def test_downsample_buckets() -> None:
    pts = [usage.UsagePoint(T0 + timedelta(seconds=i), i, i, 10, None) for i in range(100)]
    out = usage.downsample(pts, T0, T0 + timedelta(seconds=100), max_points=10)
    assert [p.memory_bytes for p in out] == [round(sum(range(k, k + 10)) / 10)
                                             for k in range(0, 100, 10)]
    assert [p.peak_memory_bytes for p in out] == list(range(9, 100, 10))
    assert usage.downsample(pts[:5], T0, T0 + timedelta(seconds=5), 10) == pts[:5]


def test_usage_is_read_like_the_apps_analytics(ctx, admin) -> None:
    app_id = running_app(ctx, admin)
    outsider = auth.create_user(ctx, "outsider", "outsider-password")
    viewer = auth.create_user(ctx, "viewer", "viewer-password")
    ws = apps.get_app(ctx, admin, app_id).workspace_id
    workspaces.set_member(ctx, admin, ws, "viewer", "viewer")
    with pytest.raises(NotFound):
        usage.app_usage(ctx, outsider, app_id)
    assert usage.app_usage(ctx, viewer, app_id).points == []
    with pytest.raises(ValidationError):
        usage.app_usage(ctx, admin, app_id, hours=0)


def test_retention_prunes_old_samples(ctx, admin) -> None:
    app_id = running_app(ctx, admin)
    for days in (20, 13, 0):
        usage.record_sample(ctx, app_id, MIB, MIB, at=T0 - timedelta(days=days))
    assert usage.prune_samples(ctx, now=T0) == 1  # default: 14 days kept
    keep_all = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, usage_retention_days=0))
    assert usage.prune_samples(keep_all, now=T0 + timedelta(days=100)) == 0


# The API ---------------------------------------------------------------------------------
def test_api_usage_route(world: World) -> None:
    app_id = world.new_app("memory")
    usage.record_sample(world.ctx, app_id, 120 * MIB, 1024 * MIB, 3.0)

    async def scenario(c: Any) -> None:
        r = await c.get(f"/apps/{app_id}/usage?hours=2", headers=api_auth(world, "viewer"))
        body = await r.json()
        assert r.status == 200, body
        assert body["memory_limit_bytes"] == 1024 * MIB and not body["downsampled"]
        (point,) = body["points"]
        assert point["memory_bytes"] == 120 * MIB and point["cpu_percent"] == 3.0
        assert body["instances"] == [] and body["memory_warning"] is None
        r = await c.get(f"/apps/{app_id}/usage?hours=nan", headers=api_auth(world, "viewer"))
        assert r.status == 422 and (await r.json())["error"]["field"] == "hours"
        r = await c.get(f"/apps/{app_id}/usage", headers=api_auth(world, "outsider"))
        assert r.status == 404
        r = await c.get("/openapi.json")
        assert "/apps/{app_id}/usage" in (await r.json())["paths"]

    run(world, scenario)


# The page --------------------------------------------------------------------------------
def charts(at: Any) -> list[dict[str, Any]]:
    return [json.loads(e.proto.spec) for e in at.get("vega_lite_chart")]


def test_app_page_shows_the_memory_chart_with_the_limit(dash: Dash) -> None:
    app_id = running_app(dash.ctx, dash.admin)
    now = datetime.now(UTC)
    for i in range(3):
        usage.record_sample(dash.ctx, app_id, (150 + 10 * i) * MIB, 300 * MIB, 1.0,
                            at=now - timedelta(minutes=3 - i))
    at = open_dashboard(dash.admin, page=ui.APP, query={"app": str(app_id)})
    assert not at.exception
    assert any(s.value == "Memory and CPU" for s in at.subheader)
    spec, cpu = charts(at)
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["line", "point", "rule"]
    line, _, rule = (layer["data"]["values"] for layer in spec["layer"])
    assert [r["memory"] for r in line] == [150.0, 160.0, 170.0]
    assert [(r["y"], r["label"]) for r in rule] == [
        (300, "Limit 300 MiB"), (240, "Warning at 80 % (240 MiB)")]
    assert [layer["mark"]["type"] for layer in cpu["layer"]] == ["line", "point"]
    assert any("Latest: 170 MiB of 300 MiB (57 %)" in c.value for c in at.caption)


def test_app_page_without_samples_says_so(dash: Dash) -> None:
    app_id = running_app(dash.ctx, dash.admin)
    at = open_dashboard(dash.admin, page=ui.APP, query={"app": str(app_id)})
    assert not at.exception and charts(at) == []
    assert any("No memory samples" in c.value for c in at.caption)
