"""Which engine a supervisor start uses, and `migrate-runtime`, which moves apps to another.

The engine is an installation's choice, made once: the first start records the engine it
resolved (`runtime = auto`: Docker when a daemon answers, else process) in the
`installation` row, and every later start uses the recorded one. Otherwise a Docker daemon
installed after the first start would make the next start run every app again in Docker
while the old processes, holding their secrets, run on unowned.

- `runtime = auto`: the recorded engine, whatever else is available now; when another
  engine would have been chosen, the log says how to move (`migration_hint`).
- An explicit `runtime` other than the recorded engine: refused while an app instance still
  runs on the recorded engine (the message names `migrate-runtime`); with nothing running
  there the new engine is recorded and used.
- `python -m supervisor migrate-runtime ENGINE` (supervisor stopped): stops every instance
  on the recorded engine with that engine's own `list()`/`stop()`, checks that none is
  left, queues the apps that were serving for a fresh deploy and records ENGINE; the next
  start deploys them there. Each step can be repeated: a run interrupted anywhere is
  finished by running it again, and a supervisor started in between (still on the old
  engine, since the record changes last) only gives the next run more to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import col, select

from backend.apps import state as appstate
from backend.context import Context
from backend.platform import installation
from models import App, session_scope
from supervisor.control.leader import current_leader, process_gone
from supervisor.runtimes import (
    ENGINES,
    RuntimeUnavailable,
    auto_engine,
    engine_problem,
    make_runtime,
)
from supervisor.runtimes.base import Runtime

log = logging.getLogger("supervisor.engine")
SERVING_STATES = ("running", "starting", "building")


def migrate_command(engine: str) -> str:
    return f"python -m supervisor migrate-runtime {engine}"


def migration_hint(recorded: str, other: str) -> str:
    """How an operator moves the apps from `recorded` to `other`, step by step."""
    return (f"to move the apps: stop the supervisor (SIGTERM leaves apps running), run "
            f"`{migrate_command(other)}` (it stops every app instance on {recorded}), then "
            f"start the supervisor with runtime = {other} or auto: it deploys the apps on "
            f"{other}")


def runtime_isolation(runtime: Runtime) -> tuple[str, str]:
    """(isolation mode, detail) of a runtime, as the installation row keeps it. A process
    runtime without an `isolation` attribute runs apps as the supervisor's user."""
    if runtime.name in ("docker", "swarm"):
        return installation.CONTAINERS, runtime.name
    mode = str(getattr(runtime, "isolation", "") or installation.SINGLE_TENANT)
    if mode in (installation.SINGLE_TENANT, "none", "off", "unsandboxed"):
        return installation.SINGLE_TENANT, ""
    if mode == installation.UNAVAILABLE:
        return installation.UNAVAILABLE, str(getattr(runtime, "isolation_problem", "") or "")
    return installation.SANDBOXED, mode


@dataclass(frozen=True)
class EngineDecision:
    engine: str
    record: bool = False  # write `engine` as the installation's engine
    needs_empty: str = ""  # use `engine` only if nothing runs on this (recorded) engine
    hint: str = ""  # a warning for the operator log


def decide(setting: str, recorded: str, auto: Callable[[], str]) -> EngineDecision:
    """The engine a start uses, from the `runtime` setting and the recorded engine."""
    if not recorded:
        return EngineDecision(auto() if setting == "auto" else setting, record=True)
    if setting == "auto":
        now = auto()
        hint = ""
        if now != recorded and recorded != "swarm":
            hint = (f"runtime=auto keeps the recorded engine {recorded} although {now} is "
                    f"available now; {migration_hint(recorded, now)}")
        return EngineDecision(recorded, hint=hint)
    if setting == recorded:
        return EngineDecision(recorded)
    return EngineDecision(setting, record=True, needs_empty=recorded)


async def instances_on(engine: str, ctx: Context) -> int:
    """How many app instances run on `engine` on this host. Raises RuntimeUnavailable when
    the engine does not answer (then nobody can tell)."""
    problem = engine_problem(engine)
    if problem:
        raise RuntimeUnavailable(problem)
    runtime = make_runtime(engine, ctx.settings)
    try:
        return len(await runtime.list())
    finally:
        await runtime.close()


async def engine_in_use(ctx: Context) -> str:
    """For an installation from before engines were recorded: the engine its apps run on
    now, found by asking each engine that answers ("" when no app or no instance)."""
    with session_scope(ctx.engine) as s:
        if s.exec(select(App.id).limit(1)).first() is None:
            return ""
    for engine in ("process", "docker"):
        try:
            if await instances_on(engine, ctx):
                return engine
        except RuntimeUnavailable:
            continue
    return ""


async def current_engine(ctx: Context) -> str:
    """The recorded engine, else the one apps run on now (an upgraded installation)."""
    return installation.recorded_engine(ctx) or await engine_in_use(ctx)


