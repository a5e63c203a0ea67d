"""The proxy with a backend context: overlay injection, cookie isolation, identity on app
hosts (sign-in redirects, one-time tokens, the panel's signed header), private apps, our
endpoints (CSRF), our pages by viewer, view events. Real sockets, fake upstreams, a real
database; one `asyncio.run` per test (as tests/integration/test_proxy.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import select
from yarl import URL

from backend.accounts import identity
from backend.apps import favorites
from backend.context import Context
from models import App, AppEvent, EmailOutbox, SigninToken, ViewEvent, session_scope
from supervisor.proxy import start_proxy
from supervisor.proxy.inject import OVERLAY_TAGS
from supervisor.routes import Route, RouteTable
from tests.support import overlay_support as rows

pytestmark = pytest.mark.timeout(90)

PAGE = (b"<!doctype html><html><head><title>App</title></head>"
        b"<body><div id=root></div></body></html>")


class FakeApp:
    """An upstream that answers like a small Streamlit server, and records requests."""

    def __init__(self) -> None:
        self.requests: list[web.BaseRequest] = []
        self.release = asyncio.Event()
        self.ws_headers: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_get("/", self.page)
        app.router.add_get("/gz", self.gzipped_page)
        app.router.add_get("/plain-html", self.no_head)
        app.router.add_get("/app.js", self.script)
        app.router.add_get("/data.json", self.data)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/hang", self.hang)
        app.router.add_get("/cookies", self.cookies)
        app.router.add_get("/_stcore/stream", self.stream)
        app.router.add_get("/__stcloud/panel/_stcore/stream", self.stream)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.app = app
        self.runner: web.AppRunner | None = None
        self.address = ("127.0.0.1", 0)

    async def start(self) -> FakeApp:
        self.runner = web.AppRunner(self.app, shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.address = ("127.0.0.1", self.runner.addresses[0][1])
        return self

    async def page(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.Response(body=PAGE, content_type="text/html", headers={
            "ETag": '"abc"', "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT"})

    async def gzipped_page(self, request: web.Request) -> web.Response:
        self.requests.append(request)  # compresses whatever the client asked for
        return web.Response(body=gzip.compress(PAGE), headers={
            "Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"})

    async def no_head(self, request: web.Request) -> web.Response:
        return web.Response(text="just text, no tags", content_type="text/html")

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text="document.write('</head>')", content_type="text/html"
                            if request.query.get("lie") else "application/javascript")

    async def data(self, request: web.Request) -> web.Response:
        return web.json_response({"html": "</head></body>"})

    async def slow(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        await resp.write(b"first chunk;" * 1000)
        await self.release.wait()
        await resp.write(b"the rest")
        await resp.write_eof()
        return resp

    async def hang(self, request: web.Request) -> web.Response:
        await self.release.wait()  # no response headers until released
        return web.Response(text="late")

    async def cookies(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        resp = web.Response(text="ok")
        resp.headers.add("Set-Cookie", "app_pref=dark; Path=/")
        resp.headers.add("Set-Cookie", "stcloud_session=stolen; Path=/")
        resp.headers.add("Set-Cookie", "stcloud_csrf=tossed; Path=/; Domain=localhost")
        return resp

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        self.ws_headers.append(dict(request.headers))
        ws = web.WebSocketResponse(protocols=("streamlit",))
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(b"echo:" + msg.data)
        return ws

    async def echo(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.json_response({"path": request.path_qs,
                                  "headers": [[k, v] for k, v in request.headers.items()]})


@dataclasses.dataclass
class Env:
    ctx: Context
    routes: RouteTable
    session: aiohttp.ClientSession
    app: FakeApp
    panel: FakeApp
    dashboard: FakeApp
    dev: object
    viewer: object
    outsider: object
    app_id: int

    @property
    def port(self) -> int:
        return self.ctx.settings.port

    def host(self, sub: str | None = "hello") -> str:
        return f"{sub}.localhost:{self.port}" if sub else f"localhost:{self.port}"

    def request(self, method: str, path: str, sub: str | None = "hello", *,
                cookies: dict[str, str] | None = None, page: bool = False,
                **kw) -> aiohttp.client._RequestContextManager:
        headers = {"Host": self.host(sub), **kw.pop("headers", {})}
        if page:
            headers.update({"Accept": "text/html,*/*", "Sec-Fetch-Mode": "navigate",
                            "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"})
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return self.session.request(method, URL(f"http://127.0.0.1:{self.port}{path}",
                                                encoded=True), headers=headers,
                                    allow_redirects=False, **kw)

    def signed_in(self, who, sub: str = "hello") -> dict[str, str]:  # type: ignore
        return {identity.SESSION_COOKIE: rows.session_cookie(self.ctx, who, sub)}


@asynccontextmanager
async def overlay_env(ctx: Context) -> AsyncIterator[Env]:
    dev = rows.user(ctx, "dev")
    viewer = rows.user(ctx, "vera")
    outsider = rows.user(ctx, "otto", email="otto@example.com")
    ws = rows.workspace(ctx, "acme", [(dev, "developer"), (viewer, "viewer")])
    app_id = rows.app(ctx, ws, "hello", owner=dev)
    fake, panel, dash = FakeApp(), FakeApp(), FakeApp()
    for f in (fake, panel, dash):
        await f.start()
    routes = RouteTable()
    routes.dashboard_address = dash.address
    routes.panel_address = panel.address
    routes.set(Route(app_id=app_id, subdomain="hello", state="running", address=fake.address,
                     workspace_id=ws))
    runner = await start_proxy(ctx.settings, routes, ctx=ctx)
    session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    try:
        yield Env(ctx, routes, session, fake, panel, dash, dev, viewer, outsider, app_id)
    finally:
        await session.close()
        await runner.cleanup()
        for f in (fake, panel, dash):
            assert f.runner is not None
            await f.runner.cleanup()


def run(ctx: Context, scenario: Callable[[Env], Awaitable[None]]) -> None:
    async def main() -> None:
        async with overlay_env(ctx) as env:
            await scenario(env)
    asyncio.run(main())


def set_cookies(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out = {}
    for value in resp.headers.getall("Set-Cookie", []):
        name, _, rest = value.partition("=")
        out[name.strip()] = rest.split(";", 1)[0]
    return out


def sent_headers(body: dict) -> dict[str, str]:
    return {k.lower(): v for k, v in body["headers"]}


# Overlay injection ----------------------------------------------------------------------
def test_overlay_injected_into_html_pages_only(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        cookies = env.signed_in(env.dev)
        async with env.request("GET", "/", cookies=cookies, page=True,
                               headers={"Accept-Encoding": "gzip, br",
                                        "If-None-Match": '"abc"', "Range": "bytes=0-10"}) as r:
            body = await r.read()
            assert r.status == 200
            assert body == PAGE.replace(b"</head>", OVERLAY_TAGS + b"</head>")
            assert int(r.headers["Content-Length"]) == len(body)
            assert "ETag" not in r.headers and "Last-Modified" not in r.headers
        sent = env.app.requests[-1].headers  # the page was asked for whole and plain
        assert sent["Accept-Encoding"] == "identity"
        assert "If-None-Match" not in sent and "Range" not in sent
        # A compressed page is decoded, edited, and sent plain.
        async with env.request("GET", "/gz", cookies=cookies, page=True) as r:
            assert "Content-Encoding" not in r.headers
            assert await r.read() == PAGE.replace(b"</head>", OVERLAY_TAGS + b"</head>")
        # Without </head> or </body> the page is left as it is.
        async with env.request("GET", "/plain-html", cookies=cookies, page=True) as r:
            assert await r.read() == b"just text, no tags"
        # Scripts, JSON and HTML fetched as a subresource are never touched.
        for path, accept in (("/app.js", "*/*"), ("/data.json", "application/json"),
                             ("/app.js?lie=1", "*/*")):
            async with env.request("GET", path, cookies=cookies,
                                   headers={"Accept": accept, "Sec-Fetch-Dest": "script"}) as r:
                assert b"__stcloud" not in await r.read(), path
        # The overlay's own files are served on every app host.
        for name, kind in (("overlay.js", "javascript"), ("overlay.css", "text/css")):
            async with env.request("GET", f"/__stcloud/{name}") as r:
                assert r.status == 200 and kind in r.headers["Content-Type"]
    run(ctx, scenario)


def test_non_html_still_streams_unbuffered(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        # Even when the request looks like a page load, a non-HTML answer streams.
        async with env.request("GET", "/slow", cookies=env.signed_in(env.dev),
                               page=True) as r:
            first = await asyncio.wait_for(r.content.readexactly(12 * 1000), timeout=10)
            assert first == b"first chunk;" * 1000 and not env.app.release.is_set()
            env.app.release.set()
            assert await r.content.read() == b"the rest"
    run(ctx, scenario)


# Cookie isolation ------------------------------------------------------------------------
def test_our_cookies_never_reach_apps_and_apps_cannot_set_them(ctx) -> None:  # type: ignore
    async def scenario(env: Env) -> None:
        cookies = {**env.signed_in(env.dev), "app_pref": "dark", "stcloud_visitor": "v" * 22,
                   "stcloud_dashboard": "jwt", "stcloud_csrf": "c.d", "_streamlit_xsrf": "2|x"}
        async with env.request("GET", "/echo", cookies=cookies,
                               headers={"X-Stcloud-Identity": "forged",
                                        "x-stcloud-anything": "1"}) as r:
            got = sent_headers(await r.json())
        assert got["cookie"] == "app_pref=dark; _streamlit_xsrf=2|x"
        assert "x-stcloud-identity" not in got and "x-stcloud-anything" not in got
        async with env.request("GET", "/cookies") as r:
            assert r.headers.getall("Set-Cookie") == ["app_pref=dark; Path=/"]
        # Only our own cookies: the app sees no Cookie header at all.
        async with env.request("GET", "/echo", cookies=env.signed_in(env.dev)) as r:
            assert "cookie" not in sent_headers(await r.json())
    run(ctx, scenario)


# Identity on app hosts -------------------------------------------------------------------
def test_sign_in_flow_one_time_token_and_no_open_redirect(ctx) -> None:  # type: ignore
    async def scenario(env: Env) -> None:
        async with env.request("GET", "/__stcloud/login?next=/page%3Fa%3D1") as r:
            assert r.status == 302
            loc = URL(r.headers["Location"])
        assert str(loc.with_query(None)) == f"http://localhost:{env.port}/__stcloud/authorize"
        assert loc.query["app"] == "hello" and loc.query["next"] == "/page?a=1"
        dash = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "dev")}
        async with env.request("GET", loc.path_qs, sub=None, cookies=dash) as r:
            assert r.status == 302
            callback = URL(r.headers["Location"])
        assert callback.host == "hello.localhost" and callback.path == "/__stcloud/callback"
        assert callback.query["token"]
        async with env.request("GET", callback.path_qs) as r:
            assert r.status == 302 and r.headers["Location"] == "/page?a=1"
            cookie = r.headers["Set-Cookie"]
            value = set_cookies(r)[identity.SESSION_COOKIE]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie and "Secure" not in cookie  # http: no Secure
        session = identity.read_session(identity.server_key(env.ctx), value, "hello")
        assert session and session.user_id == env.dev.id  # type: ignore[attr-defined]
        async with env.request("GET", callback.path_qs) as r:  # single use
            assert r.status == 400 and "expired" in await r.text()
        # A token minted for another app host does not work here.
        other = env.routes.get("hello")
        env.routes.set(dataclasses.replace(other, subdomain="other", app_id=other.app_id))
        t2 = (await _authorize(env, "other", dash))["token"]
        async with env.request("GET", f"/__stcloud/callback?token={t2}") as r:
            assert r.status == 400
        # next is a relative path or nothing.
        for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            async with env.request("GET", "/__stcloud/login?next=" + evil) as r:
                assert URL(r.headers["Location"]).query["next"] == "/"
            t = (await _authorize(env, "hello", dash, nxt=evil))["token"]
            async with env.request("GET", f"/__stcloud/callback?token={t}&next={evil}") as r:
                assert r.headers["Location"] == "/"
        # authorize never sends anyone to an app host we do not serve.
        async with env.request("GET", "/__stcloud/authorize?app=evil.example%2F&next=/",
                               sub=None, cookies=dash) as r:
            assert r.status == 404
    run(ctx, scenario)


async def _authorize(env: Env, sub: str, cookies: dict[str, str], nxt: str = "/",
                     **headers: str) -> dict[str, str]:
    async with env.request("GET", "/__stcloud/authorize?" + URL.build(query={
            "app": sub, "next": nxt}).query_string, sub=None, cookies=cookies,
            headers=headers) as r:
        assert r.status == 302, await r.text()
        return {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}


def test_one_time_token_expires(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        dash = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "dev")}
        token = (await _authorize(env, "hello", dash))["token"]
        with session_scope(env.ctx.engine) as s:  # tokens are rows (supervisor/proxy/tokens.py)
            for row in s.exec(select(SigninToken)):
                row.expires_at -= timedelta(seconds=61)
                s.add(row)
        async with env.request("GET", f"/__stcloud/callback?token={token}") as r:
            assert r.status == 400
    run(ctx, scenario)


def env_services(env: Env):  # type: ignore[no-untyped-def]
    """The proxy's Services object (for tests that look inside)."""
    import gc

    from supervisor.proxy.server import Services
    return next(o for o in gc.get_objects() if isinstance(o, Services)
                and o.access.ctx is env.ctx)


