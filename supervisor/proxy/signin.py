"""Signing in on app hosts: a top-level redirect through the dashboard host.

    <app>/__stcloud/login?next=/p          → <dash>/__stcloud/authorize?app=<sub>&next=/p
    <dash>/__stcloud/authorize             → signed in: <app>/__stcloud/callback?token=…
                                             not signed in: the dashboard's sign-in form,
                                             then back here (see "Return" below)
    <app>/__stcloud/callback?token=…&next= → sets `stcloud_session` (host-only, HttpOnly,
                                             SameSite=Lax, Secure on https), then → next

`next` is always a relative path (`identity.safe_next`); the app host of the callback is
built from the route table, never taken from the request, so nothing here redirects to a
foreign site. Tokens are single-use and live 60 s; they are kept in the database
(`tokens.py`), so the proxy that redeems one need not be the proxy that minted it.

Silent check (`silent=1`): a browser opening an app page without any session cookie is
sent through authorize once; when the dashboard cookie is missing it comes back with
`error=login_required` and gets the "checked, not signed in" session (10 min, and never
past the browser session), so a signed-in developer gets the Manage app button on their
first visit and an anonymous visitor costs a few redirects now and then. That marker is
checked again when a page load comes from another site (a link on the dashboard, say)
and the marker is older than `RECHECK_AFTER`: who signed in on the dashboard meanwhile
is recognised when they open the app from there. A loop guard
stops checking a client (address and user agent) sent `BOUNCE_LIMIT` times within
`BOUNCE_PERIOD` (a browser that refuses cookies would otherwise loop). Links that should
end signed in (the dashboard's "Open app") can point at `/__stcloud/login?next=/`.

The dashboard's cookie is SameSite=Strict (streamlit-authenticator's cookie manager), and
`<sub>.localhost` → `localhost` is a cross-site redirect, which does not carry Strict
cookies. So when authorize arrives cross-site without a cookie it answers a tiny page that
navigates to itself again (`hop=1`): a same-site navigation, which does carry it.

Return: when the visitor must sign in, authorize sets `stcloud_return` (signed, 15 min)
on the dashboard host and sends the browser to the dashboard with `?signin_for=<sub>`
(its sign-in form says which app, and whether it is private: backend/signin_target.py).
While that cookie is valid the proxy adds `/__stcloud/return.js` to the dashboard's HTML;
the script polls `/__stcloud/return`, which answers the authorize URL once the sign-in
cookie exists.

Sign-out (`POST <app>/__stcloud/logout`, CSRF): the app host's session becomes "not signed
in", then the browser goes to `<dash>/__stcloud/logout?t=<signed>`, which deletes the
dashboard's cookie, and on to the dashboard (or, for "sign in as someone else", back
through sign-in to the app).
"""

from __future__ import annotations

import asyncio
import json
import time
from html import escape
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web

from backend.accounts import identity
from backend.accounts.keys import dashboard_cookie_key
from backend.platform.settings import Settings
from backend.signin_tokens import DatabaseTokens
from models import id_of
from supervisor.proxy import cookies, pages, state_pages
from supervisor.proxy.access import Access, RateLimit, Visitor, client_key
from supervisor.routes import RouteTable, load_route

RETURN_TTL = 15 * 60
SIGNOUT_TTL = 120
BOUNCE_LIMIT = 10
BOUNCE_PERIOD = 30.0
RECHECK_AFTER = 30.0
NO_STORE = {"Cache-Control": "no-store"}


def redirect(location: str, *, status: int = 302,
             set_cookies: tuple[str, ...] = ()) -> web.Response:
    resp = web.Response(status=status, headers={"Location": location, **NO_STORE})
    for value in set_cookies:
        resp.headers.add("Set-Cookie", value)
    return resp


