"""The proxy application: routing by Host, reserved paths, lifecycle of the shared session.

Routing (the proxy reads the route table, it never decides lifecycle):

- `DOMAIN`, or an IP literal (127.0.0.1, [::1]) → the dashboard at
  `routes.dashboard_address`; "The dashboard is starting" (503) while it is None or not
  answering. `/api/v1/...` there goes to the `api` sub-application (JSON 404 without one).
- `<sub>.DOMAIN` → `routes.get(sub)`: unknown → 404 page; serving → forwarded; queued,
  building, starting → the oven page; any other state → that state's page (503).
- anything else → 404 page.

The API is mounted with `add_subapp("/api/v1", api)`; the dispatch middleware decides by
Host before any handler runs, so on app hosts `/api/v1/...` goes to the app and the API's
middlewares never run. (aiohttp still fires the API's `on_response_prepare` signal for
such requests, since routing resolved into it: the API should not use that signal.)

`/__stcloud/` is ours on every host and is never forwarded to an app: `status` (the
waiting pages poll it), the overlay and its endpoints (`endpoints.py`), sign-in
(`signin.py`), and `/__stcloud/panel/`, the Manage app panel: the dashboard's Home.py run
by a second Streamlit process with `server.baseUrlPath=__stcloud/panel`, so it is served on
the app's own host (same origin as the app: browsers send a dashboard-host iframe inside
an app on `localhost` no cookies at all, `localhost` and `app.localhost` being different
sites). The proxy forwards the panel's requests with the visitor's
identity in a header it signs (`X-Stcloud-Identity`; client copies of `X-Stcloud-*` are
always dropped), which the panel page reads with `st.context.headers`.

With a backend context (`start_proxy(..., ctx=ctx)`), app hosts also get:
- the overlay in every HTML page of the app (`inject.py`);
- identity (`access.py`, `signin.py`): a page load without a session is checked once
  through the dashboard host, silently;
- private apps: only signed-in users for whom `backend.apps.sharing.can_view` holds (cached a
  few seconds per user and app); an anonymous page load is sent to sign in, others get a
  403 page; other requests get a bare 401/403;
- cookie isolation (`cookies.py`) both ways, for apps and the panel;
- a view event per new Streamlit session (`/_stcore/stream`, or `/stream` of Streamlit
  before 1.18, opened upstream; not a reconnect that carries its previous session id),
  queued to `backend.analytics.views`;
- pages that depend on who looks (`state_pages.py`).
On the dashboard host the proxy itself answers `/__stcloud/authorize` (sign-in for app
hosts), `/__stcloud/return` and `return.js` (back to the app after signing in) and
`/__stcloud/logout` (a signed sign-out link from an app host). Without a context (unit
tests of forwarding) apps are forwarded as they are, private apps are refused, and the
reserved endpoints other than `status` and the overlay's files answer 404.

Security: an app's own JavaScript shares its origin with `/__stcloud/` on its host, so it
can call our endpoints there as the visiting user (as Community Cloud's app hosts allow
too). Hence they act only on the app of that host and never allow more than the visitor
may do on it; the session cookie is HttpOnly (an app can use it on its own host but never
read it or carry it elsewhere), and the panel's signed header never reaches an app.

The hot path is a cached Host classification (`hosts.py`), a dict lookup in the route
table and a request through the `Forwarder` (`forward.py`), whose one shared
`ClientSession` (opened on startup, closed on cleanup) keeps upstream connections warm. No
database, no per-request session. aiohttp's access log is off (it would log query
strings, which may carry tokens); `supervisor.proxy` logs upstream failures and
websocket opens/closes as `event key=value` lines, per-request lines at DEBUG only.

Connections: `start_proxy` serves on `connections.LimitedSite`, which applies the
header-read, body-read and keep-alive timeouts and the per-client and total connection
caps of `limits.py` (settings `proxy_*`), and routes the loop's out-of-descriptor errors
to a bounded log; relayed websockets are pinged when quiet (`forward.py`).

Shutdown: `runner.cleanup()` closes every relayed websocket with 1001 (going away) in
`on_shutdown`, waits up to `SHUTDOWN_TIMEOUT` for in-flight requests, then closes the
session.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from backend.context import Context
from backend.platform.settings import Settings
from supervisor.proxy import cookies, hosts, inject, pages, security_headers
from supervisor.proxy.apphost import AppHost
from supervisor.proxy.connections import LimitedSite, install_loop_handler
from supervisor.proxy.forward import MAX_HEADER_FIELD, Forwarder
from supervisor.proxy.hosts import RESERVED_PREFIX, HostClassifier, is_reserved
from supervisor.proxy.limits import ConnectionGuard, ConnectionLimits
from supervisor.proxy.oidc import is_oidc_path
from supervisor.proxy.services import Services
from supervisor.proxy.sticky import Sticky
from supervisor.proxy.upstream import Forwarding, UpstreamUnavailable
from supervisor.routes import RouteTable

__all__ = ["PROXY_KEY", "Proxy", "Services", "make_proxy_app", "start_proxy"]

log = logging.getLogger("supervisor.proxy")

STATUS_PATH = "/__stcloud/status"
API_PREFIX = "/api/v1"
SHUTDOWN_TIMEOUT = 5.0
MAX_HEADERS = 100
RETURN_TAGS = b'<script src="/__stcloud/return.js" defer></script>'


class Proxy:
    """One proxy application: the dispatch by Host, the dashboard host, and the lifecycle
    of what its handlers share (the forwarder's session, the view recorder)."""

    def __init__(self, settings: Settings, routes: RouteTable, *, has_api: bool,
                 ctx: Context | None = None) -> None:
        self.settings = settings
        self.routes = routes
        self.has_api = has_api
        self.hosts = HostClassifier(settings.domain)
        ping = settings.proxy_websocket_ping_interval
        self.forwarder = Forwarder(settings.scheme, websocket_ping=ping if ping > 0 else None)
        self.guard: ConnectionGuard | None = None  # set by start_proxy
        self._restore_loop_handler: Callable[[], None] = lambda: None
        self.services = Services(settings, routes, ctx) if ctx is not None else None
        # Sticky sessions for apps with several replicas; without a backend context the
        # pin is signed with a key of this process only.
        sticky = Sticky(self.services.access.key if self.services else os.urandom(32),
                        secure=settings.scheme == "https")
        self.app_host = AppHost(settings, routes, self.forwarder, self.services, sticky)

    # Lifecycle -----------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        await self.forwarder.start()
        if self.services is not None:
            self.services.views.start()
        if self.guard is not None:
            self._restore_loop_handler = install_loop_handler(asyncio.get_running_loop(),
                                                              self.guard.events)

    async def on_shutdown(self, app: web.Application) -> None:
        await self.app_host.watch.close()  # held long-polls answer now, not in 25 s
        await self.forwarder.close_websockets()

    async def on_cleanup(self, app: web.Application) -> None:
        self._restore_loop_handler()
        if self.services is not None:
            await self.services.views.close()
        await self.forwarder.close()

    # Dispatch --------------------------------------------------------------------------
    @web.middleware
    async def dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        kind, name = self.hosts.classify(request.headers.get("Host", ""))
        path = request.path
        if kind == hosts.APP:
            return await self.app_host.handle(request, name, path)
        if kind == hosts.DASHBOARD:
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                if self.has_api:
                    return await handler(request)
                return pages.json_response({"error": "not_found",
                                            "message": "No API is served here."}, 404)
            return await self.dashboard_host(request, path)
        return pages.not_found_page(hosts.typed_host(request.headers.get("Host", "")),
                                    self.settings)

    async def dashboard_host(self, request: web.Request, path: str) -> web.StreamResponse:
        """`DOMAIN`: our sign-in endpoints for app hosts, else the dashboard."""
        address = self.routes.dashboard_address
        svc = self.services
        if svc is not None and is_oidc_path(path):
            return await svc.oidc.handle(request, path)
        if is_reserved(path):
            name, method = path[len(RESERVED_PREFIX):], request.method
            if name == "status":
                return pages.json_response({"state": "running" if address else "starting",
                                            "reason": "", "serving": address is not None})
            if svc is not None and method == "GET":
                if name == "authorize":
                    return await svc.signin.authorize(request)
                if name == "return":
                    return svc.signin.return_poll(request)
                if name == "return.js":
                    return inject.asset_response(name)
                if name == "logout":
                    return svc.signin.dashboard_logout(request)
            return pages.json_response({"error": "not_found"}, 404)
        if address is None:
            return pages.dashboard_starting_page(self.settings)
        how = Forwarding(strip_cookies=cookies.DASHBOARD_STRIP)
        if svc is not None and svc.signin.return_state(request) is not None:
            how = Forwarding(strip_cookies=cookies.DASHBOARD_STRIP, inject=RETURN_TAGS)
        try:
            return await self.forwarder.forward(request, address, how)
        except UpstreamUnavailable as exc:
            log.warning("upstream_unavailable dashboard path=%s upstream=%s:%s error=%s",
                        path, *address, exc)
            return pages.dashboard_starting_page(self.settings)


PROXY_KEY = web.AppKey("proxy", Proxy)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()  # never reached: the dispatch middleware answers first


def make_proxy_app(settings: Settings, routes: RouteTable, *,
                   api: web.Application | None = None,
                   ctx: Context | None = None) -> web.Application:
    """The proxy as an aiohttp application (serve it with `start_proxy`)."""
    proxy = Proxy(settings, routes, has_api=api is not None, ctx=ctx)
    headers = security_headers.middleware(proxy.hosts, proxy.app_host.route,  # security.md
                                          https=settings.scheme == "https")
    app = web.Application(
        middlewares=[headers, proxy.dispatch],
        handler_args={"auto_decompress": False, "access_log": None,
                      "max_line_size": MAX_HEADER_FIELD, "max_field_size": MAX_HEADER_FIELD,
                      "max_headers": MAX_HEADERS},
    )
    app[PROXY_KEY] = proxy
    app.on_response_prepare.append(security_headers.apply)
    app.on_startup.append(proxy.on_startup)
    app.on_shutdown.append(proxy.on_shutdown)
    app.on_cleanup.append(proxy.on_cleanup)
    if api is not None:
        app.add_subapp(API_PREFIX, api)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def start_proxy(settings: Settings, routes: RouteTable, *,
                      api: web.Application | None = None,
                      ctx: Context | None = None) -> web.AppRunner:
    """Serve the proxy on settings.bind:settings.port; `await runner.cleanup()` stops it.
    With `ctx`, app hosts get identity, private apps, the overlay and view events.
    Connections are limited as `limits.py` says (caps derived from the open-file limit
    at this call)."""
    limits = ConnectionLimits.from_settings(settings)
    guard = ConnectionGuard(limits)
    app = make_proxy_app(settings, routes, api=api, ctx=ctx)
    app[PROXY_KEY].guard = guard
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT,
                           keepalive_timeout=limits.keepalive_timeout)
    await runner.setup()
    try:
        site = LimitedSite(runner, settings.bind, settings.port, guard)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("listening bind=%s port=%s domain=%s public_url=%s max_connections=%d "
             "per_client=%d header_timeout=%s", settings.bind, settings.port,
             settings.domain, settings.public_url(), limits.total, limits.per_client,
             limits.header_timeout)
    return runner
