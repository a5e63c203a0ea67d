"""The installation record: which engine apps run on, and how it isolates them.

The supervisor records the engine at its first start and keeps it (supervisor/
engine_choice.py), so a Docker daemon that appears later never makes a start move every
app to Docker and leave the old processes running. It refreshes the isolation mode at every
start; the dashboard reads both through here (`isolation_notice`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from backend.context import Context
from models import Installation, session_scope, utcnow

ROW_ID = 1
SANDBOXED, SINGLE_TENANT, CONTAINERS = "sandboxed", "single-tenant", "containers"
UNAVAILABLE = "unavailable"  # sandboxing wanted, this host cannot: builds and starts refused


@dataclass(frozen=True)
class InstallationInfo:
    engine: str = ""  # "" until a supervisor first started
    isolation: str = ""
    isolation_detail: str = ""


@dataclass(frozen=True)
class IsolationNotice:
    """What the dashboard shows: a sentence for admins, a short one for everyone signed in,
    and whether it is a warning."""
    text: str
    short: str
    warning: bool


def read_installation(ctx: Context) -> InstallationInfo:
    with session_scope(ctx.engine) as s:
        row = s.get(Installation, ROW_ID)
    if row is None:
        return InstallationInfo()
    return InstallationInfo(row.engine, row.isolation, row.isolation_detail)


def recorded_engine(ctx: Context) -> str:
    """The engine apps of this installation run on; "" before the first start."""
    return read_installation(ctx).engine


def claim_engine(ctx: Context, engine: str) -> str:
    """Record `engine` unless one is recorded already; return the recorded one. Two
    supervisors starting at once both get the engine of whichever wrote first."""
    try:
        with session_scope(ctx.engine) as s:
            row = s.get(Installation, ROW_ID)
            if row is not None and row.engine:
                return row.engine
            row = row or Installation(id=ROW_ID)
            row.engine, row.engine_recorded_at, row.updated_at = engine, utcnow(), utcnow()
            s.add(row)
    except IntegrityError:  # another supervisor inserted the row meanwhile
        return recorded_engine(ctx) or engine
    return recorded_engine(ctx)


def set_engine(ctx: Context, engine: str) -> None:
    """Record `engine` in place of any earlier one (a migration, or an explicit setting
    while nothing ran on the old engine). The isolation mode is cleared: the next start
    records the new engine's."""
    with session_scope(ctx.engine) as s:
        row = s.get(Installation, ROW_ID) or Installation(id=ROW_ID)
        if row.engine != engine:
            row.isolation, row.isolation_detail = "", ""
        row.engine, row.engine_recorded_at, row.updated_at = engine, utcnow(), utcnow()
        s.add(row)


def record_isolation(ctx: Context, isolation: str, detail: str = "") -> None:
    with session_scope(ctx.engine) as s:
        row = s.get(Installation, ROW_ID) or Installation(id=ROW_ID)
        row.isolation, row.isolation_detail, row.updated_at = isolation, detail[:255], utcnow()
        s.add(row)


def isolation_notice(info: InstallationInfo) -> IsolationNotice | None:
    """Where apps run, for the dashboard; None before the first start."""
    if not info.engine:
        return None
    where = f"Apps run in: {info.engine} runtime"
    if info.isolation == SINGLE_TENANT:
        return IsolationNotice(
            f"{where}, single-tenant mode: hosted apps run unsandboxed as the platform's "
            "user; every developer is trusted.",
            f"{where}, single-tenant (apps are not sandboxed).", warning=True)
    if info.isolation == UNAVAILABLE:
        why = f" ({info.isolation_detail})" if info.isolation_detail else ""
        return IsolationNotice(
            f"{where}, but this server cannot sandbox apps{why}: builds and starts are "
            "refused until an operator installs what is missing, or sets process_sandbox = "
            "\"off\" for single-tenant mode.",
            f"{where}; the app sandbox is missing on this server, so apps cannot start.",
            warning=True)
    if info.isolation == SANDBOXED:
        how = f" ({info.isolation_detail})" if info.isolation_detail else ""
        text = f"{where}, sandboxed{how}."
        return IsolationNotice(text, text, warning=False)
    if info.isolation == CONTAINERS:
        text = f"{where}, one container per app."
        return IsolationNotice(text, text, warning=False)
    return IsolationNotice(f"{where}.", f"{where}.", warning=False)
