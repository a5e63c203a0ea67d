"""Helpers for tests of the control loop without a supervisor process: cluster members of
this live process, an expired lease, app rows in a given state, and one reconcile pass."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlmodel import select

from backend.accounts import auth
from backend.apps import service as apps
from backend.context import Context
from models import App, AppEvent, ClusterLease, id_of, session_scope, utcnow
from supervisor.control.leader import LEASE, Me, me
from supervisor.control.reconciler import Reconciler
from supervisor.routes import RouteTable
from supervisor.runtimes.base import Instance, Runtime


def node(name: str) -> Me:
    """Member `name` of the cluster, running as this live process (never "gone")."""
    m = me()
    return Me(name, m.host, m.pid, m.pid_started)


def expire_lease(ctx: Context) -> None:
    """The holder stopped renewing (frozen): its lease runs out."""
    with session_scope(ctx.engine) as s:
        row = s.get(ClusterLease, LEASE)
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)


def starting_app(ctx: Context, tmp_path: Path, subdomain: str = "fenced") -> App:
    """An app of the first admin recorded `starting`, with no instance."""
    auth.ensure_first_admin(ctx)
    user = auth.get_user(ctx, ctx.settings.admin_username)
    view = apps.deploy_app(ctx, user, repo_url=str(tmp_path / "owner" / "repo.git"),
                           subdomain=subdomain)
    with session_scope(ctx.engine) as s:
        app = s.get(App, view.id)
        app.state, app.runtime_state = "starting", "{}"
        s.add(app)
    return app


def running_app(ctx: Context, tmp_path: Path, state: dict[str, Any]) -> App:
    """An app recorded `running` with the instance `state`."""
    app = starting_app(ctx, tmp_path)
    with session_scope(ctx.engine) as s:
        row = s.get(App, app.id)
        row.state, row.runtime_state = "running", json.dumps({"instance": state})
        s.add(row)
    return app


def row_summary(ctx: Context, app_id: int) -> tuple[str, str, int]:
    """(state, runtime_state, number of events) of the app's row."""
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        events = len(s.exec(select(AppEvent).where(AppEvent.app_id == app_id)).all())
        return app.state, app.runtime_state, events


def one_pass(ctx: Context, runtime: Runtime, app: App, state: dict[str, Any]) -> None:
    """One reconcile pass (and the work it starts), with `app`'s instance (`state`) known."""
    async def scenario() -> None:
        reconciler = Reconciler(ctx, runtime, RouteTable())
        reconciler.lifecycle.instances[id_of(app)] = Instance(
            id_of(app), ("127.0.0.1", 9), state, app.restart_generation)
        await reconciler.reconcile_once()
        await asyncio.gather(*reconciler._tasks.values())

    asyncio.run(scenario())
