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
the app's own host (same origin as the app: FINDINGS.md shows that a dashboard-host iframe
gets no cookies on `localhost`). The proxy forwards the panel's requests with the visitor's
identity in a header it signs (`X-Stcloud-Identity`; client copies of `X-Stcloud-*` are
always dropped), which the panel page reads with `st.context.headers`.

With a backend context (`start_proxy(..., ctx=ctx)`), app hosts also get:
- the overlay in every HTML page of the app (`inject.py`);
- identity (`access.py`, `signin.py`): a page load without a session is checked once
  through the dashboard host, silently;
- private apps: only signed-in users for whom `backend.sharing.can_view` holds (cached a
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

The hot path is a cached Host classification, a dict lookup in the route table and a
request on one shared `ClientSession` (created on startup, closed on cleanup) whose
`TCPConnector(limit=0, keepalive_timeout=60)` keeps upstream connections warm. No
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
import ipaddress
import logging
import os
from collections.abc import Callable

import aiohttp
from aiohttp import web

from backend.context import Context
from backend.settings import Settings
from backend.analytics.views import ViewRecorder
from supervisor.proxy import cookies, inject, pages, security_headers
from supervisor.proxy.access import Access
from supervisor.proxy.apphost import RESERVED_PREFIX, AppHost, is_websocket
from supervisor.proxy.endpoints import AppEndpoints
from supervisor.proxy.connections import LimitedSite, install_loop_handler
from supervisor.proxy.forward import (
    CLIENT_TIMEOUT, PLAIN, Forwarding, UpstreamUnavailable, WebSocketPair, forward_http,
    forward_websocket,
)
from supervisor.proxy.limits import ConnectionGuard, ConnectionLimits
from supervisor.proxy.signin import SignIn
from supervisor.proxy.sticky import Sticky
from supervisor.routes import RouteTable

log = logging.getLogger("supervisor.proxy")

STATUS_PATH = "/__stcloud/status"
API_PREFIX = "/api/v1"
SHUTDOWN_TIMEOUT = 5.0
MAX_HEADER_FIELD = 32 * 1024  # big enough for chunked auth cookies
MAX_HEADERS = 100
_HOST_CACHE_MAX = 4096
RETURN_TAGS = b'<script src="/__stcloud/return.js" defer></script>'

DASHBOARD = "dashboard"
APP = "app"
UNKNOWN = "unknown"


def split_host(value: str) -> str:
    """`Host` header → lower-case host name without port or trailing dot."""
    host = value.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class Proxy:
    """State shared by the handlers of one proxy application."""

    def __init__(self, settings: Settings, routes: RouteTable, *, has_api: bool,
                 ctx: Context | None = None) -> None:
        self.settings = settings
        self.routes = routes
        self.has_api = has_api
        self.domain = settings.domain.lower().rstrip(".")
        self.suffix = "." + self.domain
        self.scheme = settings.scheme
        self.session: aiohttp.ClientSession | None = None
        self.websockets: set[WebSocketPair] = set()
        self.closing = False
        self.guard: ConnectionGuard | None = None  # set by start_proxy
        self._restore_loop_handler: Callable[[], None] = lambda: None
        ping = settings.proxy_websocket_ping_interval
        self.websocket_ping = ping if ping > 0 else None
        self._hosts: dict[str, tuple[str, str]] = {}
        self.services = Services(self, ctx) if ctx is not None else None
        # Sticky sessions for apps with several replicas; without a backend context the
        # pin is signed with a key of this process only.
        self.sticky = Sticky(self.services.access.key if self.services else os.urandom(32),
                             secure=self.scheme == "https")
        self.app_host = AppHost(self)

    # Host classification -----------------------------------------------------------
    def classify(self, host_header: str) -> tuple[str, str]:
        """(DASHBOARD | APP | UNKNOWN, host name or subdomain), cached per Host value."""
        found = self._hosts.get(host_header)
        if found is None:
            found = self._classify(split_host(host_header))
            if len(self._hosts) >= _HOST_CACHE_MAX:
                self._hosts.clear()
            self._hosts[host_header] = found
        return found

    def _classify(self, host: str) -> tuple[str, str]:
        if host == self.domain or is_ip_literal(host):
            return DASHBOARD, host
        if host.endswith(self.suffix):
            sub = host[: -len(self.suffix)]
            if sub and "." not in sub:
                return APP, sub
        return UNKNOWN, host

    # Lifecycle -----------------------------------------------------------------------
    async def on_startup(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=CLIENT_TIMEOUT, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            max_line_size=MAX_HEADER_FIELD, max_field_size=MAX_HEADER_FIELD)
        if self.services is not None:
            self.services.views.start()
        if self.guard is not None:
            self._restore_loop_handler = install_loop_handler(asyncio.get_running_loop(),
                                                              self.guard.events)

    async def on_shutdown(self, app: web.Application) -> None:
        self.closing = True
        pairs = list(self.websockets)
        if pairs:
            log.info("shutdown closing_websockets=%d", len(pairs))
        await asyncio.gather(*(pair.close(1001, b"Server shutting down") for pair in pairs))

    async def on_cleanup(self, app: web.Application) -> None:
        self._restore_loop_handler()
        if self.services is not None:
            await self.services.views.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    # Dispatch --------------------------------------------------------------------------
    @web.middleware
    async def dispatch(self, request: web.Request, handler) -> web.StreamResponse:
        kind, name = self.classify(request.headers.get("Host", ""))
        path = request.path
        if kind == APP:
            return await self._app_host(request, name, path)
        if kind == DASHBOARD:
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                if self.has_api:
                    return await handler(request)
                return pages.json_response({"error": "not_found",
                                            "message": "No API is served here."}, 404)
            return await self._dashboard_host(request, path)
        return pages.not_found_page(name or "this address", self.settings)

    async def _app_host(self, request: web.Request, sub: str, path: str
                        ) -> web.StreamResponse:
        return await self.app_host.handle(request, sub, path)

    async def _dashboard_host(self, request: web.Request, path: str) -> web.StreamResponse:
        address = self.routes.dashboard_address
        svc = self.services
        if path.startswith(RESERVED_PREFIX) or path == RESERVED_PREFIX[:-1]:
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
            return await self._forward(request, address, how)
        except UpstreamUnavailable as exc:
            log.warning("upstream_unavailable dashboard path=%s upstream=%s:%s error=%s",
                        path, *address, exc)
            return pages.dashboard_starting_page(self.settings)

    async def _forward(self, request: web.Request, address: tuple[str, int],
                       how: Forwarding = PLAIN) -> web.StreamResponse:
        session = self.session
        if session is None or session.closed:
            raise UpstreamUnavailable("proxy is not started")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("forward method=%s host=%s path=%s upstream=%s:%s", request.method,
                      request.headers.get("Host", ""), request.path, *address)
        if is_websocket(request):
            if self.closing:
                raise UpstreamUnavailable("proxy is shutting down")
            return await forward_websocket(request, address, session, self.scheme,
                                           self.websockets, how, ping=self.websocket_ping)
        return await forward_http(request, address, session, self.scheme, how)


class Services:
    """What needs the backend context: identity, sign-in, endpoints, view events."""

    def __init__(self, proxy: Proxy, ctx: Context) -> None:
        self.access = Access(ctx)
        self.signin = SignIn(proxy.settings, proxy.routes, self.access)
        self.views = ViewRecorder(ctx)
        self.endpoints = AppEndpoints(proxy)


PROXY_KEY = web.AppKey("proxy", Proxy)


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()  # never reached: the dispatch middleware answers first


def make_proxy_app(settings: Settings, routes: RouteTable, *,
                   api: web.Application | None = None,
                   ctx: Context | None = None) -> web.Application:
    """The proxy as an aiohttp application (serve it with `start_proxy`)."""
    proxy = Proxy(settings, routes, has_api=api is not None, ctx=ctx)
    app = web.Application(
        middlewares=[proxy.dispatch],
        handler_args={"auto_decompress": False, "access_log": None,
                      "max_line_size": MAX_HEADER_FIELD, "max_field_size": MAX_HEADER_FIELD,
                      "max_headers": MAX_HEADERS},
    )
    app[PROXY_KEY] = proxy
    security_headers.install(app, proxy)  # docs/security.md
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
