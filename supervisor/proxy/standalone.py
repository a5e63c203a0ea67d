"""`python -m supervisor proxy`: a proxy of its own, for N replicas behind a load balancer
(docs/scale-out.md). It keeps no state another replica needs:

- routes: the table is reloaded from the `App` rows every `route_poll_interval` seconds
  (`routes.RoutePoller`); the dashboard and the Manage app panel are those of a live
  supervisor (its `cluster_node` row: the leader's, else the freshest);
- sign-in tokens are database rows (`tokens.py`), so any replica redeems what another
  minted; session cookies are signed with the keys in `<data_dir>/keys`, which every
  replica must share (same data dir, or a copy of `keys/`);
- view events are written by each replica for the sessions it relays (`backend.analytics.views`),
  one row per session; a viewer reconnecting through another replica within the
  analytics window is still one view (the database deduplicates);
- the API (webhooks, REST) is served too: what it asks of the supervisor is database
  state (desired state, `app_request` rows), acted on by the leader.

The per-token API rate limit and the sign-in loop guard stay per replica.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from backend.context import Context, open_context
from backend.platform import setting_overrides
from backend.platform.settings import Settings
from supervisor.api import make_api_app
from supervisor.control.leader import NodeRegistry, current_leader, live_nodes, me
from supervisor.control.requests import enqueue_request
from supervisor.proxy.server import start_proxy
from supervisor.routes import RoutePoller, RouteTable

log = logging.getLogger("supervisor.proxy.standalone")
HEARTBEAT = 5.0


class _LeaderEngine:
    """`runtime.name` for the API's health answer: the leader's engine."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def name(self) -> str:
        leader = current_leader(self.ctx)
        for node in live_nodes(self.ctx):
            if node.role == "supervisor" and (leader is None or node.node_id == leader.holder):
                return node.engine
        return "unknown"


class DatabaseRequests:
    """What the API needs of a reconciler, as database rows for the leader."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.runtime = _LeaderEngine(ctx)

    def request(self, app_id: int, kind: str, arg: object = None) -> None:
        enqueue_request(self.ctx, app_id, kind, arg)

    def push_detected(self, app_id: int, source: str) -> None:
        self.request(app_id, "sync", source)


async def serve_proxy(settings: Settings) -> int:
    ctx = open_context(settings)
    routes = RouteTable()
    poller = RoutePoller(ctx, routes)
    await asyncio.to_thread(poller.refresh)
    node = me(settings.node_id)
    registry = NodeRegistry(ctx, node, "proxy")
    runner = await start_proxy(settings, routes, api=make_api_app(ctx, DatabaseRequests(ctx)),
                               ctx=ctx)
    poll_task = asyncio.create_task(poller.run(), name="routes")
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            await asyncio.to_thread(registry.beat)
            await asyncio.to_thread(setting_overrides.refresh_or_keep, ctx)  # live settings
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT)
            except TimeoutError:
                pass

    beat_task = asyncio.create_task(beat(), name="heartbeat")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("standalone proxy node=%s routes=%d", node.node_id, len(routes.all()))
    print(f"Streamlit Cloud proxy {node.node_id} on {settings.bind}:{settings.port} "
          f"({settings.public_url()})", flush=True)
    await stop.wait()
    poller.stop()
    await asyncio.gather(poll_task, beat_task, return_exceptions=True)
    await runner.cleanup()  # flushes pending view events
    await asyncio.to_thread(registry.remove)
    return 0
