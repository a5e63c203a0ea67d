"""The reverse proxy's forwarding, on real sockets against fake upstreams
(tests/support/proxy_env.py): forwarded and hop-by-hop headers, streamed responses and
request bodies, an upstream that is down or dies mid-body, a stale pooled connection,
websockets relayed and closed on shutdown, and a real Streamlit server through the proxy.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from backend.platform.settings import Settings
from supervisor.proxy import make_proxy_app, start_proxy
from supervisor.routes import Route, RouteTable
from tests.conftest import free_port
from tests.support.proxy_env import (
    BIG,
    Env,
    Upstream,
    run,
    start_streamlit,
    wait_healthy,
)

pytestmark = pytest.mark.timeout(90)


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


def test_real_streamlit_through_proxy(settings: Settings, tmp_path: Path) -> None:
    from tests.support.streamlit_client import open_streamlit_session

    script = tmp_path / "streamlit_app.py"
    script.write_text(STREAMLIT_APP)
    port = free_port()
    log_file = (tmp_path / "streamlit.log").open("wb")
    proc = start_streamlit(script, port, log_file)
    try:
        async def main() -> None:
            await wait_healthy(port, proc)
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
