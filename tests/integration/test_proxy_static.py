"""Streamlit's static files served by the proxy from the app's environment
(supervisor/proxy/static_files.py): a real Streamlit behind the real proxy, access control
of private apps, and attacks a hostile environment can plant (symlinks out, traversal,
dotfiles, special files). Real sockets and a real database; one `asyncio.run` per test.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import streamlit
from aiohttp import web
from sqlmodel import select
from yarl import URL

from backend.context import Context
from models import App, User, session_scope
from supervisor.proxy import start_proxy
from supervisor.proxy.inject import OVERLAY_TAGS
from supervisor.proxy.static_files import IMMUTABLE, MAX_FILE
from supervisor.routes import Route, RouteTable, route_for
from tests.conftest import free_port
from tests.support import overlay_support as rows
from tests.support.proxy_env import start_streamlit, wait_healthy

pytestmark = pytest.mark.timeout(120)

STATIC = Path(streamlit.__file__).parent / "static"
PAGE = {"Sec-Fetch-Dest": "document", "Accept": "text/html"}


def make_env(envs: Path, *, copy: bool = True) -> tuple[str, Path]:
    """A process-runtime environment of our own under `envs`: (its hash, its static dir,
    a copy of the installed Streamlit's)."""
    env_hash = uuid.uuid4().hex
    static = envs / env_hash / "lib" / "python3.11" / "site-packages" / "streamlit" / "static"
    if copy:
        shutil.copytree(STATIC, static)
    else:
        static.mkdir(parents=True)
    return env_hash, static


async def plain(r: aiohttp.ClientResponse) -> bytes:
    """The response's body, decompressed when it came gzipped."""
    raw = await r.read()
    return gzip.decompress(raw) if r.headers.get("Content-Encoding") == "gzip" else raw


def main_bundle(index: bytes) -> str:
    match = re.search(rb'src="\.?/?(static/js/index\.[^"]+\.js)"', index)
    assert match, index[:400]
    return "/" + match.group(1).decode()


class Relay:
    """Between the proxy and an app: records every request path, then forwards it (HTTP)
    or answers it itself when there is no app behind."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target
        self.paths: list[str] = []
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.raw_path)
        if self.target is None:
            return web.Response(text="from-app " + request.raw_path)
        url = URL(f"http://{self.target[0]}:{self.target[1]}{request.raw_path}", encoded=True)
        async with aiohttp.ClientSession(auto_decompress=False) as s, \
                s.request(request.method, url, headers=request.headers) as r:
            body = await plain(r)
            headers = {k: v for k, v in r.headers.items()
                       if k.lower() not in ("transfer-encoding", "connection",
                                            "content-length")}
            return web.Response(status=r.status, body=body, headers=headers)

    async def start(self) -> Relay:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.address = ("127.0.0.1", port)
        return self


@dataclass
class Env:
    ctx: Context
    session: aiohttp.ClientSession
    relay: Relay
    static: Path
    app_id: int
    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, path: str, headers: dict[str, str] | None = None,
            cookie: str = "") -> aiohttp.client._RequestContextManager:
        port = self.ctx.settings.port
        h = {"Host": f"hello.{self.ctx.settings.domain}:{port}", **(headers or {})}
        if cookie:
            h["Cookie"] = cookie
        return self.session.get(URL(f"http://127.0.0.1:{port}{path}", encoded=True),
                                headers=h, allow_redirects=False)


@asynccontextmanager
async def static_env(ctx: Context, target: tuple[str, int] | None = None, *,
                     visibility: str = "public", copy: bool = True) -> AsyncIterator[Env]:
    dev = rows.user(ctx, "dev")
    ws = rows.workspace(ctx, "acme", [(dev, "developer")])
    app_id = rows.app(ctx, ws, "hello", visibility=visibility, owner=dev)
    env_hash, static = make_env(ctx.settings.envs_path, copy=copy)
    relay = await Relay(target).start()
    routes = RouteTable()
    routes.set(Route(app_id=app_id, subdomain="hello", state="running",
                     address=relay.address, visibility=visibility, workspace_id=ws,
                     static_env=env_hash))
    runner = await start_proxy(ctx.settings, routes, ctx=ctx)
    session = aiohttp.ClientSession(auto_decompress=False,
                                    cookie_jar=aiohttp.DummyCookieJar())
    try:
        yield Env(ctx, session, relay, static, app_id)
    finally:
        await session.close()
        await runner.cleanup()
        assert relay.runner is not None
        await relay.runner.cleanup()


def test_real_streamlit_files_come_from_the_proxy(ctx: Context, tmp_path: Path) -> None:
    """The index (with the overlay) and the main bundle are the proxy's: the app sees no
    request for them, the bundle's bytes are the app's own, with our headers; the app's
    dynamic paths and its session still go to the app."""
    from tests.support.streamlit_client import open_streamlit_session

    script = tmp_path / "streamlit_app.py"
    script.write_text('import streamlit as st\nst.title("Hello, static")\n')
    port = free_port()
    log_file = (tmp_path / "streamlit.log").open("wb")
    proc = start_streamlit(script, port, log_file)

    async def main() -> None:
        await wait_healthy(port, proc)
        async with static_env(ctx, ("127.0.0.1", port)) as env, \
                aiohttp.ClientSession(auto_decompress=False) as direct:
            async with direct.get(f"http://127.0.0.1:{port}/") as r:
                bundle = main_bundle(await r.read())
            async with direct.get(f"http://127.0.0.1:{port}{bundle}",
                                  headers={"Accept-Encoding": "identity"}) as r:
                assert r.status == 200
                app_bytes = await r.read()
            async with env.get(bundle, {"Accept-Encoding": "gzip, deflate"}) as r:
                assert r.status == 200
                assert r.headers["Cache-Control"] == IMMUTABLE
                assert r.headers["Content-Encoding"] == "gzip"
                assert r.headers["Content-Type"].startswith("text/javascript")
                assert gzip.decompress(await r.read()) == app_bytes
            async with env.get(bundle, {"Accept-Encoding": "identity"}) as r:
                assert "Content-Encoding" not in r.headers
                assert await r.read() == app_bytes
            async with env.get("/", PAGE) as r:
                assert r.status == 200 and r.headers["Cache-Control"] == "no-cache"
                etag = r.headers["ETag"]
                page = await plain(r)
                assert OVERLAY_TAGS in page and b'<div id="root">' in page
                assert "stcloud_visitor=" in r.headers.get("Set-Cookie", "")
            async with env.get("/", {**PAGE, "If-None-Match": etag}) as r:
                assert r.status == 304
            async with env.get("/?embed=true", PAGE) as r:
                assert OVERLAY_TAGS not in await plain(r)
            assert env.relay.paths == [], env.relay.paths
            async with env.get("/_stcore/health") as r:
                assert r.status == 200
            async with env.get("/page_two", PAGE) as r:  # a page name: Streamlit's index
                assert r.status == 200 and OVERLAY_TAGS in await plain(r)
            assert env.relay.paths == ["/_stcore/health", "/page_two"]
        # The session itself works through the proxy (the websocket goes to the app).
        routes = RouteTable()
        routes.set(Route(app_id=9, subdomain="st", state="running",
                         address=("127.0.0.1", port), static_env=uuid.uuid4().hex))
        runner = await start_proxy(ctx.settings, routes)
        try:
            seen = await open_streamlit_session(f"ws://127.0.0.1:{ctx.settings.port}",
                                                f"st.localhost:{ctx.settings.port}")
        finally:
            await runner.cleanup()
        assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", json.dumps(seen)

    try:
        asyncio.run(main())
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log_file.close()


def test_private_app_files_need_access(ctx: Context) -> None:
    async def main() -> None:
        async with static_env(ctx, visibility="private") as env:
            js = "/static/js/" + sorted(p.name for p in (env.static / "static/js").iterdir()
                                        if p.suffix == ".js")[0]
            async with env.get(js) as r:
                assert r.status == 401
            outsider = rows.user(ctx, "otto", email="otto@example.com")
            cookie = "stcloud_session=" + rows.session_cookie(ctx, outsider, "hello")
            async with env.get(js, cookie=cookie) as r:
                assert r.status == 403
            async with env.get("/", PAGE, cookie=cookie) as r:
                assert r.status == 403 and OVERLAY_TAGS not in await plain(r)
            member = "stcloud_session=" + rows.session_cookie(ctx, _developer(ctx), "hello")
            async with env.get(js, cookie=member) as r:
                assert r.status == 200 and r.headers["Cache-Control"] == IMMUTABLE
            assert env.relay.paths == []
    asyncio.run(main())


def _developer(ctx: Context) -> User:
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == "dev")).one()
        s.expunge(user)
        return user


PROBE = "PROBE-" + uuid.uuid4().hex


def test_hostile_environment_files_are_not_served(ctx: Context, tmp_path: Path) -> None:
    """Symlinks out of the static dir, traversal (plain and encoded), dotfiles, special
    files, unknown types and oversized files never come from the proxy: they go to the app
    (here a relay that answers `from-app`), and our probe file is never read."""
    probe = tmp_path / "passwd"
    probe.write_text(PROBE)

    async def main() -> None:
        async with static_env(ctx, copy=False) as env:
            st = env.static
            (st / "static" / "js").mkdir(parents=True)
            (st / "index.html").write_text("<html><head></head><body>ok</body></html>")
            (st / "static/js/ok.AbCdEf12.js").write_text("ok()")
            os.symlink(probe, st / "static/js/evil.AbCdEf12.js")
            os.symlink(tmp_path, st / "static/out")
            (st / "static/js/.hidden.js").write_text(PROBE)
            (st / "static/js/tool.py").write_text(PROBE)
            os.mkfifo(st / "static/js/fifo.js")
            (st / "static/js/big.js").write_bytes(b"x" * (MAX_FILE + 1))
            (st.parent.parent / "secret.js").write_text(PROBE)  # in the env, outside static
            async with env.get("/static/js/ok.AbCdEf12.js") as r:
                assert (r.status, await r.read()) == (200, b"ok()")
            attacks = ["/static/js/evil.AbCdEf12.js", "/static/out/passwd",
                       "/static/js/.hidden.js", "/static/js/tool.py", "/static/js/fifo.js",
                       "/static/js/big.js", "/static/../../secret.js",
                       "/static/%2e%2e/%2e%2e/secret.js", "/static/js%2f..%2f..%2f..%2fsecret.js",
                       "/static/..%5c..%5csecret.js", "/%2e%2e/%2e%2e/%2e%2e/secret.js",
                       "/static/js/ok.AbCdEf12.js%00.js", "/app/static/ok.js"]
            for path in attacks:
                async with env.get(path) as r:
                    body = await plain(r)
                assert PROBE.encode() not in body, path
                assert r.headers.get("Cache-Control") != IMMUTABLE, path
            assert env.relay.paths == attacks
            assert "/app/static/ok.js" in env.relay.paths
    asyncio.run(main())


def test_a_streamlit_symlinked_out_of_the_environment_is_not_served(
        ctx: Context, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "static"
    (outside / "static/js").mkdir(parents=True)
    (outside / "static/js/x.AbCdEf12.js").write_text(PROBE)

    async def main() -> None:
        async with static_env(ctx, copy=False) as env:
            env.static.rmdir()
            os.symlink(outside, env.static)
            async with env.get("/static/js/x.AbCdEf12.js") as r:
                assert PROBE.encode() not in await plain(r)
            assert env.relay.paths == ["/static/js/x.AbCdEf12.js"]
    asyncio.run(main())


def test_route_names_the_process_environment_only() -> None:
    blob = {"engine": "process", "address": ["127.0.0.1", 9]}
    app = App(id=1, workspace_id=1, subdomain="a", repo_url="x", state="running",
              env_hash="abc", runtime_state=json.dumps(blob))
    assert route_for(app).static_env == "abc"
    app.runtime_state = json.dumps({**blob, "engine": "docker"})
    assert route_for(app).static_env == ""
    app.state = "sleeping"
    assert route_for(app).static_env == ""
