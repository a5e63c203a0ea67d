"""Our endpoints under `/__stcloud/` on app hosts (never forwarded to the app):

- `GET status`: `{"state", "reason", "serving"}` (+ `"progress"`, the build log's newest
  line, while queued or building; + `"phases"`, the deploy's phases as HTML, on the oven
  page's states); our waiting pages poll it. A private app's only to
  visitors who may view it (403 otherwise), as `state`.
- `GET overlay.js`, `overlay.css`: the overlay (`assets/`).
- `GET state?since=<token>`: the long-poll with which an open tab's overlay script follows
  its app (`watch.py`): `{"state", "token"}` once the token differs from `since`; a private
  app's only to visitors who may view it (403 otherwise).
- `GET me`: who is looking, for the overlay: signed_in, username, role in the app's
  workspace, can_manage (developer or admin: the Manage app button), can_favorite (the
  same rule: in-app favoriting is not offered for view-only access), favorite, sign-in
  URL, the CSRF token, the panel's URL.
- `POST favorite` (JSON `{"favorite": bool}`, header `X-Stcloud-CSRF`).
- `POST wake`, `reboot`, `notify` (forms with `csrf`): the sleeping page's button (anyone),
  the developer's Reboot on the over-limit and crashed pages, the viewer's "Notify the
  developer" (one email per incident, and a rate limit per client).
- `GET login`, `GET callback`, `POST logout`: `signin.py`.

The app's own JavaScript runs on this origin too, so these endpoints act only on the app of
this host, and never allow more than the visiting user could do on it anyway. Every POST
checks the CSRF token (cookie and form or header carry the same value, signed for this
host) and that `Origin`, when sent, is this host. Bodies are at most `MAX_BODY` bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qsl

from aiohttp import web

from backend import read_model
from backend.accounts import identity
from backend.analytics import usage
from backend.apps import failure_reports, favorites
from backend.apps import service as app_service
from backend.errors import BackendError, NotFound, PermissionDenied
from backend.platform import notifications
from backend.platform.settings import Settings
from supervisor.builds import phases
from supervisor.proxy import inject, pages, state_pages
from supervisor.proxy.access import Access, RateLimit, Visitor, can_manage, client_key
from supervisor.proxy.pending import PendingStates
from supervisor.proxy.signin import SignIn, redirect
from supervisor.routes import OVEN_STATES, Route, RouteTable

log = logging.getLogger("supervisor.proxy")
MAX_BODY = 16 * 1024
PROGRESS_STATES = frozenset({"queued", "building"})  # the build log is being written
CSRF_HEADER = "X-Stcloud-CSRF"


class BodyTooLarge(Exception):
    pass


async def read_small_body(request: web.BaseRequest, limit: int = MAX_BODY) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge()
    data = bytearray()
    while chunk := await request.content.read(limit + 1 - len(data)):
        data += chunk
        if len(data) > limit:
            raise BodyTooLarge()
    return bytes(data)


def same_origin(request: web.BaseRequest, scheme: str) -> bool:
    """`Origin` (when sent) is this host; else `Sec-Fetch-Site` does not say cross-site."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower() == f"{scheme}://{request.headers.get('Host', '')}".lower()
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


