"""Composition of the supervisor daemon: settings, database, runtime, adoption, proxy (with
the API: webhooks and health), dashboard, reconcile loop, scheduled jobs (git polling,
hibernation, email); and the start-up banner an operator reads.

Several supervisors may share one database (docs/scale-out.md): every one serves the proxy,
the API and a dashboard; the one holding the leader lease (supervisor/control/leader.py) adopts
what runs and acts, the others only keep their route table fresh. Alone, a supervisor
takes the lease at once (also after a crash of its predecessor on this host), so a single
machine behaves as before.

Signals: SIGTERM (a service manager restarting us) leaves hosted apps running, to be adopted
by the next supervisor; SIGINT (Ctrl-C in the terminal of the run command) stops them too.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from backend.accounts import auth
from backend.context import Context, open_context
from backend.platform import setting_overrides
from backend.platform.settings import Settings
from backend.platform.supervisor_report import PlatformInfo, write_platform
from supervisor.api import make_api_app
from supervisor.control.engine_choice import choose_runtime
from supervisor.control.leader import Fenced, Leadership, NodeRegistry, me
from supervisor.control.reconciler import Reconciler
from supervisor.control.schedules import Schedules
from supervisor.dashboard import DashboardProcess
from supervisor.proxy import start_proxy
from supervisor.routes import RouteTable
from supervisor.runtimes import RuntimeUnavailable

log = logging.getLogger("supervisor")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s "
                        "%(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run


def banner(ctx: Context, engine: str, created: tuple[str, str] | None,
           role: str = "") -> str:
    s = ctx.settings
    lines = ["", "Streamlit Cloud (self-hosted) is up.", "",
             f"  Dashboard:  {s.public_url()}",
             f"  Apps:       {s.public_url('<subdomain>')}",
             f"  Runtime:    {engine}",
             f"  Data:       {s.data_dir}",
             *([f"  Node:       {role}"] if role else []),
             "  Email:      " + (f"{s.smtp_host} ({s.smtp_tls})" if s.smtp_host else
                                 "no SMTP server set; emails wait in the outbox")]
    if created:
        lines += ["", f"  First admin:  username {created[0]}   password {created[1]}",
                  f"  (also in {auth.initial_password_file(ctx)} until you change it)"]
    elif auth.initial_password_file(ctx).exists():
        lines += ["", f"  First admin credentials: {auth.initial_password_file(ctx)}"]
    lines += ["", "  Ctrl-C stops everything, apps included.", ""]
    return "\n".join(lines)


async def serve(settings: Settings) -> int:
    ctx = open_context(settings)
    setting_overrides.refresh(ctx)  # settings changed live, then on every pass
    log.info("settings %s", " ".join(f"{k}={v}" for k, v in settings.masked().items()))
    try:
        runtime = await choose_runtime(ctx)  # the recorded engine (engine_choice.py)
    except RuntimeUnavailable as e:
        log.error("runtime unavailable setting=%s", settings.runtime)
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    log.info("runtime engine=%s (setting runtime=%s)", runtime.name, settings.runtime)
    created = auth.ensure_first_admin(ctx)
    routes = RouteTable()
    versions = await asyncio.to_thread(runtime.python_versions)
    packages_support = getattr(runtime, "packages_support", None)  # process runtime only
    packages_pythons, packages_problem = \
        await asyncio.to_thread(packages_support) if packages_support else ([], "")
    info = PlatformInfo(engine=runtime.name, python_versions=versions,
                        packages_pythons=packages_pythons, packages_problem=packages_problem,
                        dashboard_url=settings.public_url(), heartbeat=time.time())
    node = me(settings.node_id)
    registry = NodeRegistry(ctx, node, "supervisor", runtime.name, versions)
    last_beat, last_addresses = 0.0, None

    def heartbeat() -> None:
        nonlocal last_beat, last_addresses
        setting_overrides.refresh_or_keep(ctx)
        addresses = (routes.dashboard_address, routes.panel_address)
        if time.time() - last_beat >= 5 or addresses != last_addresses:
            info.heartbeat = last_beat = time.time()
            last_addresses = addresses
            write_platform(ctx, info)
            registry.beat(*addresses)

    leadership = Leadership(ctx, node)
    reconciler = Reconciler(ctx, runtime, routes, on_pass=heartbeat, leader=leadership)
    leadership.on_change = lambda leading: reconciler.wake()
    leading = await leadership.step_once()
    if leading:
        try:
            await reconciler.adopt()
            reconciler.active = True
        except Fenced:  # lost the lease during the first adoption: start as a follower
            log.warning("node=%s lost the lease during start-up adoption", node.node_id)
            leading = False
    if not leading:
        await asyncio.to_thread(reconciler.refresh_routes)
    lease_task = asyncio.create_task(leadership.run(), name="lease")
    role = f"{node.node_id} ({'leader' if reconciler.active else 'follower'})"
    log.info("node=%s %s", node.node_id, "leader" if reconciler.active else "follower")
    runner = await start_proxy(settings, routes, api=make_api_app(ctx, reconciler), ctx=ctx)
    schedules = Schedules(ctx, reconciler, leader=leadership)
    schedules.start()
    dashboard = DashboardProcess(settings, reconciler.publish_dashboard)
    dash_task = asyncio.create_task(dashboard.run(), name="dashboard")
    panel = DashboardProcess.panel(settings, reconciler.publish_panel)  # proxy/server.py
    panel_task = asyncio.create_task(panel.run(), name="panel")
    loop_task = asyncio.create_task(reconciler.run(), name="reconcile")
    print(banner(ctx, runtime.name, created, role), flush=True)

    stop = asyncio.Event()
    stop_apps = False

    def on_signal(sig: signal.Signals) -> None:
        nonlocal stop_apps
        stop_apps = stop_apps or sig == signal.SIGINT
        log.info("signal=%s shutting down (apps %s)", sig.name,
                 "stopped" if stop_apps else "left running")
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    schedules.shutdown()
    await reconciler.shutdown()
    loop_task.cancel()
    if stop_apps and reconciler.active:
        await reconciler.stop_all_apps()
    lease_task.cancel()
    await leadership.close()  # the next supervisor takes over without waiting
    await asyncio.to_thread(registry.remove)
    await dashboard.stop()
    dash_task.cancel()
    await panel.stop()
    panel_task.cancel()
    await runner.cleanup()
    await runtime.close()
    return 0
