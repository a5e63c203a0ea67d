"""Requests to the leader: what a process asks of an app's next action ("sync": a push was
seen; "sleep": hibernate at a time; "sleep_now": a person put the app to sleep, the
argument their name) as `app_request` rows, so any supervisor or standalone
proxy can ask and the leader's reconcile loop serves them once the app has no worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, delete, select

from backend.context import Context
from backend.platform.supervisor_report import wake_supervisor
from models import AppRequest, id_of, session_scope

SLEEP_NOW = "sleep_now"  # written by backend.apps.admin_actions
KINDS = ("sync", "sleep", SLEEP_NOW)


def enqueue_request(ctx: Context, app_id: int, kind: str, arg: Any = None) -> None:
    """Ask the leader for `kind` on the app (an `app_request` row) and wake it."""
    text = arg.isoformat() if isinstance(arg, datetime) else ("" if arg is None else str(arg))
    with session_scope(ctx.engine) as s:
        s.add(AppRequest(app_id=app_id, kind=kind, arg=text))
    wake_supervisor(ctx)


def load_requests(ctx: Context) -> dict[int, dict[str, tuple[int, str]]]:
    """app id -> kind -> (newest request id, its argument)."""
    out: dict[int, dict[str, tuple[int, str]]] = {}
    with session_scope(ctx.engine) as s:
        for r in s.exec(select(AppRequest).order_by(col(AppRequest.id))):
            out.setdefault(r.app_id, {})[r.kind] = (id_of(r), r.arg)
    return out


def forget_requests(ctx: Context, app_id: int, kinds: tuple[str, ...], upto: int) -> None:
    with session_scope(ctx.engine) as s:
        s.exec(delete(AppRequest).where(
            col(AppRequest.app_id) == app_id, col(AppRequest.kind).in_(kinds),
            col(AppRequest.id) <= upto))
