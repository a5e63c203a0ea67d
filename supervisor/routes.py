"""The route table (like JupyterHub's Proxy contract): subdomain -> (state, address).

An instance with several replicas (swarm_replicas > 1) has every replica's address in
`Route.addresses` (from the saved instance state); the proxy keeps each browser on one of
them (sticky sessions, supervisor/proxy/sticky.py).

One writer, the reconciler (`supervisor/control/reconciler.py`): it publishes every app after each
pass and after each transition, and the dashboard and panel processes' addresses as they
report them; everyone else reads (`get`, `all`, the two addresses).
The proxy's own pages may show a state the backend just recorded before the reconciler
republishes (`supervisor/proxy/pending.py`), without writing the table. The proxy never
decides lifecycle from it: it forwards to `address` when the state is `running`, and shows
one of our own pages otherwise. In one process this is a dict.

Several proxies (docs/scale-out.md): the table is derived from the `App` rows
(`route_for`, which the reconciler publishes too), so a standalone proxy, which has no
reconciler, keeps a replica of what the reconcilers published: `RoutePoller` reloads it every
`route_poll_interval` seconds in a standalone proxy (`python -m supervisor proxy`) and
takes the dashboard and panel addresses from the supervisors' `cluster_node` rows
(the leader's when it is live, else the freshest).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from sqlmodel import select

from backend.context import Context
from models import App, id_of, session_scope
from supervisor.control.leader import current_leader, live_nodes, parse_address

log = logging.getLogger("supervisor.routes")

SERVING_STATES = frozenset({"running"})
OVEN_STATES = frozenset({"queued", "building", "starting"})


@dataclass(frozen=True)
class Route:
    app_id: int
    subdomain: str
    state: str
    address: tuple[str, int] | None  # set when an instance is serving
    reason: str = ""  # the last transition's reason, for our pages
    visibility: str = "public"
    workspace_id: int = 0
    # Every replica's address when the instance has several (swarm_replicas > 1; the proxy
    # pins each browser to one, supervisor/proxy/sticky.py); empty means just `address`.
    addresses: tuple[tuple[str, int], ...] = ()
    # The hash of the process-runtime environment (under settings.envs_path) the instance
    # runs in, whose Streamlit static files the proxy serves itself
    # (supervisor/proxy/static_files.py); "" for other engines.
    static_env: str = ""

    @property
    def serving(self) -> bool:
        return self.state in SERVING_STATES and self.address is not None

    @property
    def upstreams(self) -> tuple[tuple[str, int], ...]:
        """Where the proxy may send this app's requests: every replica, else `address`."""
        if self.addresses:
            return self.addresses
        return (self.address,) if self.address is not None else ()


class RouteTable:
    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self.dashboard_address: tuple[str, int] | None = None
        # The Manage app panel's Streamlit process (served under /__stcloud/panel/).
        self.panel_address: tuple[str, int] | None = None

    def get(self, subdomain: str) -> Route | None:
        return self._routes.get(subdomain)

    def set(self, route: Route) -> None:
        self._routes[route.subdomain] = route

    def replace_all(self, routes: list[Route]) -> None:
        self._routes = {r.subdomain: r for r in routes}

    def all(self) -> list[Route]:
        return list(self._routes.values())


def _addresses(app: App) -> tuple[tuple[str, int] | None, tuple[tuple[str, int], ...]]:
    """(address, every replica's address) of the saved instance: `address` is what the
    engine returned from start; the instance state's "addresses" lists every task of a
    swarm service (runtimes/swarm.py), kept only when there are several."""
    try:
        blob = json.loads(app.runtime_state or "{}")
        addr = blob.get("address")
        address = (str(addr[0]), int(addr[1])) if addr else None
    except (ValueError, TypeError, IndexError, AttributeError):
        return None, ()
    try:
        state = blob.get("instance")
        listed = state.get("addresses") if isinstance(state, dict) else None
        every = tuple((str(a[0]), int(a[1])) for a in listed or ())
    except (ValueError, TypeError, IndexError):
        every = ()
    if address is None or len(every) < 2:
        return address, ()
    return address, every


def _static_env(app: App, address: tuple[str, int] | None) -> str:
    """The app's environment hash when its serving instance is the process runtime's (the
    one engine whose environments are directories on this host), else ""."""
    if address is None or not app.env_hash:
        return ""
    try:
        engine = json.loads(app.runtime_state or "{}").get("engine")
    except (ValueError, AttributeError):
        return ""
    return app.env_hash if engine == "process" else ""


def route_for(app: App) -> Route:
    address, every = _addresses(app) if app.state == "running" else (None, ())
    return Route(app_id=id_of(app), subdomain=app.subdomain, state=app.state,
                 address=address, addresses=every, static_env=_static_env(app, address),
                 reason=app.state_reason, visibility=app.visibility,
                 workspace_id=app.workspace_id)


def load_route(ctx: Context, subdomain: str) -> Route | None:
    """The route the reconciler will publish for `subdomain`, read from its `App` row (None
    when there is none): for a proxy that has not seen the reconciler's table yet."""
    with session_scope(ctx.engine) as s:
        app = s.exec(select(App).where(App.subdomain == subdomain)).first()
        return route_for(app) if app is not None else None


def load_routes(ctx: Context) -> list[Route]:
    with session_scope(ctx.engine) as s:
        return [route_for(a) for a in s.exec(select(App)).all()]


class RoutePoller:
    """Keeps a RouteTable equal to the database (a standalone proxy's table)."""

    def __init__(self, ctx: Context, routes: RouteTable, interval: float | None = None,
                 addresses: bool = True) -> None:
        self.ctx = ctx
        self.routes = routes
        self.interval = max(interval or ctx.settings.route_poll_interval, 0.05)
        self.addresses = addresses
        self._stop = asyncio.Event()

    def refresh(self) -> None:
        """Reload (blocking)."""
        routes = load_routes(self.ctx)
        if self.addresses:
            self.routes.dashboard_address, self.routes.panel_address = \
                dashboard_addresses(self.ctx)
        self.routes.replace_all(routes)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # keep the last table while the database is away
                log.warning("route reload failed", exc_info=True)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()


def dashboard_addresses(ctx: Context) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """(dashboard, panel) of a live supervisor: the leader's, else the freshest."""
    nodes = [n for n in live_nodes(ctx, within=max(3 * ctx.settings.lease_seconds, 15.0))
             if n.role == "supervisor" and n.dashboard_address]
    if not nodes:
        return None, None
    leader = current_leader(ctx)
    nodes.sort(key=lambda n: (leader is not None and n.node_id == leader.holder,
                              n.heartbeat_at), reverse=True)
    best = nodes[0]
    return parse_address(best.dashboard_address), parse_address(best.panel_address)