def test_silent_check_and_return_after_sign_in(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        # A page load without a session is checked once, silently.
        async with env.request("GET", "/some/page?x=1", page=True) as r:
            assert r.status == 302
            login = URL(r.headers["Location"])
        assert login.path == "/__stcloud/login" and login.query["silent"] == "1"
        assert login.query["next"] == "/some/page?x=1"
        # Plain http on a real domain sends no Fetch Metadata: a navigation still asks for
        # HTML and to upgrade insecure requests. Other clients (curl, tests) are served.
        async with env.request("GET", "/", headers={
                "Accept": "text/html", "Upgrade-Insecure-Requests": "1"}) as r:
            assert r.status == 302 and "silent=1" in r.headers["Location"]
        async with env.request("GET", "/", headers={"Accept": "text/html"}) as r:
            assert r.status == 200
        async with env.request("GET", login.path_qs) as r:
            authorize = URL(r.headers["Location"])
        # Cross-site without the (SameSite=Strict) dashboard cookie: a same-site hop first.
        async with env.request("GET", authorize.path_qs, sub=None,
                               headers={"Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 200
            html = await r.text()
        hop = re.search(r'location\.replace\("([^"]+)"\)', html).group(1)  # type: ignore
        assert "hop=1" in hop
        async with env.request("GET", hop, sub=None,
                               headers={"Sec-Fetch-Site": "same-origin"}) as r:
            back = URL(r.headers["Location"])
        assert back.host == "hello.localhost" and back.query["error"] == "login_required"
        async with env.request("GET", back.path_qs) as r:
            assert r.headers["Location"] == "/some/page?x=1"
            marker = set_cookies(r)[identity.SESSION_COOKIE]
            assert "Max-Age" not in r.headers["Set-Cookie"]  # a browser-session cookie
        # Checked: the page is served, with a visitor cookie, and not checked again.
        async with env.request("GET", "/", page=True,
                               cookies={identity.SESSION_COOKIE: marker}) as r:
            assert r.status == 200
            assert identity.valid_visitor_id(set_cookies(r)[identity.VISITOR_COOKIE])
        # The marker is checked again on a page load from another site (e.g. "Open app" on
        # the dashboard, after signing in there), once it is older than a few seconds.
        key = identity.server_key(env.ctx)
        old = identity.session_cookie(key, 0, "", "hello", now=time.time() - 60)
        for cookie, site, bounced in ((old, "cross-site", True), (old, "same-origin", False),
                                      (marker, "cross-site", False)):
            async with env.request("GET", "/", cookies={identity.SESSION_COOKIE: cookie},
                                   headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate",
                                            "Sec-Fetch-Dest": "document",
                                            "Sec-Fetch-Site": site}) as r:
                assert (r.status == 302) is bounced, site
        # A non-silent sign-in without the dashboard cookie goes to the dashboard's form,
        # and the dashboard's pages then carry the script that brings the visitor back.
        async with env.request("GET", "/__stcloud/authorize?app=hello&next=/p", sub=None) as r:
            assert r.status == 302 and r.headers["Location"] == \
                f"http://localhost:{env.port}/?signin_for=hello"  # the form names the app
            ret = set_cookies(r)[identity.RETURN_COOKIE]
        jar = {identity.RETURN_COOKIE: ret}
        async with env.request("GET", "/", sub=None, cookies=jar, page=True) as r:
            assert b'/__stcloud/return.js' in await r.read()
        async with env.request("GET", "/", sub=None, page=True) as r:
            assert b"__stcloud" not in await r.read()
        async with env.request("GET", "/__stcloud/return", sub=None, cookies=jar) as r:
            assert await r.json() == {"wait": True}
        jar[identity.DASHBOARD_COOKIE] = rows.dashboard_cookie(env.ctx, "dev")
        async with env.request("GET", "/__stcloud/return", sub=None, cookies=jar) as r:
            url = (await r.json())["url"]
            assert set_cookies(r)[identity.RETURN_COOKIE] == ""  # used up
        assert url == "/__stcloud/authorize?app=hello&next=%2Fp"
        # The dashboard keeps its own cookie; the return cookie never reaches it.
        async with env.request("GET", "/echo", sub=None, cookies=jar) as r:
            got = sent_headers(await r.json())
        assert got["cookie"].startswith(identity.DASHBOARD_COOKIE + "=")
        assert identity.RETURN_COOKIE not in got["cookie"]
    run(ctx, scenario)


def test_sign_out_goes_through_the_dashboard(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        cookies = env.signed_in(env.dev)
        token = await _csrf(env, cookies)
        cookies[identity.CSRF_COOKIE] = token
        async with env.request("POST", "/__stcloud/logout", cookies=cookies,
                               data={"csrf": token}) as r:
            assert r.status == 303
            out = URL(r.headers["Location"])
            marker = set_cookies(r)[identity.SESSION_COOKIE]
        session = identity.read_session(identity.server_key(env.ctx), marker, "hello")
        assert session is not None and session.anonymous
        async with env.request("GET", out.path_qs, sub=None) as r:
            assert r.status == 303 and r.headers["Location"] == f"http://localhost:{env.port}/"
            assert set_cookies(r)[identity.DASHBOARD_COOKIE] == ""
        async with env.request("GET", "/__stcloud/logout?t=forged", sub=None) as r:
            assert r.status == 400 and not set_cookies(r)
    run(ctx, scenario)


# The panel ---------------------------------------------------------------------------------
def test_panel_gets_a_signed_identity_that_clients_cannot_forge(ctx) -> None:  # type: ignore
    async def scenario(env: Env) -> None:
        key = identity.server_key(env.ctx)
        forged = identity.panel_header(b"x" * 32, env.outsider.id, "otto", env.app_id,
                                       "hello")
        async with env.request("GET", "/__stcloud/panel/?a=1", cookies=env.signed_in(env.dev),
                               headers={identity.PANEL_HEADER: forged}) as r:
            body = await r.json()
        assert body["path"] == "/__stcloud/panel/?a=1"  # the prefix is kept
        got = sent_headers(body)
        who = identity.read_panel_header(key, got[identity.PANEL_HEADER.lower()], got["host"])
        assert who == identity.PanelIdentity(env.dev.id, "dev", env.app_id, "hello")
        assert "cookie" not in got
        # Anonymous: the client's copy is dropped and none is added.
        async with env.request("GET", "/__stcloud/panel/",
                               headers={identity.PANEL_HEADER: forged}) as r:
            assert identity.PANEL_HEADER.lower() not in sent_headers(await r.json())
        # The panel's websocket carries it too (Streamlit's st.context.headers reads it).
        async with env.session.ws_connect(
                f"http://127.0.0.1:{env.port}/__stcloud/panel/_stcore/stream",
                headers={"Host": env.host(), identity.PANEL_HEADER: forged,
                         "Cookie": "stcloud_session=" +
                         rows.session_cookie(env.ctx, env.dev, "hello")}) as ws:
            await ws.close()
        seen = {k.lower(): v for k, v in env.panel.ws_headers[-1].items()}
        assert identity.read_panel_header(key, seen[identity.PANEL_HEADER.lower()],
                                          seen["host"]).user_id == env.dev.id
        assert env.app.ws_headers == []  # the app never sees the panel's traffic
        env.routes.panel_address = None
        async with env.request("GET", "/__stcloud/panel/") as r:
            assert r.status == 503
    run(ctx, scenario)


# Private apps --------------------------------------------------------------------------------
def test_password_change_signs_out_app_host_sessions(ctx) -> None:  # type: ignore
    """A session cookie issued before its user's password change no longer signs in on app
    hosts (another browser, or a stolen cookie); one issued after does."""
    from backend.accounts import auth

    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, visibility="private"))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).visibility = "private"
        key = identity.server_key(env.ctx)
        before = {identity.SESSION_COOKIE: identity.session_cookie(
            key, env.dev.id, env.dev.username, "hello", now=time.time() - 30)}
        auth.reset_password(env.ctx, env.dev.username, "a-new-password-123")
        async with env.request("GET", "/", page=True, cookies=before) as r:
            assert r.status == 302, "the old session must not sign in any more"
            assert URL(r.headers["Location"]).path == "/__stcloud/login"
        after = {identity.SESSION_COOKIE: identity.session_cookie(
            key, env.dev.id, env.dev.username, "hello", now=time.time() + 2)}
        async with env.request("GET", "/", page=True, cookies=after) as r:
            assert r.status == 200

    run(ctx, scenario)


