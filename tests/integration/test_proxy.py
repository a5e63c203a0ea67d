"""The reverse proxy against fake upstreams and one real Streamlit server, on real sockets.

Every test runs one `asyncio.run(...)`: fake upstream aiohttp servers on free ports, a
RouteTable, and the proxy started with `start_proxy` on the settings' free port. Clients
pick the target with the Host header, as a browser would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from backend.platform.settings import Settings
from supervisor.proxy import make_proxy_app, start_proxy
from supervisor.routes import Route, RouteTable
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(90)

BIG = random.Random(7).randbytes(20 * 1024 * 1024)


# Fake upstreams -----------------------------------------------------------------------
class Upstream:
    """An aiohttp server that records what reached it and answers test endpoints."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[web.BaseRequest] = []
        self.release = asyncio.Event()
        self.ws_closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.ws_headers: dict[str, str] = {}
        app = web.Application()
        app.router.add_route("*", "/slow", self.slow)
        app.router.add_get("/big", self.big)
        app.router.add_get("/gzip", self.gzipped)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/hop", self.hop)
        app.router.add_get("/broken", self.broken)
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/ws", self.ws)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.app = app
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> Upstream:
        self.runner = web.AppRunner(self.app, shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def echo(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.json_response({
            "upstream": self.name, "method": request.method, "target": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
        })

    async def slow(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first chunk;")
        await self.release.wait()
        await resp.write(b"the rest")
        await resp.write_eof()
        return resp

    async def big(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        view = memoryview(BIG)
        for i in range(0, len(BIG), 256 * 1024):
            await resp.write(view[i:i + 256 * 1024])
        await resp.write_eof()
        return resp

    async def gzipped(self, request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"zipped " * 1000), headers={
            "Content-Encoding": "gzip", "Content-Type": "text/plain"})

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def hop(self, request: web.Request) -> web.Response:
        return web.Response(text="hop", headers={
            "Connection": "X-Secret", "X-Secret": "1", "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic", "X-Kept": "yes"})

    async def broken(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return resp

    async def upload(self, request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": digest.hexdigest(),
                                  "chunked": request.headers.get("Transfer-Encoding")})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        self.ws_headers = dict(request.headers)
        ws = web.WebSocketResponse(protocols=("streamlit",), max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                if msg.data == "close-me":
                    await ws.close(code=4001, message=b"bye")
                    break
                await ws.send_str("echo:" + msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(b"echo:" + msg.data)
        if not self.ws_closed.done():
            self.ws_closed.set_result(ws.close_code)
        return ws


async def _api_app() -> web.Application:
    api = web.Application()

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"pong": True})
    api.router.add_get("/ping", ping)
    return api


@asynccontextmanager
async def proxy_env(settings: Settings, *, api: web.Application | None = None,
                    dashboard: bool = True) -> AsyncIterator[Env]:
    app_up = await Upstream("app").start()
    dash_up = await Upstream("dashboard").start()
    routes = RouteTable()
    routes.dashboard_address = dash_up.address if dashboard else None
    routes.set(Route(app_id=1, subdomain="hello", state="running", address=app_up.address))
    runner = await start_proxy(settings, routes, api=api)
    session = aiohttp.ClientSession(auto_decompress=False)
    env = Env(settings, routes, runner, session, app_up, dash_up)
    try:
        yield env
    finally:
        await session.close()
        await runner.cleanup()
        await app_up.stop()
        await dash_up.stop()


@dataclasses.dataclass
class Env:
    settings: Settings
    routes: RouteTable
    runner: web.AppRunner
    session: aiohttp.ClientSession
    app: Upstream
    dashboard: Upstream

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def host(self, sub: str | None = None) -> str:
        name = f"{sub}.{self.settings.domain}" if sub else self.settings.domain
        return f"{name}:{self.settings.port}"

    def get(self, path: str, sub: str | None = None, **kw) -> aiohttp.client._RequestContextManager:
        headers = {"Host": self.host(sub), **kw.pop("headers", {})}
        return self.session.get(URL(self.base + path, encoded=True), headers=headers,
                                allow_redirects=False, **kw)


def run(settings: Settings, scenario: Callable[[Env], Awaitable[None]], **kw) -> None:
    async def main() -> None:
        async with proxy_env(settings, **kw) as env:
            await scenario(env)
    asyncio.run(main())


# Routing -------------------------------------------------------------------------------
def test_dashboard_and_app_routing_by_host(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        for host in (env.host(), "127.0.0.1", f"127.0.0.1:{env.settings.port}",
                     f"[::1]:{env.settings.port}", "LOCALHOST"):
            async with env.session.get(env.base + "/", headers={"Host": host}) as r:
                assert r.status == 200, host
                assert (await r.json())["upstream"] == "dashboard", host
        async with env.get("/some/page", sub="hello") as r:
            assert (await r.json())["upstream"] == "app"
        async with env.get("/", sub="nosuch") as r:
            assert r.status == 404
            text = await r.text()
            assert "No app lives at nosuch.localhost" in text
            assert f'href="{env.settings.public_url()}"' in text
        for host in ("example.com", "a.b.localhost", "localhost.example.com"):
            async with env.session.get(env.base + "/", headers={"Host": host}) as r:
                assert r.status == 404, host
                assert "No app lives at" in await r.text()
        assert len(env.app.requests) == 1 and len(env.dashboard.requests) == 5
    run(settings, scenario)


def test_dashboard_starting_and_api(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        async with env.get("/") as r:
            assert r.status == 503
            assert r.headers["Cache-Control"] == "no-store"
            assert "The dashboard is starting" in await r.text()
        async with env.get("/__stcloud/status") as r:
            assert await r.json() == {"state": "starting", "reason": "", "serving": False}
        async with env.get("/api/v1/ping") as r:
            assert await r.json() == {"pong": True}
        async with env.get("/api/v1/ping", sub="hello") as r:  # an app's own /api/v1
            assert (await r.json())["upstream"] == "app"

    async def main() -> None:
        async with proxy_env(settings, api=await _api_app(), dashboard=False) as env:
            await scenario(env)
    asyncio.run(main())


def test_no_api_gives_json_404(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        async with env.get("/api/v1/apps") as r:
            assert r.status == 404
            assert r.content_type == "application/json"
        assert env.dashboard.requests == []
    run(settings, scenario)


def test_oven_page_and_status(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        env.routes.set(Route(app_id=2, subdomain="baking", state="building", address=None,
                             reason="Building environment"))
        async with env.get("/", sub="baking") as r:
            assert r.status == 503
            assert r.headers["Retry-After"] and r.headers["Cache-Control"] == "no-store"
            html = await r.text()
        assert "Your app is in the oven" in html and "Building environment" in html
        assert '<html lang="en">' in html and "<title>" in html and "<h1>" in html
        assert "/__stcloud/status" in html and "location.reload()" in html
        assert '<noscript><meta http-equiv="refresh"' in html
        assert "http://" not in html.replace(env.settings.public_url(), "")  # no assets
        async with env.get("/__stcloud/status", sub="baking") as r:
            assert r.headers["Cache-Control"] == "no-store"
            assert await r.json() == {"state": "building", "reason": "Building environment",
                                      "serving": False}
        env.routes.set(Route(app_id=2, subdomain="baking", state="running",
                             address=env.app.address, reason="Started"))
        async with env.get("/__stcloud/status", sub="baking") as r:
            assert await r.json() == {"state": "running", "reason": "Started",
                                      "serving": True}
        async with env.get("/", sub="baking") as r:
            assert (await r.json())["upstream"] == "app"
        # The whole prefix is ours, never forwarded.
        before = len(env.app.requests)
        async with env.get("/__stcloud/anything", sub="baking") as r:
            assert r.status == 404
        async with env.get("/__stcloud/status", sub="nosuch") as r:
            assert r.status == 404 and (await r.json())["serving"] is False
        assert len(env.app.requests) == before
    run(settings, scenario)


@pytest.mark.browser
def test_oven_page_takes_a_browser_to_the_app(settings: Settings) -> None:
    """In Chromium: the oven page follows the state, then reloads onto the serving app."""
    playwright = pytest.importorskip("playwright.async_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium")

    async def scenario(env: Env) -> None:
        env.routes.set(Route(app_id=2, subdomain="baking", state="building", address=None,
                             reason="Building environment"))
        async with playwright.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                # Chromium resolves *.localhost to loopback by itself.
                await page.goto(f"http://baking.localhost:{env.settings.port}/")
                assert await page.inner_text("#state-label") == "Building"
                env.routes.set(Route(app_id=2, subdomain="baking", state="starting",
                                     address=None, reason="Starting the app"))
                await page.wait_for_function(
                    "document.getElementById('reason').textContent == 'Starting the app'",
                    timeout=10_000)
                env.routes.set(Route(app_id=2, subdomain="baking", state="running",
                                     address=env.app.address))
                await page.wait_for_function(
                    "document.body.innerText.includes('\"upstream\": \"app\"')",
                    timeout=10_000)
            finally:
                await browser.close()
    run(settings, scenario)


@pytest.mark.parametrize("state,words", [
    ("build_failed", "failed to build"), ("crashed", "has crashed"),
    ("over_limit", "resource limits"), ("sleeping", "gone to sleep")])
def test_state_pages(settings: Settings, state: str, words: str) -> None:
    async def scenario(env: Env) -> None:
        env.routes.set(Route(app_id=3, subdomain="sad", state=state, address=None,
                             reason="Something <specific> happened"))
        async with env.get("/", sub="sad") as r:
            assert r.status == 503 and r.headers["Retry-After"]
            html = await r.text()
        assert words in html
        assert "Something &lt;specific&gt; happened" in html  # the reason, escaped
        assert f'href="{env.settings.public_url()}"' in html
    run(settings, scenario)


# Headers ---------------------------------------------------------------------------------
def test_host_kept_forwarded_headers_set_hop_by_hop_dropped(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        headers = {"X-Forwarded-For": "203.0.113.9", "Connection": "keep-alive, X-Drop-Me",
                   "X-Drop-Me": "1", "Keep-Alive": "300", "Proxy-Authorization": "Basic x",
                   "TE": "trailers", "X-Keep": "yes", "Cookie": "a=b"}
        async with env.get("/echo?a=1&b=%2F%20", sub="hello", headers=headers) as r:
            seen = await r.json()
        got = {k.lower(): v for k, v in seen["headers"]}
        assert seen["target"] == "/echo?a=1&b=%2F%20"
        assert got["host"] == env.host("hello")
        assert got["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert got["x-forwarded-proto"] == "http"
        assert got["x-forwarded-host"] == env.host("hello")
        assert got["x-keep"] == "yes" and got["cookie"] == "a=b"
        for name in ("x-drop-me", "keep-alive", "proxy-authorization", "te"):
            assert name not in got, name
        async with env.get("/hop", sub="hello") as r:
            assert r.headers["X-Kept"] == "yes"
            for name in ("X-Secret", "Keep-Alive", "Proxy-Authenticate"):
                assert name not in r.headers, name
        async with env.get("/redirect", sub="hello") as r:
            assert r.status == 302 and r.headers["Location"] == "/elsewhere"
        async with env.get("/gzip", sub="hello") as r:  # passed through, not decoded
            assert r.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(await r.read()) == b"zipped " * 1000
    run(settings, scenario)


# Streaming -------------------------------------------------------------------------------
def test_response_streams_without_buffering(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        async with env.get("/slow", sub="hello") as r:
            first = await asyncio.wait_for(r.content.readexactly(12), timeout=10)
            assert first == b"first chunk;"
            assert not env.app.release.is_set()
            env.app.release.set()
            assert await r.content.read() == b"the rest"
    run(settings, scenario)


def test_large_body_streams_intact(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        async with env.get("/big", sub="hello") as r:
            digest, size = hashlib.sha256(), 0
            async for chunk in r.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
        assert size == len(BIG) and digest.digest() == hashlib.sha256(BIG).digest()
    run(settings, scenario)


def test_post_body_streams_upstream(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        payload = BIG[: 5 * 1024 * 1024]

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(payload), 100_000):
                yield payload[i:i + 100_000]
        want = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        headers = {"Host": env.host("hello")}
        async with env.session.post(env.base + "/upload", data=chunks(), headers=headers) as r:
            got = await r.json()
        assert got["chunked"] == "chunked" and {k: got[k] for k in want} == want
        async with env.session.post(env.base + "/upload", data=io.BytesIO(payload),
                                    headers=headers) as r:
            got = await r.json()
        assert got["chunked"] is None and {k: got[k] for k in want} == want
    run(settings, scenario)


def test_upstream_dying_mid_body_is_not_a_complete_response(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with env.get("/broken", sub="hello") as r:
                await r.read()
        async with env.get("/after", sub="hello") as r:  # the proxy still serves
            assert r.status == 200
    run(settings, scenario)


# Upstream down -------------------------------------------------------------------------
def test_upstream_down(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        dead = ("127.0.0.1", free_port())
        env.routes.set(Route(app_id=4, subdomain="gone", state="running", address=dead))
        async with env.get("/", sub="gone") as r:
            assert r.status == 502
            assert "The app is not answering" in await r.text()
        env.routes.dashboard_address = dead
        async with env.get("/") as r:
            assert r.status == 503
            assert "The dashboard is starting" in await r.text()
    run(settings, scenario)


def test_stale_pooled_connection_is_retried_once(settings: Settings) -> None:
    """An upstream that drops a kept-alive connection when it is reused (as uvicorn does
    after its keep-alive timeout): a GET is retried on a fresh connection."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while await reader.readuntil(b"\r\n\r\n"):
            if served:  # the second request on this connection: hang up
                break
            served += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    async def scenario(env: Env) -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        env.routes.set(Route(app_id=5, subdomain="flaky", state="running",
                             address=("127.0.0.1", port)))
        try:
            for _ in range(3):
                async with env.get("/", sub="flaky") as r:
                    assert r.status == 200 and await r.read() == b"ok"
        finally:
            server.close()
    run(settings, scenario)


# WebSockets -----------------------------------------------------------------------------
def test_websocket_relay(settings: Settings) -> None:
    async def scenario(env: Env) -> None:
        headers = {"Host": env.host("hello"), "Origin": f"http://{env.host('hello')}",
                   "Cookie": "session=abc"}
        async with env.session.ws_connect(env.base + "/ws", headers=headers, max_msg_size=0,
                                          protocols=("streamlit", "xsrf-token-123")) as ws:
            assert ws.protocol == "streamlit"
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=5) == "echo:hi"
            await ws.send_bytes(b"\x00\x01")
            assert await ws.receive_bytes(timeout=5) == b"echo:\x00\x01"
            big = BIG[: 6 * 1024 * 1024]  # over aiohttp's default 4 MiB message limit
            await ws.send_bytes(big)
            assert await ws.receive_bytes(timeout=10) == b"echo:" + big
            await ws.close(code=4002)
        assert await asyncio.wait_for(env.app.ws_closed, 5) == 4002
        seen = env.app.ws_headers
        assert seen["Host"] == env.host("hello") and seen["Cookie"] == "session=abc"
        assert seen["Origin"] == f"http://{env.host('hello')}"
        assert [p.strip() for p in seen["Sec-WebSocket-Protocol"].split(",")] == [
            "streamlit", "xsrf-token-123"]

        # A close from the upstream reaches the client with its code.
        async with env.session.ws_connect(env.base + "/ws", headers=headers) as ws:
            await ws.send_str("close-me")
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4001
            assert msg.extra == "bye"
    run(settings, scenario)


def test_shutdown_closes_websockets(settings: Settings) -> None:
    async def main() -> None:
        up = await Upstream("app").start()
        routes = RouteTable()
        routes.set(Route(app_id=1, subdomain="hello", state="running", address=up.address))
        runner = await start_proxy(settings, routes)
        host = f"hello.localhost:{settings.port}"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{settings.port}/ws",
                                          headers={"Host": host}) as ws:
                await ws.send_str("hi")
                assert await ws.receive_str(timeout=5) == "echo:hi"
                started = time.monotonic()
                await runner.cleanup()
                msg = await ws.receive(timeout=5)
                assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1001
                assert time.monotonic() - started < 4
        assert await asyncio.wait_for(up.ws_closed, 5) == 1001
        await up.stop()
    asyncio.run(main())


def test_make_proxy_app_is_an_application(settings: Settings) -> None:
    assert isinstance(make_proxy_app(settings, RouteTable()), web.Application)


# A real Streamlit server ------------------------------------------------------------------
STREAMLIT_APP = 'import streamlit as st\nst.title("Hello through the proxy")\n'


async def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "streamlit exited"
            try:
                async with session.get(f"http://127.0.0.1:{port}/_stcore/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)  # polling interval, not synchronisation
    raise TimeoutError("streamlit did not become healthy")


def test_real_streamlit_through_proxy(settings: Settings, tmp_path: Path) -> None:
    from tests.support.streamlit_client import open_streamlit_session

    script = tmp_path / "streamlit_app.py"
    script.write_text(STREAMLIT_APP)
    port = free_port()
    log_file = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        async def main() -> None:
            await _wait_healthy(port, proc)
            routes = RouteTable()
            routes.set(Route(app_id=1, subdomain="st", state="running",
                             address=("127.0.0.1", port)))
            runner = await start_proxy(settings, routes)
            host = f"st.localhost:{settings.port}"
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.get(f"http://127.0.0.1:{settings.port}/",
                                           headers={"Host": host}) as r:
                        assert r.status == 200
                        html = await r.text()
                assert '<div id="root">' in html and "<title>Streamlit</title>" in html
                seen = await open_streamlit_session(f"ws://127.0.0.1:{settings.port}", host)
                # Streamlit refuses a foreign Origin; the refusal reaches the client.
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await open_streamlit_session(f"ws://127.0.0.1:{settings.port}", host,
                                                 origin="http://evil.example")
                assert refused.value.status == 403
            finally:
                await runner.cleanup()
            assert seen["protocol"] == "streamlit"
            assert seen["new_session"] and seen["session_id"]
            assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", json.dumps(seen)
            assert "Hello through the proxy" in seen["texts"]
        asyncio.run(main())
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log_file.close()


def test_a_pending_state_lasts_until_the_reconciler_publishes() -> None:
    """After our wake or reboot endpoint, the app host shows the state the backend recorded;
    the route table is not written, and the next route the reconciler publishes wins."""
    from supervisor.proxy.pending import PendingStates

    table = RouteTable()
    sleeping = Route(app_id=1, subdomain="hello", state="sleeping", address=None)
    table.set(sleeping)
    pending = PendingStates()
    pending.note(sleeping, "starting", "Waking up")
    shown = pending.shown(table.get("hello"))
    assert shown is not None and (shown.state, shown.reason) == ("starting", "Waking up")
    assert table.get("hello") is sleeping  # the table still holds what was published
    running = Route(app_id=1, subdomain="hello", state="running", address=("127.0.0.1", 1))
    table.set(running)  # the reconciler publishes the woken app
    assert pending.shown(table.get("hello")) is running
    table.set(sleeping)  # an old route object published again is not overridden either
    assert pending.shown(table.get("hello")) is sleeping
    assert pending.shown(None) is None
