"""Start-up of a supervisor (the leader): which live instance each app keeps, and what each
app needs next when its instance is gone (`Reconciler.adopt` runs this for every app).

An app may have two live instances when a supervisor died during a zero-downtime redeploy:
the one saved on the app row serves and is adopted, the other is stopped (the push is
picked up again; its build was marked interrupted)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from backend.apps import state as appstate
from models import App, id_of, session_scope, utcnow
from supervisor.control import hibernation
from supervisor.control.lifecycle import Lifecycle
from supervisor.control.requests import forget_requests
from supervisor.runtimes.base import Instance
from supervisor.sources import checkouts

log = logging.getLogger("supervisor.control.reconciler")
RESTARTED = ("The platform restarted; waiting for its turn to start from its checkout "
             "and environment")


def saved_blob(app: App) -> dict[str, Any]:
    """The app row's saved runtime state ({} when none or unreadable)."""
    try:
        saved = json.loads(app.runtime_state or "{}")
    except ValueError:
        return {}
    return saved if isinstance(saved, dict) else {}


def same_instance(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Do two instance states name the same process, container or service?"""
    return any(a.get(k) and a.get(k) == b.get(k) for k in ("container_id", "service_id", "pid"))


def requeue(lc: Lifecycle, app_id: int, reason: str, state: str = "queued") -> None:
    """`queued` (deploy again) or `starting` (start from the checkout and environment
    on disk: `Lifecycle.resume`, which deploys when they are missing)."""
    with session_scope(lc.ctx.engine) as s:
        app = s.get(App, app_id)
        if app is not None:
            appstate.transition(s, app, state, reason)


def adopt_tree(lc: Lifecycle, app_id: int, tree_name: str) -> None:
    """Point `src` at the tree the serving instance runs in (a supervisor may have died
    between switching the route and moving the pointer) and drop unused trees."""
    app_dir = lc.app_dir(app_id)
    tree = app_dir / tree_name if tree_name else None
    if tree is not None and tree.is_dir() and checkouts.current_tree(app_dir) != tree:
        checkouts.point_current(app_dir, tree)
    checkouts.remove_unused(app_dir)


async def adopt_app(lc: Lifecycle, app: App, candidates: list[Instance],
                    pending: dict[int, dict[str, tuple[int, str]]]) -> None:
    """Adopt the app's live instance the row names (stop the others), or queue what
    the app needs next after a supervisor restart."""
    runtime, app_id = lc.runtime, id_of(app)
    if app.desired_state == "deleted":  # stop them all; the delete action follows
        for extra in candidates:
            await runtime.stop(app_id, extra.state)
        return
    saved = saved_blob(app)
    # The instance the row names; with no name saved (an older row), any one. One
    # the row does not name is never adopted: its tree may not be the kept one.
    inst = next((i for i in candidates
                 if same_instance(i.state, saved.get("instance", {}))),
                candidates[0] if candidates and not saved.get("instance") else None)
    for extra in candidates:
        if extra is not inst:
            log.warning("app=%s stopping a second instance left by a redeploy", app_id)
            await runtime.stop(app_id, extra.state)
    adopt_tree(lc, app_id, saved.get("tree", ""))
    if inst is not None and app.state in ("running", "starting"):
        lc.save_instance(app_id, inst, adopted=True)
        log.info("app=%s adopted instance at %s:%s", app_id, *inst.address)
        if app.state == "starting":  # its build was done: start it again from disk
            requeue(lc, app_id, RESTARTED, "starting")
        return
    if inst is not None:
        await runtime.stop(app_id, inst.state)
    if app.state == "building":
        requeue(lc, app_id, "Supervisor restarted during the deploy; deploying again")
    elif app.state == "starting":  # built (or waiting for a start slot): start from disk
        requeue(lc, app_id, RESTARTED, "starting")
    elif app.state == "running" and "sleep" in pending.get(app_id, {}):
        # It died while being put to sleep: finish that instead of restarting it.
        upto, when = pending[app_id]["sleep"]
        await hibernation.hibernate(lc, app_id,
                                    datetime.fromisoformat(when) if when else utcnow())
        forget_requests(lc.ctx, app_id, ("sleep",), upto)
        if (lc.load(app_id) or app).state == "running":
            requeue(lc, app_id, RESTARTED, "starting")
    elif app.state == "running":
        requeue(lc, app_id, RESTARTED, "starting")