def test_private_app_refusal_and_admission(ctx, monkeypatch) -> None:  # type: ignore
    from backend.apps import sharing
    calls = []
    real = sharing.can_view
    monkeypatch.setattr(sharing, "can_view", lambda c, u, a: calls.append(a) or real(c, u, a))

    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, visibility="private"))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).visibility = "private"
        async with env.request("GET", "/page", page=True) as r:  # anonymous page load
            assert r.status == 302
            assert URL(r.headers["Location"]).path == "/__stcloud/login"
            assert "silent" not in URL(r.headers["Location"]).query
        for path in ("/app.js", "/_stcore/health"):  # anything else: refused outright
            async with env.request("GET", path) as r:
                assert r.status == 401
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.outsider)) as r:
            assert r.status == 403
            html = await r.text()
        assert "have access to this app" in html and "acme" in html
        assert "Sign in as someone else" in html
        async with env.request("GET", "/app.js", cookies=env.signed_in(env.outsider)) as r:
            assert r.status == 403
        assert not env.app.requests
        # Members and invited viewers are admitted.
        from backend.apps.sharing import invite_viewer
        invite_viewer(env.ctx, env.dev, env.app_id, "otto@example.com")
        for who in (env.dev, env.viewer):
            async with env.request("GET", "/", page=True, cookies=env.signed_in(who)) as r:
                assert r.status == 200
        calls.clear()
        for _ in range(20):  # assets: can_view is cached per user and app
            async with env.request("GET", "/app.js", cookies=env.signed_in(env.viewer)) as r:
                assert r.status == 200
        assert len(calls) <= 1
    run(ctx, scenario)