async def choose_runtime(ctx: Context) -> Runtime:
    """The runtime this start uses (module docstring); records the engine and its isolation.
    Raises RuntimeUnavailable with a message for the operator when it must not start."""
    settings = ctx.settings
    recorded = installation.recorded_engine(ctx)
    found = "" if recorded else await engine_in_use(ctx)
    if found:
        log.info("engine not recorded yet; app instances run on %s", found)
    decision = decide(settings.runtime, recorded or found, auto_engine)
    if decision.needs_empty:
        old = decision.needs_empty
        try:
            running = await instances_on(old, ctx)
        except RuntimeUnavailable as e:
            raise RuntimeUnavailable(
                f"runtime = {decision.engine}, but this installation's apps run on {old}, "
                f"which cannot be checked for running apps ({e}). Start {old} again and run "
                f"`{migrate_command(decision.engine)}`, or set runtime = {old}.") from None
        if running:
            raise RuntimeUnavailable(
                f"runtime = {decision.engine}, but {running} app instance(s) still run on "
                f"the {old} engine, where this installation's apps were started; starting "
                f"on {decision.engine} would run them twice and leave the old ones unowned. "
                f"Set runtime = {old} (or auto) to keep them, or "
                f"{migration_hint(old, decision.engine)}.")
        log.warning("engine recorded=%s changed to %s: runtime=%s and no app instance runs "
                    "on %s", old, decision.engine, settings.runtime, old)
    if decision.hint:
        log.warning("engine=%s setting=%s kept: %s", decision.engine, settings.runtime,
                    decision.hint)
    problem = engine_problem(decision.engine)
    if problem and recorded and settings.runtime == "auto":
        problem += (f". This installation's apps run on {recorded}: start it again, or, if "
                    f"it is gone for good, `{migrate_command('process')} --old-engine-gone`")
    if problem:
        raise RuntimeUnavailable(problem)
    runtime = make_runtime(decision.engine, settings)
    if decision.needs_empty:
        installation.set_engine(ctx, decision.engine)
    elif decision.record or not recorded:
        kept = installation.claim_engine(ctx, decision.engine)
        if kept != decision.engine:  # another supervisor recorded first: follow it
            await runtime.close()
            return await choose_runtime(ctx)
    installation.record_isolation(ctx, *runtime_isolation(runtime))
    return runtime


# migrate-runtime ----------------------------------------------------------------------
class MigrationError(RuntimeError):
    """The migration cannot go on; the message says why and what to do."""


def _supervisor_running(ctx: Context) -> str:
    """Who holds the leader lease, if a live supervisor does ("" when none)."""
    lease = current_leader(ctx)
    if lease is None or process_gone(lease.host, lease.pid, lease.pid_started):
        return ""
    return f"{lease.holder} (pid {lease.pid} on {lease.host})"


def _requeue_serving(ctx: Context, old: str, target: str) -> list[str]:
    """Queue a fresh deploy of every app that was serving or on its way to serve."""
    moved = []
    with session_scope(ctx.engine) as s:
        for app in s.exec(select(App).where(col(App.state).in_(SERVING_STATES))):
            if app.desired_state != "running":
                continue
            appstate.transition(s, app, "queued", f"Moved from the {old} runtime to {target} "
                                "(migrate-runtime); deploying again")
            moved.append(app.subdomain)
    return moved


async def _stop_all(ctx: Context, engine: str, say: Callable[[str], None]) -> None:
    """Stop every instance on `engine` with its own list()/stop(); check none is left."""
    runtime = make_runtime(engine, ctx.settings)
    try:
        for inst in await runtime.list():
            await runtime.stop(inst.app_id, inst.state)
            say(f"stopped app {inst.app_id} on {engine}")
        left = await runtime.list()
    finally:
        await runtime.close()
    if left:
        raise MigrationError(f"{len(left)} instance(s) still run on {engine} after stopping "
                             "them; run this again. The engine was not changed.")


async def migrate_runtime(ctx: Context, target: str, say: Callable[[str], None],
                          old_engine_gone: bool = False) -> None:
    """Move every app to `target` (module docstring). Raises MigrationError. With
    `old_engine_gone`, an old engine that does not answer is taken to run nothing (Docker
    uninstalled: its containers went with it)."""
    if target not in ENGINES:
        raise MigrationError(f"Unknown engine {target!r}: use one of {', '.join(ENGINES)}.")
    holder = _supervisor_running(ctx)
    if holder:
        raise MigrationError(f"A supervisor is running ({holder}); it would restart the apps "
                             "on the old engine. Stop it first (SIGTERM leaves apps "
                             "running), then run this again.")
    old = await current_engine(ctx) or (
        auto_engine() if ctx.settings.runtime == "auto" else ctx.settings.runtime)
    if old != target:
        problem = engine_problem(target)
        if problem:
            raise MigrationError(f"The {target} engine cannot run here: {problem}. Nothing "
                                 "was changed.")
        problem = engine_problem(old)
        if problem and not old_engine_gone:
            raise MigrationError(f"The apps run on {old}, which does not answer ({problem}), "
                                 "so its instances cannot be stopped. Start it and run this "
                                 "again (or, if it is gone for good with its instances, add "
                                 "--old-engine-gone). Nothing was changed.")
        if not problem:
            await _stop_all(ctx, old, say)
        moved = _requeue_serving(ctx, old, target)
        say(f"queued for a deploy on {target}: {', '.join(moved) or 'no app'}")
    installation.set_engine(ctx, target)
    say(f"engine: {target} (was {old}); nothing runs on {old}." if old != target else
        f"engine: {target} (already recorded).")
    say(f"Start the supervisor with runtime = {target} or auto: it deploys the apps there.")
    if ctx.settings.runtime not in ("auto", target):
        say(f"warning: the runtime setting is {ctx.settings.runtime}; set it to {target} or "
            "auto before the next start, or that start moves the apps back.")
