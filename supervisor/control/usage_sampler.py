"""The usage sampler: every `usage_sample_interval` seconds (a scheduled job of
supervisor/control/schedules.py, on the leader only) it asks the runtime for the memory and CPU use
of each running app's instance (`Runtime.usage`) and stores one `UsageSample` per app
(memory, the app's memory limit at that moment, CPU), all in one transaction. Apps whose
instance cannot be read (gone between the query and the reading) are skipped: the
reconciler notices exits, not this job. backend/analytics/usage.py reads the series.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from sqlmodel import select

from backend.context import Context
from models import App, id_of, session_scope, utcnow
from models.usage import UsageSample
from supervisor.runtimes.base import Instance, Runtime

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
    rows = []
    for app in apps:
        state = _instance_state(app, instances or {})
        if not state:
            continue
        try:
            usage = await runtime.usage(id_of(app), state)
        except Exception:  # one unreadable instance must not stop the pass
            log.debug("app=%s usage failed", app.id, exc_info=True)
            continue
        if usage is None:
            continue
        limit_mb = app.memory_limit_mb or ctx.settings.memory_limit_mb
        rows.append(UsageSample(app_id=id_of(app), at=at, memory_bytes=int(usage.memory_bytes),
                                memory_limit_bytes=limit_mb << 20,
                                cpu_percent=float(usage.cpu_percent)))
    if rows:
        await asyncio.to_thread(_store, ctx, rows)
    return len(rows)


def _store(ctx: Context, rows: list[UsageSample]) -> None:
    with session_scope(ctx.engine) as s:
        s.add_all(rows)
