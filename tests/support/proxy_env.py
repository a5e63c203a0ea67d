"""The reverse proxy on real sockets against fake upstreams: `Upstream` (an aiohttp server
that records what reaches it), a route table with one app and the dashboard, and `run`, one
`asyncio.run` of a scenario with the proxy started on the settings' free port; and a real
Streamlit server to put behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO

import aiohttp
from aiohttp import web
from yarl import URL

from backend.platform.settings import Settings
from supervisor.proxy import start_proxy
from supervisor.routes import Route, RouteTable
from tests.support.upstream import RecordingServer

BIG = random.Random(7).randbytes(20 * 1024 * 1024)


class Upstream(RecordingServer):
    """An aiohttp server that records what reached it and answers test endpoints."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.ws_closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.ws_headers: dict[str, str] = {}
        app = self.app
        app.router.add_route("*", "/slow", self.slow)
        app.router.add_get("/big", self.big)
        app.router.add_get("/gzip", self.gzipped)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/hop", self.hop)
        app.router.add_get("/broken", self.broken)
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/ws", self.ws)
        app.router.add_route("*", "/{tail:.*}", self.echo)

    async def echo(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.json_response({
            "upstream": self.name, "method": request.method, "target": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
        })

    async def slow(self, request: web.Request) -> web.StreamResponse:
        return await self.held_response(request, b"first chunk;")

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


async def api_app() -> web.Application:
    """A stand-in for the REST API: GET /ping answers {"pong": true}."""
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


def start_streamlit(script: Path, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`streamlit run script` on 127.0.0.1:port, headless and without a file watcher, its
    output to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=script.parent, stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Returns once the Streamlit server `proc` on `port` answers its health check."""
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