# Endpoints -----------------------------------------------------------------------------------
async def _csrf(env: Env, cookies: dict[str, str]) -> str:
    async with env.request("GET", "/__stcloud/me", cookies=cookies) as r:
        return (await r.json())["csrf"]


def test_me_and_favorite(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        async with env.request("GET", "/__stcloud/me") as r:
            me = await r.json()
        assert me["signed_in"] is False and me["can_manage"] is False
        assert me["can_favorite"] is False and me["sign_in_url"] == "/__stcloud/login"
        async with env.request("GET", "/__stcloud/me", cookies=env.signed_in(env.viewer)) as r:
            me = await r.json()
        assert me["role"] == "viewer" and not me["can_manage"] and not me["can_favorite"]
        cookies = env.signed_in(env.dev)
        async with env.request("GET", "/__stcloud/me", cookies=cookies) as r:
            me = await r.json()
            cookies[identity.CSRF_COOKIE] = set_cookies(r)[identity.CSRF_COOKIE]
        assert me["username"] == "dev" and me["role"] == "developer"
        assert me["can_manage"] and me["can_favorite"] and me["favorite"] is False
        assert me["csrf"] == cookies[identity.CSRF_COOKIE]
        headers = {"X-Stcloud-CSRF": me["csrf"], "Origin": f"http://{env.host()}"}
        async with env.request("POST", "/__stcloud/favorite", cookies=cookies,
                               json={"favorite": True}, headers=headers) as r:
            assert await r.json() == {"favorite": True}
        assert favorites.favorite_ids(env.ctx, env.dev) == {env.app_id}
        async with env.request("GET", "/__stcloud/me", cookies=cookies) as r:
            assert (await r.json())["favorite"] is True
        # CSRF: no token, a wrong one, or another origin are refused.
        for bad in ({}, {"X-Stcloud-CSRF": "x.y"},
                    {**headers, "Origin": f"http://evil.localhost:{env.port}"}):
            async with env.request("POST", "/__stcloud/favorite", cookies=cookies,
                                   json={"favorite": False}, headers=bad) as r:
                assert r.status == 403
        assert favorites.favorite_ids(env.ctx, env.dev) == {env.app_id}
        # View-only access: no in-app favorite.
        vcookies = {**env.signed_in(env.viewer), identity.CSRF_COOKIE: me["csrf"]}
        async with env.request("POST", "/__stcloud/favorite", cookies=vcookies,
                               json={"favorite": True}, headers=headers) as r:
            assert r.status == 403
        async with env.request("POST", "/__stcloud/favorite", cookies=cookies,
                               data=b"x" * 5000, headers=headers) as r:
            assert r.status == 413
        async with env.request("GET", "/__stcloud/favorite", cookies=cookies) as r:
            assert r.status == 405
    run(ctx, scenario)


def test_sleeping_page_wakes_with_csrf(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="sleeping", address=None))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).state = "sleeping"
        anon = {identity.SESSION_COOKIE: rows.session_cookie(env.ctx, None, "hello")}
        async with env.request("GET", "/", page=True, cookies=anon) as r:
            assert r.status == 503
            html = await r.text()
            token = set_cookies(r)[identity.CSRF_COOKIE]
        assert "This app has gone to sleep due to inactivity" in html
        assert "Yes, get this app back up!" in html and f'value="{token}"' in html
        jar = {**anon, identity.CSRF_COOKIE: token}
        for bad in ({}, {"csrf": "nope"}):
            async with env.request("POST", "/__stcloud/wake", cookies=jar, data=bad) as r:
                assert r.status == 403
        async with env.request("POST", "/__stcloud/wake", cookies=jar, data={"csrf": token},
                               headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403
        with session_scope(env.ctx.engine) as s:
            assert s.get(App, env.app_id).state == "sleeping"
        async with env.request("POST", "/__stcloud/wake", cookies=jar, data={"csrf": token},
                               headers={"Origin": f"http://{env.host()}"}) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
        with session_scope(env.ctx.engine) as s:
            assert s.get(App, env.app_id).state == "starting"
        async with env.request("GET", "/", page=True, cookies=jar) as r:
            assert r.status == 503 and "Your app is in the oven" in await r.text()
    run(ctx, scenario)


def test_over_limit_pages_and_notify_once(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="over_limit", address=None,
                                           reason="Used more than 1024 MiB"))
        with session_scope(env.ctx.engine) as s:
            app = s.get(App, env.app_id)
            app.state = "over_limit"
            s.add(AppEvent(app_id=env.app_id, from_state="running", to_state="over_limit"))
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.dev)) as r:
            html = await r.text()
        assert "Reboot app" in html and "1024 MiB" in html and "Notify" not in html
        assert f"/logs?app={env.app_id}" in html  # a link to the logs
        vcookies = env.signed_in(env.viewer)
        async with env.request("GET", "/", page=True, cookies=vcookies) as r:
            html = await r.text()
            token = set_cookies(r)[identity.CSRF_COOKIE]
        assert "Notify the developer" in html and "Reboot" not in html
        assert "1024 MiB" not in html
        vcookies[identity.CSRF_COOKIE] = token
        async with env.request("POST", "/__stcloud/notify", cookies=vcookies, data={}) as r:
            assert r.status == 403
        for _ in range(2):
            async with env.request("POST", "/__stcloud/notify", cookies=vcookies,
                                   data={"csrf": token}) as r:
                assert r.status == 200 and "Developers notified" in await r.text()
        with session_scope(env.ctx.engine) as s:
            mails = s.exec(select(EmailOutbox)).all()
        assert [m.to_addr for m in mails] == ["dev@example.com"]  # once per incident
        assert "resource limits" in mails[0].subject
    run(ctx, scenario)


