"""The usage sampler: every `usage_sample_interval` seconds (a scheduled job of
supervisor/control/schedules.py, on the leader only) it asks the runtime for the memory and CPU use
of each running app's instance (`Runtime.usage`) and stores one `UsageSample` per app
(memory: PSS summed over its instances; the app's memory limit at that moment; CPU) and
one `InstanceUsageSample` per instance (PSS, USS, CPU), and moves the memory warning on
(`backend.analytics.resources.observe`: developers are warned once an app stays above
`memory_warning_percent` of its limit for `memory_warning_minutes`), all in one
transaction. Apps whose instance cannot be read (gone between the query and the reading)
are skipped: the reconciler notices exits, not this job. backend/analytics/usage.py and
resources.py read the series.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from sqlmodel import select

from backend.analytics import resources
from backend.context import Context
from models import App, id_of, session_scope, utcnow
from models.resources import InstanceUsageSample
from models.usage import UsageSample
from supervisor.runtimes.base import Instance, Runtime, Usage

log = logging.getLogger("supervisor.usage")


def _instance_state(app: App, instances: dict[int, Instance]) -> dict[str, Any]:
    inst = instances.get(id_of(app))
    if inst is not None:
        return inst.state
    try:
        saved = json.loads(app.runtime_state or "{}").get("instance", {}) or {}
    except ValueError:
        return {}
    return saved if isinstance(saved, dict) else {}


async def sample_once(ctx: Context, runtime: Runtime,
                      instances: dict[int, Instance] | None = None,
                      now: datetime | None = None) -> int:
    """Sample every running app once; returns the number of samples stored.
    `instances`: the reconciler's view of what runs (else the states saved on the rows)."""
    with session_scope(ctx.engine) as s:
        apps = list(s.exec(select(App).where(App.state == "running")).all())
    at = now or utcnow()
    readings: list[tuple[App, Usage, int]] = []
    for app in apps:
        state = _instance_state(app, instances or {})
        if not state:
            continue
        try:
            found = await runtime.usage(id_of(app), state)
        except Exception:  # one unreadable instance must not stop the pass
            log.debug("app=%s usage failed", app.id, exc_info=True)
            continue
        if found is not None:
            limit_mb = app.memory_limit_mb or ctx.settings.memory_limit_mb
            readings.append((app, found, limit_mb << 20))
    if readings:
        await asyncio.to_thread(_store, ctx, readings, at)
    return len(readings)


def _store(ctx: Context, readings: list[tuple[App, Usage, int]], at: datetime) -> None:
    """The pass's rows (the app's sum, one per instance) and the memory warning's state,
    in one transaction: a warning is queued only with the sample that made it due."""
    with session_scope(ctx.engine) as s:
        watches = resources.load_watches(s)
        for app, found, limit in readings:
            app_id = id_of(app)
            s.add(UsageSample(app_id=app_id, at=at, memory_bytes=int(found.memory_bytes),
                              memory_limit_bytes=limit, cpu_percent=float(found.cpu_percent)))
            s.add_all(InstanceUsageSample(app_id=app_id, at=at, instance=one.name[:64],
                                          memory_bytes=int(one.memory_bytes),
                                          uss_bytes=one.uss_bytes,
                                          cpu_percent=float(one.cpu_percent))
                      for one in found.instances)
            if resources.observe(s, ctx.settings, app, at, int(found.memory_bytes), limit,
                                 watches):
                log.warning("app=%s above %s%% of its memory limit for %s min; developers "
                            "warned", app_id, ctx.settings.memory_warning_percent,
                            ctx.settings.memory_warning_minutes)
        resources.forget_stale(s, ctx.settings, watches, {id_of(a) for a, _, _ in readings}, at)
