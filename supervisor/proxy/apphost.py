"""App hosts (`<sub>.DOMAIN`): who may see the app, our pages, our reserved paths.

See `server.py` for the whole picture. Order of a request here: reserved paths
(`/__stcloud/...`, never forwarded to the app) → unknown subdomain (404 page) → the hot
path (an asset of a public app: forwarded with our cookies stripped, nobody's identity
needed) → identity → private-app check or the silent sign-in check → forwarded (with the
overlay unless the page is asked for with `?embed=true`, the visitor cookie and the view
event) or our page for the app's state. Open tabs follow the app's state through
`/__stcloud/state` (`watch.py`). An app with several replicas keeps each browser on one
of them (`sticky.py`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from aiohttp import web

from backend.accounts import identity
from backend.platform.settings import Settings
from models import id_of
from supervisor.control.health import is_stream_path
from supervisor.proxy import auto_wake, cookies, inject, pages, state_pages
from supervisor.proxy.access import Visitor, client_key
from supervisor.proxy.endpoints import PROGRESS_STATES
from supervisor.proxy.forward import Forwarder
from supervisor.proxy.hosts import RESERVED_PREFIX, is_reserved, typed_host
from supervisor.proxy.services import Services
from supervisor.proxy.static_files import StaticFiles
from supervisor.proxy.sticky import Sticky
from supervisor.proxy.upstream import (
    PLAIN,
    Forwarding,
    UpstreamTimeout,
    UpstreamUnavailable,
    is_websocket,
    websocket_protocols,
)
from supervisor.proxy.watch import StateWatch
from supervisor.routes import OVEN_STATES, Route, RouteTable

log = logging.getLogger("supervisor.proxy")

PANEL_PREFIX = identity.PANEL_PREFIX
VISITOR_MAX_AGE = 365 * 86400
# (method, name) of our endpoints under /__stcloud/ on app hosts; every POST checks CSRF
# (tests/integration/test_security.py enumerates this set, so a new one is audited automatically).
ENDPOINTS = frozenset({("GET", "me"), ("POST", "favorite"), ("GET", "login"),
                       ("GET", "callback"), ("POST", "logout"), ("POST", "wake"),
                       ("POST", "reboot"), ("POST", "notify"), ("GET", "state")})
EMBED_QUERY = "embed"  # `?embed=true`: the app alone, as in an iframe (Streamlit's own flag)


def embedded(request: web.BaseRequest) -> bool:
    """Is the page asked for with `?embed=true` (any case, as Streamlit reads it)? Then it
    shows the app alone: none of our overlay."""
    return any(value.strip().lower() == "true"
               for value in request.query.getall(EMBED_QUERY, ()))


def bare(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, headers={"Cache-Control": "no-store"})


class AppHost:
    """Answers every request for `<sub>.DOMAIN` (see the module docstring)."""

    def __init__(self, settings: Settings, routes: RouteTable, forwarder: Forwarder,
                 services: Services | None, sticky: Sticky) -> None:
        self.settings = settings
        self.routes = routes
        self.forwarder = forwarder
        self.services = services
        self.sticky = sticky
        self.domain = settings.domain.lower().rstrip(".")
        self.watch = StateWatch(self.route, services.access.key if services else b"")
        self.static = StaticFiles(settings.envs_path)

    def route(self, sub: str) -> Route | None:
        """The route of `sub` as this proxy acts on it: the table's, or the state one of our
        endpoints just recorded (`pending.py`)."""
        route = self.routes.get(sub)
        return route if self.services is None else self.services.pending.shown(route)

    async def handle(self, request: web.Request, sub: str, path: str
                     ) -> web.StreamResponse:
        route = self.route(sub)
        if route is None and self.services is not None:  # deployed, not yet published
            route = await self.services.pending.unpublished(self.services.access.ctx, sub)
        if is_reserved(path):
            return await self._reserved_app(request, sub, route, path)
        if route is None:
            return pages.not_found_page(typed_host(request.headers.get("Host", "")),
                                        self.settings)
        svc = self.services
        private = route.visibility == "private"
        if svc is None:
            if private:
                return bare(403, "This private app cannot be served without accounts.")
            return await self._serve(request, route, None, page=False)
        page = inject.may_be_page(request)
        stream = is_stream_path(path) and is_websocket(request)  # any Streamlit's
        if not (private or page or stream or not route.serving):
            # The hot path: an asset of a public app needs nobody's identity.
            return await self._forward_app(request, route, Forwarding(
                strip_cookies=cookies.APP_STRIP))
        visitor = await svc.access.visitor(request, sub)
        if private:
            if visitor.user is None:
                if page:
                    return svc.signin.login_redirect(request)
                return bare(401, "Sign in to open this private app.")
            if not await svc.access.can_view(visitor.user, route.app_id):
                if page:
                    return await self._forbidden(request, route, visitor)
                return bare(403, "You don't have access to this app.")
        elif page and svc.signin.should_check(request, visitor) and \
                svc.signin.may_bounce(request, sub):
            return svc.signin.login_redirect(request, silent=True)
        return await self._serve(request, route, visitor, page=page, stream=stream)

    async def _serve(self, request: web.Request, route: Route, visitor: Visitor | None, *,
                     page: bool, stream: bool = False) -> web.StreamResponse:
        """Forward to a serving app, else our page for its state."""
        svc = self.services
        if route.serving:
            if svc is None or visitor is None:
                return await self._forward_app(request, route, PLAIN)
            set_cookies: tuple[str, ...] = ()
            if page and visitor.visitor_id is None:
                set_cookies = (cookies.cookie_header(
                    identity.VISITOR_COOKIE, identity.new_visitor_id(),
                    max_age=VISITOR_MAX_AGE, secure=self.settings.scheme == "https"),)
            on_open = None
            protocols = websocket_protocols(request) if stream else []
            if stream and not (len(protocols) >= 3 and protocols[2]):
                def on_open() -> None:  # a new session, not a reconnect of one
                    svc.views.record(route.app_id, visitor.viewer_key())
            tags = None if embedded(request) else inject.OVERLAY_TAGS
            add = await svc.oidc.identity_headers(route.app_id, visitor.user)
            return await self._forward_app(request, route, Forwarding(
                strip_cookies=cookies.APP_STRIP, add_headers=add or None,
                set_cookies=set_cookies, inject=tags, on_open=on_open))
        if route.state in OVEN_STATES:
            progress = await svc.endpoints.progress(route.app_id) \
                if svc and route.state in PROGRESS_STATES else ""
            phases = await svc.endpoints.phases(route) if svc else ""
            return pages.oven_page(route, self.settings, progress, phases)
        if svc is None or visitor is None or route.state not in (
                "sleeping", "over_limit", "crashed", "build_failed"):
            return pages.state_page(route, self.settings)
        viewer = await svc.endpoints.page_viewer(request, route, visitor)
        if route.state == "sleeping":
            woken = await auto_wake.wake_on_visit(svc, self.settings, request, route,
                                                  visitor) if page else None
            return woken or state_pages.sleeping_page(route, self.settings, viewer)
        facts = await svc.endpoints.facts(route) if viewer.developer else \
            state_pages.AppFacts(route.app_id)
        if route.state == "over_limit":
            return state_pages.over_limit_page(route, self.settings, viewer, facts)
        return state_pages.failure_page(route, self.settings, viewer, facts)

    async def _forbidden(self, request: web.Request, route: Route,
                         visitor: Visitor) -> web.Response:
        svc = self.services
        assert svc is not None
        viewer = await svc.endpoints.page_viewer(request, route, visitor)
        facts = await svc.endpoints.facts(route)
        return state_pages.forbidden_page(self.settings, request.headers.get("Host", ""),
                                          viewer, facts.workspace)

    async def _forward_app(self, request: web.Request, route: Route,
                           how: Forwarding) -> web.StreamResponse:
        assert route.address is not None
        if route.static_env:  # Streamlit's own files, from the app's environment
            tags = how.inject if how.inject and inject.may_be_page(request) else None
            static = await self.static.response(request, route.static_env, tags,
                                                tuple(how.set_cookies))
            if static is not None:
                return static
        upstreams = route.upstreams
        if len(upstreams) < 2:
            try:
                return await self.forwarder.forward(request, route.address, how)
            except UpstreamUnavailable as exc:
                self._unavailable(request, route, route.address, exc)
                return pages.not_answering_page(route, self.settings)
        # Several replicas: keep the browser on one (sticky.py).
        sticky = self.sticky
        address, pin = sticky.pick(request, route)
        base = how.set_cookies
        how = replace(how, strip_cookies=how.strip_cookies | {cookies.AFFINITY_COOKIE},
                      set_cookies=(*base, pin) if pin else base)
        tried = {address}
        while True:
            try:
                with sticky.track(address):
                    return await self.forwarder.forward(request, address, how)
            except UpstreamUnavailable as exc:
                self._unavailable(request, route, address, exc)
                retry = None
                if request.method in ("GET", "HEAD") and not isinstance(exc, UpstreamTimeout):
                    retry = sticky.choose(upstreams, exclude=tried)
                if retry is None:
                    return pages.not_answering_page(route, self.settings)
                address = retry
                tried.add(address)
                how = replace(how, set_cookies=(*base, sticky.cookie(route, address)))

    def _unavailable(self, request: web.Request, route: Route, address: tuple[str, int],
                     exc: Exception) -> None:
        log.warning("upstream_unavailable app=%s host=%s path=%s upstream=%s:%s "
                    "error=%s", route.app_id, route.subdomain, request.path, *address, exc)

    # Reserved paths ----------------------------------------------------------------------
    async def _reserved_app(self, request: web.Request, sub: str, route: Route | None,
                            path: str) -> web.StreamResponse:
        name = path[len(RESERVED_PREFIX):]
        if path == PANEL_PREFIX or path.startswith(PANEL_PREFIX + "/"):
            return await self._panel(request, sub, route)
        if name in ("overlay.js", "overlay.css") and request.method in ("GET", "HEAD"):
            return inject.asset_response(name)
        svc = self.services
        if name == "status":
            if not await self._may_know(request, sub, route):
                return pages.json_response({"error": "forbidden"}, 403)
            if svc is None:
                if route is None:
                    return pages.json_response(
                        {"state": "not_found", "reason": "", "serving": False}, 404)
                return pages.json_response({"state": route.state, "reason": route.reason,
                                            "serving": route.serving})
            return await svc.endpoints.status(route)
        if name == "state" and request.method == "GET":
            return await self._state(request, sub, route)
        if svc is None or route is None:
            return pages.json_response({"error": "not_found"}, 404)
        handlers = ENDPOINTS
        if (request.method, name) not in handlers:
            known = {n for _, n in handlers}
            return pages.json_response({"error": "method_not_allowed" if name in known
                                        else "not_found"}, 405 if name in known else 404)
        if name == "login":
            return svc.signin.login(request, sub)
        if name == "callback":
            return await svc.signin.callback(request, sub)
        if name == "logout":
            return await svc.endpoints.logout(request, sub)
        visitor = await svc.access.visitor(request, sub)
        ep = svc.endpoints
        if name == "me":
            return await ep.me(request, route, visitor)
        if route.visibility == "private" and not (
                visitor.user and await svc.access.can_view(visitor.user, route.app_id)):
            return pages.json_response({"error": "forbidden"}, 403)
        handler = {"favorite": ep.favorite, "wake": ep.wake, "reboot": ep.reboot,
                   "notify": ep.notify}[name]
        return await handler(request, route, visitor)

    async def _may_know(self, request: web.Request, sub: str, route: Route | None) -> bool:
        """May this visitor learn the app's state? Anyone for a public app (or none at this
        address); for a private one, only those who may view it (its state and reason
        tell about it)."""
        if route is None or route.visibility != "private":
            return True
        svc = self.services
        if svc is None:
            return False
        visitor = await svc.access.visitor(request, sub)
        return visitor.user is not None and await svc.access.can_view(visitor.user,
                                                                      route.app_id)

    async def _state(self, request: web.Request, sub: str, route: Route | None
                     ) -> web.Response:
        """`GET state?since=`: the long-poll of open tabs (`watch.py`). A private app's is
        answered only to visitors who may view it."""
        if not await self._may_know(request, sub, route):
            return pages.json_response({"error": "forbidden"}, 403)
        since = request.query.get("since")
        answer = await self.watch.wait(sub, since[:64] if since else None,
                                       client_key(request))
        return pages.json_response(answer)

    async def _panel(self, request: web.Request, sub: str, route: Route | None
                     ) -> web.StreamResponse:
        address = self.routes.panel_address
        svc = self.services
        if route is None or svc is None:
            return pages.json_response({"error": "not_found"}, 404)
        if address is None:
            return bare(503, "The Manage app panel is starting; try again in a moment.")
        add: dict[str, str] = {}
        visitor = await svc.access.visitor(request, sub)
        if visitor.user is not None:
            add[identity.PANEL_HEADER] = identity.panel_header(
                svc.access.key, id_of(visitor.user), visitor.user.username, route.app_id, sub)
        how = Forwarding(strip_cookies=cookies.APP_STRIP, add_headers=add)
        try:
            return await self.forwarder.forward(request, address, how)
        except UpstreamUnavailable as exc:
            log.warning("upstream_unavailable panel path=%s error=%s", request.path, exc)
            return bare(503, "The Manage app panel is not answering; try again in a "
                         "moment.")
