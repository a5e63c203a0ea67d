"""The proxy with a backend context for overlay tests: fake upstreams (the app, the panel, the
dashboard) that record what reaches them, a route table with one app, real rows, and a
client that speaks to the proxy as a browser on an app host or the dashboard host would.
One `asyncio.run` per test (`run`)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from backend.accounts import identity
from backend.context import Context
from models import User
from supervisor.proxy import start_proxy
from supervisor.proxy.server import Services
from supervisor.routes import Route, RouteTable
from tests.support import overlay_support as rows
from tests.support.upstream import RecordingServer

PAGE = (b"<!doctype html><html><head><title>App</title></head>"
        b"<body><div id=root></div></body></html>")


class FakeApp(RecordingServer):
    """An upstream that answers like a small Streamlit server, and records requests."""

    def __init__(self) -> None:
        super().__init__()
        self.ws_headers: list[dict[str, str]] = []
        app = self.app
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
        return await self.held_response(request, b"first chunk;" * 1000,
                                        {"Content-Type": "application/octet-stream"})

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
    dev: User
    viewer: User
    outsider: User
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

    def signed_in(self, who: User, sub: str = "hello") -> dict[str, str]:
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
            await f.stop()


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


async def authorize(env: Env, sub: str, cookies: dict[str, str], nxt: str = "/",
                    **headers: str) -> dict[str, str]:
    """Asks the dashboard host's /__stcloud/authorize for app host `sub` (with `cookies`);
    returns the query of the redirect it answers (the one-time `token`, `next`)."""
    async with env.request("GET", "/__stcloud/authorize?" + URL.build(query={
            "app": sub, "next": nxt}).query_string, sub=None, cookies=cookies,
            headers=headers) as r:
        assert r.status == 302, await r.text()
        return {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}


def env_services(env: Env) -> Services:
    """The proxy's Services object (for tests that look inside)."""
    return next(o for o in gc.get_objects() if isinstance(o, Services)
                and o.access.ctx is env.ctx)


async def csrf_token(env: Env, cookies: dict[str, str]) -> str:
    """The CSRF token /__stcloud/me hands the browser holding `cookies`."""
    async with env.request("GET", "/__stcloud/me", cookies=cookies) as r:
        return (await r.json())["csrf"]