@pytest.mark.parametrize("state,heading", [("crashed", "has crashed"),
                                           ("build_failed", "failed to build")])
def test_failure_pages_show_details_to_developers_only(ctx, state, heading) -> None:  # type: ignore
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state=state, address=None,
                                           reason="Traceback: SECRET_TOKEN=abc"))
        log_dir = env.ctx.settings.logs_path / str(env.app_id)
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "app.log").write_text("app said <hello>\n")
        (log_dir / "build.log").write_text("pip said <no>\n")
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.dev)) as r:
            dev_html = await r.text()
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.viewer)) as r:
            viewer_html = await r.text()
        assert heading in dev_html and heading in viewer_html
        assert "SECRET_TOKEN" in dev_html and "SECRET_TOKEN" not in viewer_html
        tail = "pip said &lt;no&gt;" if state == "build_failed" else "app said &lt;hello&gt;"
        assert tail in dev_html and "said" not in viewer_html
    run(ctx, scenario)


def test_reboot_needs_developer_and_csrf(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="crashed", address=None))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).state = "crashed"
        for who, status in ((env.viewer, 403), (env.dev, 303)):
            cookies = env.signed_in(who)
            token = await _csrf(env, cookies)
            cookies[identity.CSRF_COOKIE] = token
            async with env.request("POST", "/__stcloud/reboot", cookies=cookies,
                                   data={"csrf": token}) as r:
                assert r.status == status
        with session_scope(env.ctx.engine) as s:
            assert s.get(App, env.app_id).state == "queued"
        async with env.request("GET", "/__stcloud/status") as r:  # shown at once: the oven
            assert (await r.json())["state"] == "queued"
        assert env.routes.get("hello").state == "crashed"  # the proxy never writes the table
    run(ctx, scenario)


