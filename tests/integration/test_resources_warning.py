"""Resources in sight with a real app: a process-runtime Streamlit app that holds ~300 MiB
and forks two workers sharing those pages. The sampler stores its PSS (each shared page
once: far below the sum of RSS) per instance and summed; staying above 80 % of its 400 MiB
limit for the warning's minutes queues one memory warning (outbox and dashboard inbox)
naming used and limit; the over-limit email, queued as the lifecycle queues it, names the
highest reading and the limit. Sample times are injected (one a minute), nothing waits."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from sqlmodel import select

from backend.analytics import resources
from backend.apps import service as apps
from backend.apps import state as appstate
from backend.platform import notifications
from models import App, EmailOutbox, Notification, UsageSample, User, session_scope
from models.resources import InstanceUsageSample
from supervisor.control.usage_sampler import sample_once
from tests.support.dashboard import REPO
from tests.support.runtimes import make_app, make_runtime, run_script, start_healthy

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
MIB = 1 << 20
HUNGRY = r'''
import os, time
import streamlit as st
if "buffer" not in st.session_state:
    buffer = bytearray(300 << 20)
    for i in range(0, len(buffer), 4096):
        buffer[i] = 1
    st.session_state.buffer = buffer
    for _ in range(2):
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
st.text("RESULT holding")
'''


def rss_sum(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def test_a_hungry_app_is_sampled_by_pss_and_its_developers_warned(ctx: Any,
                                                                  admin: Any) -> None:
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, usage_sample_interval=60.0, memory_warning_percent=80.0,
        memory_warning_minutes=2.0))
    with session_scope(ctx.engine) as s:
        row = s.get(User, admin.id)
        row.email = "dev@example.com"
        s.add(row)
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="hungry")
    runtime = make_runtime("process", ctx.settings)
    spec = make_app(ctx.settings, app.id, HUNGRY, memory_mb=400)

    async def scenario() -> tuple[list[int], int, int]:
        inst = await start_healthy(runtime, spec)
        try:
            assert await run_script(inst.address) == "holding"
            with session_scope(ctx.engine) as s:
                stored = s.get(App, app.id)
                stored.state, stored.memory_limit_mb = "running", 400
                stored.runtime_state = json.dumps({"engine": "process",
                                                   "instance": inst.state})
                s.add(stored)
            counts = [await sample_once(ctx, runtime, now=T0 + timedelta(minutes=m))
                      for m in range(4)]
            return counts, rss_sum(inst.state["pid"]), inst.state["pid"]
        finally:
            await runtime.stop(app.id, inst.state)

    counts, naive, pid = asyncio.run(scenario())
    assert counts == [1, 1, 1, 1]
    with session_scope(ctx.engine) as s:
        sums = list(s.exec(select(UsageSample).order_by(UsageSample.at)))
        parts = list(s.exec(select(InstanceUsageSample).order_by(InstanceUsageSample.at)))
        mails = list(s.exec(select(EmailOutbox).where(EmailOutbox.kind == "memory_warning")))
        notices = list(s.exec(select(Notification).where(
            Notification.kind == "memory_warning")))
    peak = max(r.memory_bytes for r in sums)
    assert naive > 850 * MIB, f"the forks did not share pages: rss sum {naive >> 20} MiB"
    assert 320 * MIB < peak < 400 * MIB, f"PSS {peak >> 20} MiB (rss sum {naive >> 20} MiB)"
    assert [p.instance for p in parts] == [str(pid)] * 4
    assert [p.memory_bytes for p in parts] == [r.memory_bytes for r in sums]
    assert all(p.uss_bytes is not None and 0 < p.uss_bytes < p.memory_bytes for p in parts)
    # Above 80 % of 400 MiB at minutes 0..3: due at minute 2, once.
    assert len(mails) == 1 and len(notices) == 1, (mails, notices)
    text = mails[0].body_text
    assert f"{peak / MIB:.0f} MiB of 400 MiB at its highest" in text, text
    assert "80 % of its memory limit for 2 minutes" in text, text
    assert mails[0].to_addr == "dev@example.com"

    # The dashboard's reading of the same rows: the warning is current at minute 3.
    seen = resources.app_resources(ctx, admin, app.id, hours=1, now=T0 + timedelta(minutes=3))
    assert seen.warning is not None and seen.warning.limit_bytes == 400 * MIB
    assert len(seen.instances) == 4 and len(seen.series.points) == 4

    # Stopped over its limit (as the lifecycle records it): the email names used and limit.
    with session_scope(ctx.engine) as s:
        stored = s.get(App, app.id)
        event = appstate.transition(s, stored, "over_limit", "over its limit")
        s.flush()
        notifications.queue(s, ctx.settings, stored, "over_limit", str(event.id),
                            limit_mb="400")
    with session_scope(ctx.engine) as s:
        over = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "over_limit")).one()
    assert "memory limit of 400 MiB" in over.body_text
    assert f"was {peak / MIB:.0f} MiB of that 400 MiB limit" in over.body_text, over.body_text



def test_stretches_of_apps_no_longer_sampled_are_dropped(ctx: Any) -> None:
    from models.resources import MemoryWatch
    with session_scope(ctx.engine) as s:
        for app_id, minutes_ago in ((1, 10), (2, 1), (3, 10)):
            at = T0 - timedelta(minutes=minutes_ago)
            s.add(MemoryWatch(app_id=app_id, above_since=at, last_at=at, peak_bytes=1,
                              limit_bytes=2))
    with session_scope(ctx.engine) as s:
        resources.forget_stale(s, ctx.settings, resources.load_watches(s), {3}, T0)
    with session_scope(ctx.engine) as s:  # 1: gone 10 min; 2: within 3 intervals; 3: sampled
        assert sorted(resources.load_watches(s)) == [2, 3]


def test_api_usage_has_instances_and_the_warning(world: Any) -> None:
    from tests.support.api_world import auth as api_auth
    from tests.support.api_world import run as api_run
    app_id = world.new_app("gauge")
    settings = world.ctx.settings
    at = datetime.now(UTC) - timedelta(minutes=2)  # within the last hour
    with session_scope(world.ctx.engine) as s:
        app = s.get(App, app_id)
        for minute in range(2):
            when = at + timedelta(minutes=minute)
            s.add(UsageSample(app_id=app_id, at=when, memory_bytes=900 * MIB,
                              memory_limit_bytes=1024 * MIB, cpu_percent=5.0))
            s.add(InstanceUsageSample(app_id=app_id, at=when, instance="4242",
                                      memory_bytes=900 * MIB, uss_bytes=850 * MIB,
                                      cpu_percent=5.0))
            resources.observe(s, dataclasses.replace(settings, memory_warning_minutes=1.0),
                              app, when, 900 * MIB, 1024 * MIB, resources.load_watches(s))
            s.flush()

    async def scenario(c: Any) -> None:
        r = await c.get(f"/apps/{app_id}/usage?hours=1", headers=api_auth(world, "viewer"))
        body = await r.json()
        assert r.status == 200, body
        assert [(i["instance"], i["uss_bytes"]) for i in body["instances"]] == \
            [("4242", 850 * MIB)] * 2
        assert body["memory_warning"]["peak_memory_bytes"] == 900 * MIB, body

    api_run(world, scenario)