class AppEndpoints:
    """The handlers of `/__stcloud/` on app hosts (see the module docstring)."""

    def __init__(self, settings: Settings, routes: RouteTable, access: Access,
                 signin: SignIn, pending: PendingStates) -> None:
        self.settings = settings
        self.routes = routes
        self.pending = pending
        self.access = access
        self.signin = signin
        self.notify_limit = RateLimit(3, 600)
        self.wake_limit = RateLimit(10, 60)

    # Helpers ---------------------------------------------------------------------------
    def csrf_for(self, request: web.BaseRequest) -> tuple[str, tuple[str, ...]]:
        """(token, Set-Cookie values): the browser's valid token, else a new one."""
        key = self.access.key
        host = request.headers.get("Host", "")
        current = request.cookies.get(identity.CSRF_COOKIE)
        if identity.csrf_token_valid(key, host, current):
            return current or "", ()
        token = identity.csrf_token(key, host)
        return token, (self.signin.cookie(identity.CSRF_COOKIE, token, None),)

    def csrf_valid(self, request: web.BaseRequest, submitted: str | None) -> bool:
        return same_origin(request, self.settings.scheme) and identity.csrf_ok(
            self.access.key, request.headers.get("Host", ""),
            request.cookies.get(identity.CSRF_COOKIE), submitted)

    async def page_viewer(self, request: web.BaseRequest, route: Route,
                          visitor: Visitor) -> state_pages.PageViewer:
        role = await self.access.role(visitor.user, route.workspace_id)
        token, set_cookies = self.csrf_for(request)
        return state_pages.PageViewer(
            signed_in=visitor.user is not None,
            username=visitor.user.username if visitor.user else "",
            developer=can_manage(role), csrf=token, cookies=set_cookies)

    async def facts(self, route: Route) -> state_pages.AppFacts:
        settings = self.settings

        def load() -> state_pages.AppFacts:
            found = read_model.app_page_facts(self.access.ctx, route.app_id,
                                              route.workspace_id)
            public = settings.public_url(route.subdomain)
            peak = usage.last_peak(self.access.ctx, route.app_id) \
                if route.state == "over_limit" else None
            return state_pages.AppFacts(  # as the dashboard's Logs page shows them
                app_id=route.app_id, workspace=found.workspace,
                memory_limit_mb=found.memory_limit_mb,
                memory_used_mb=peak[0] >> 20 if peak else 0,
                app_log_tail=failure_reports.run_lines(self.access.ctx, route.app_id, public,
                                                       30),
                build_log_tail=failure_reports.build_lines(self.access.ctx, route.app_id,
                                                           public, 60))
        return await asyncio.to_thread(load)

    def mirror(self, route: Route, state: str, reason: str) -> None:
        """Show the state the backend just recorded until the supervisor republishes."""
        if self.routes.get(route.subdomain) is route and state != route.state:
            self.pending.note(route, state, reason)

    # GET ---------------------------------------------------------------------------------
    async def status(self, route: Route | None) -> web.Response:
        if route is None:
            return pages.json_response(
                {"state": "not_found", "reason": "", "serving": False}, 404)
        data = {"state": route.state, "reason": route.reason, "serving": route.serving}
        if route.state in PROGRESS_STATES:
            progress = await self.progress(route.app_id)
            if progress:
                data["progress"] = progress
        if route.state in OVEN_STATES:
            data["phases"] = await self.phases(route)
        return pages.json_response(data)

    async def phases(self, route: Route) -> str:
        """The deploy's phases as the oven page lists them (`supervisor.builds.phases`)."""
        return await asyncio.to_thread(phases.current_html, self.settings, route.app_id,
                                       route.state)

    async def progress(self, app_id: int) -> str:
        line = await asyncio.to_thread(failure_reports.build_lines, self.access.ctx, app_id,
                                       self.settings.public_url(), 1)
        return line.strip()[-300:]

    async def me(self, request: web.Request, route: Route, visitor: Visitor) -> web.Response:
        access = self.access
        user = visitor.user
        role = await access.role(user, route.workspace_id)
        manage = can_manage(role)
        favorite = bool(user and manage and await access.is_favorite(user, route.app_id))
        token, set_cookies = self.csrf_for(request)
        resp = pages.json_response({
            "signed_in": user is not None, "username": user.username if user else "",
            "role": role, "can_manage": manage, "can_favorite": manage,
            "favorite": favorite, "sign_in_url": "/__stcloud/login",
            "csrf": token, "app": {"id": route.app_id, "subdomain": route.subdomain},
            "dashboard_url": self.settings.public_url(),
            "panel_url": identity.PANEL_PREFIX + "/",
            "css_url": f"/__stcloud/overlay.css?v={inject.ASSET_VERSION}"})
        for value in set_cookies:
            resp.headers.add("Set-Cookie", value)
        return resp

    # POST ---------------------------------------------------------------------------------
    async def favorite(self, request: web.Request, route: Route,
                       visitor: Visitor) -> web.Response:
        if not self.csrf_valid(request, request.headers.get(CSRF_HEADER)):
            return pages.json_response({"error": "csrf"}, 403)
        try:
            body = json.loads(await read_small_body(request, 1024) or b"{}")
            want = body["favorite"]
        except BodyTooLarge:
            return pages.json_response({"error": "too_large"}, 413)
        except (ValueError, KeyError, TypeError):
            return pages.json_response({"error": "bad_request"}, 400)
        user = visitor.user
        if user is None:
            return pages.json_response({"error": "sign_in"}, 401)
        access = self.access
        if not isinstance(want, bool) or not can_manage(
                await access.role(user, route.workspace_id)):
            return pages.json_response({"error": "forbidden"}, 403)
        try:
            await asyncio.to_thread(favorites.set_favorite, access.ctx, user, route.app_id,
                                    want)
        except NotFound:
            return pages.json_response({"error": "not_found"}, 404)
        access.forget_favorites(user)
        return pages.json_response({"favorite": want})

    async def form(self, request: web.Request) -> dict[str, str] | web.Response:
        """The posted form, or the response refusing it."""
        try:
            raw = await read_small_body(request)
        except BodyTooLarge:
            return state_pages.problem_page(self.settings, "Too much data",
                                            "That form was too large.", status=413)
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        if not self.csrf_valid(request, form.get("csrf")):
            return state_pages.problem_page(
                self.settings, "That form has expired",
                "Reload the page and press the button again.", retry_url="/", status=403)
        return form

    async def wake(self, request: web.Request, route: Route, visitor: Visitor
                   ) -> web.StreamResponse:
        form = await self.form(request)
        if isinstance(form, web.Response):
            return form
        if route.state != "sleeping":
            return redirect("/", status=303)
        if not self.wake_limit.allow(client_key(request)):
            return state_pages.problem_page(self.settings, "Please wait a moment",
                                            "The app is being woken up already.",
                                            retry_url="/", status=429)
        try:
            state = await asyncio.to_thread(app_service.wake_app, self.access.ctx,
                                            visitor.user, route.app_id)
        except NotFound:
            return pages.not_found_page(request.headers.get("Host", ""), self.settings)
        self.mirror(route, state, "Waking up")
        return redirect("/", status=303)

    async def reboot(self, request: web.Request, route: Route, visitor: Visitor
                     ) -> web.StreamResponse:
        form = await self.form(request)
        if isinstance(form, web.Response):
            return form
        if visitor.user is None:
            return self.signin.login_redirect(request)
        try:
            view = await asyncio.to_thread(app_service.reboot_app, self.access.ctx,
                                           visitor.user, route.app_id)
        except (NotFound, PermissionDenied) as exc:
            return state_pages.problem_page(self.settings, "You cannot reboot this app",
                                            str(exc), retry_url="/", status=403)
        self.mirror(route, view.state, "Reboot requested")
        return redirect("/", status=303)

    async def notify(self, request: web.Request, route: Route, visitor: Visitor
                     ) -> web.StreamResponse:
        form = await self.form(request)
        if isinstance(form, web.Response):
            return form
        if route.state != "over_limit":
            return redirect("/", status=303)
        if not self.notify_limit.allow((route.app_id, client_key(request))):
            return state_pages.notified_page(route, self.settings, None)
        try:
            told = await asyncio.to_thread(notifications.notify_over_limit, self.access.ctx,
                                           route.app_id)
        except BackendError:
            log.warning("app=%s over-limit notice failed", route.app_id, exc_info=True)
            return state_pages.problem_page(
                self.settings, "Developers not notified", "The developers could not be "
                "notified just now. Try again in a minute.", retry_url="/", status=503)
        if told is None:  # no longer over its limits: the app's own page says what it is
            return redirect("/", status=303)
        return state_pages.notified_page(route, self.settings, told)

    async def logout(self, request: web.Request, sub: str) -> web.StreamResponse:
        form = await self.form(request)
        if isinstance(form, web.Response):
            return form
        return self.signin.logout(sub, again=form.get("again") == "1",
                                           nxt=identity.safe_next(form.get("next")))