# View events ---------------------------------------------------------------------------------
def test_view_events_per_new_session(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        async def open_stream(cookies: dict[str, str], *protocols: str) -> None:
            headers = {"Host": env.host(), "Origin": f"http://{env.host()}",
                       "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
            async with env.session.ws_connect(
                    f"http://127.0.0.1:{env.port}/_stcore/stream", headers=headers,
                    protocols=protocols or ("streamlit",)) as ws:
                await ws.send_bytes(b"hi")
                assert await ws.receive_bytes(timeout=5) == b"echo:hi"
        visitor = identity.new_visitor_id()
        await open_stream(env.signed_in(env.dev))
        await open_stream(env.signed_in(env.dev))  # the same viewer again at once: deduped
        # A reconnect that carries its session id is the same session.
        await open_stream(env.signed_in(env.viewer), "streamlit", "xsrf", "session-id-1")
        await open_stream({identity.VISITOR_COOKIE: visitor})
        assert "cookie" not in {k.lower() for k in env.app.ws_headers[-1]}
        services = env_services(env)
        assert services.views.pending == 2  # queued, nothing written on the request path
        await services.views.flush()
        with session_scope(env.ctx.engine) as s:
            events = s.exec(select(ViewEvent)).all()
            last_viewed = s.get(App, env.app_id).last_viewed_at
        assert sorted(e.viewer_key for e in events) == sorted(
            [f"u:{env.dev.id}", f"v:{visitor}"])
        assert last_viewed is not None
        assert (datetime.now(UTC) - last_viewed.replace(tzinfo=UTC)
                ).total_seconds() < 60
    run(ctx, scenario)


# Limits --------------------------------------------------------------------------------------
def test_header_limits(ctx) -> None:  # type: ignore[no-untyped-def]
    async def scenario(env: Env) -> None:
        async with env.request("GET", "/echo", headers={"X-Big": "x" * 40_000}) as r:
            assert r.status in (400, 431)
        async with env.request("GET", "/__stcloud/status",
                               headers={"X-Ok": "x" * 20_000}) as r:
            assert r.status == 200  # long cookies and tokens still fit
        many = {f"X-H{i}": "1" for i in range(150)}
        async with env.request("GET", "/echo", headers=many) as r:
            assert r.status in (400, 431)
    run(ctx, scenario)


def test_upstream_response_timeout(ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from supervisor.proxy import forward
    monkeypatch.setattr(forward, "RESPONSE_TIMEOUT", 0.3)

    async def scenario(env: Env) -> None:
        async with env.request("GET", "/hang") as r:
            assert r.status == 502 and "not answering" in await r.text()
        env.app.release.set()
        async with env.request("GET", "/hang") as r:  # a prompt answer still passes
            assert r.status == 200 and await r.text() == "late"
    run(ctx, scenario)