class SignIn:
    def __init__(self, settings: Settings, routes: RouteTable, access: Access) -> None:
        self.settings = settings
        self.routes = routes
        self.access = access
        self.key = access.key
        self.dashboard_key = dashboard_cookie_key(access.ctx)
        self.tokens = DatabaseTokens(access.ctx)
        self.bounces = RateLimit(BOUNCE_LIMIT, BOUNCE_PERIOD)
        self.secure = settings.scheme == "https"

    def dashboard_url(self, path: str = "") -> str:
        return self.settings.public_url() + path

    def cookie(self, name: str, value: str, max_age: int | None) -> str:
        return cookies.cookie_header(name, value, max_age=max_age, secure=self.secure)

    def session_cookie(self, user_id: int, username: str, sub: str) -> str:
        value = identity.session_cookie(self.key, user_id, username, sub)
        ttl = identity.ANONYMOUS_TTL if user_id == 0 else identity.SESSION_TTL
        # The "not signed in" marker dies with the browser session too.
        return self.cookie(identity.SESSION_COOKIE, value, None if user_id == 0 else ttl)

    # App host --------------------------------------------------------------------------
    def should_check(self, request: web.BaseRequest, visitor: Visitor) -> bool:
        """Whether this page load should check the sign-in silently: no session yet, or a
        "not signed in" marker older than `RECHECK_AFTER` on a page load that came from
        another site (e.g. "Open app" on the dashboard after signing in there)."""
        session = visitor.session
        if session is None:
            return True
        if not session.anonymous or time.time() - session.issued < RECHECK_AFTER:
            return False
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None:
            return site in ("cross-site", "same-site")
        referer = request.headers.get("Referer", "")
        return bool(referer) and urlsplit(referer).netloc.lower() != \
            request.headers.get("Host", "").lower()

    def may_bounce(self, request: web.BaseRequest, sub: str) -> bool:
        """A top-level page load without a session: check silently, unless just done."""
        headers = request.headers
        mode = headers.get("Sec-Fetch-Mode")
        if mode is not None:
            if mode != "navigate" or headers.get("Sec-Fetch-Dest") != "document":
                return False
        elif "text/html" not in headers.get("Accept", "") or \
                headers.get("Upgrade-Insecure-Requests") != "1":
            # Browsers send no Fetch Metadata to plain-http origins other than localhost;
            # a page load there still asks for HTML and to upgrade insecure requests.
            return False
        return self.bounces.allow((sub, client_key(request)))

    def login_redirect(self, request: web.BaseRequest, *, silent: bool = False) -> web.Response:
        """Send this page load to /__stcloud/login on its own host."""
        query = {"next": identity.safe_next(request.raw_path)}
        if silent:
            query["silent"] = "1"
        return redirect("/__stcloud/login?" + urlencode(query))

    def login(self, request: web.Request, sub: str) -> web.Response:
        nxt = identity.safe_next(request.query.get("next"))
        query = {"app": sub, "next": nxt}
        if request.query.get("silent") == "1":
            query["silent"] = "1"
        return redirect(self.dashboard_url("/__stcloud/authorize?" + urlencode(query)))

    async def callback(self, request: web.Request, sub: str) -> web.Response:
        nxt = identity.safe_next(request.query.get("next"))
        if request.query.get("error") == "login_required":
            return redirect(nxt, set_cookies=(self.session_cookie(0, "", sub),))
        found = await self.tokens.redeem(request.query.get("token", ""), sub)
        if found is None:
            retry = "/__stcloud/login?" + urlencode({"next": nxt})
            return state_pages.problem_page(
                self.settings, "This sign-in link has expired",
                "Sign-in links work once, for a minute. Sign in again to continue.",
                retry_url=retry)
        user_id, username = found
        return redirect(nxt, set_cookies=(self.session_cookie(user_id, username, sub),))

    def logout(self, sub: str, *, again: bool, nxt: str) -> web.Response:
        back = ""
        if again:
            back = (self.settings.public_url(sub) + "/__stcloud/login?"
                    + urlencode({"next": nxt}))
        token = identity.sign(self.key, "signout", {"b": back}, SIGNOUT_TTL)
        return redirect(self.dashboard_url("/__stcloud/logout?t=" + quote(token)),
                        status=303, set_cookies=(self.session_cookie(0, "", sub),))

    # Dashboard host ---------------------------------------------------------------------
    async def authorize(self, request: web.Request) -> web.Response:
        sub = request.query.get("app", "")
        route = self.routes.get(sub) if sub else None
        if route is None and sub:  # deployed a moment ago: its row exists, its route not yet
            route = await asyncio.to_thread(load_route, self.access.ctx, sub)
        if route is None:
            return pages.not_found_page(f"{sub}.{self.settings.domain}", self.settings)
        nxt = identity.safe_next(request.query.get("next"))
        silent = request.query.get("silent") == "1"
        username = identity.dashboard_username(
            self.dashboard_key, request.cookies.get(identity.DASHBOARD_COOKIE))
        user = await self.access.user_by_name(username) if username else None
        app_url = self.settings.public_url(sub)
        if user is not None:
            token = await self.tokens.mint(id_of(user), user.username, sub)
            return redirect(f"{app_url}/__stcloud/callback?"
                            + urlencode({"token": token, "next": nxt}))
        if request.query.get("hop") != "1" and \
                request.headers.get("Sec-Fetch-Site") == "cross-site":
            return hop_page(request, "/__stcloud/authorize")
        if silent:
            return redirect(f"{app_url}/__stcloud/callback?"
                            + urlencode({"error": "login_required", "next": nxt}))
        target = "/__stcloud/authorize?" + urlencode({"app": sub, "next": nxt})
        ret = identity.sign(self.key, "return", {"u": target}, RETURN_TTL)
        return redirect(self.dashboard_url("/?" + urlencode({"signin_for": sub})), set_cookies=(
            self.cookie(identity.RETURN_COOKIE, ret, RETURN_TTL),))

    def return_state(self, request: web.BaseRequest) -> dict[str, Any] | None:
        """The pending return of this browser ({"u": authorize URL}), if any."""
        return identity.verify(self.key, "return", request.cookies.get(identity.RETURN_COOKIE))

    def return_poll(self, request: web.Request) -> web.Response:
        pending = self.return_state(request)
        if pending is None:
            return pages.json_response({"done": True})
        username = identity.dashboard_username(
            self.dashboard_key, request.cookies.get(identity.DASHBOARD_COOKIE))
        if not username:
            return pages.json_response({"wait": True})
        resp = pages.json_response({"url": pending["u"]})
        resp.headers.add("Set-Cookie", cookies.expire_cookie_header(
            identity.RETURN_COOKIE, secure=self.secure))
        return resp

    def dashboard_logout(self, request: web.Request) -> web.Response:
        data = identity.verify(self.key, "signout", request.query.get("t"))
        if data is None:
            return state_pages.problem_page(
                self.settings, "This sign-out link has expired",
                "Sign out from the dashboard's sidebar instead.",
                retry_url=self.dashboard_url("/"))
        back = str(data.get("b") or "") or self.dashboard_url("/")
        return redirect(back, status=303, set_cookies=(
            cookies.expire_cookie_header(identity.DASHBOARD_COOKIE, secure=self.secure),
            cookies.expire_cookie_header(identity.RETURN_COOKIE, secure=self.secure)))


def hop_page(request: web.Request, path: str) -> web.Response:
    """A page that navigates to `path` with the request's query again, now from our own
    site, so the browser sends the dashboard's SameSite=Strict cookie it held back on a
    cross-site arrival."""
    query = dict(request.query)
    query["hop"] = "1"
    target = path + "?" + urlencode(query)
    script = f"location.replace({json.dumps(target)})".replace("</", "<\\/")
    body = ("<p>Checking whether you are signed in…</p>"
            f'<noscript><p><a href="{escape(target, quote=True)}">Continue</a></p>'
            "</noscript>")
    html = pages.render("Signing in", "Signing in", body, mark="🔑").replace(
        "</body>", f"<script>{script}</script></body>")
    return web.Response(text=html, content_type="text/html", charset="utf-8",
                        headers=NO_STORE)
