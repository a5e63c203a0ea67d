"""The proxy's connection limits (supervisor/proxy/limits.py), attacked on real sockets.

Half-open connections are raw sockets that send a request line and then nothing; other
clients use other loopback source addresses (127.0.0.2, ...), which Linux routes to lo.
The proxy runs in-process (`start_proxy`, as in tests/integration/test_proxy.py), except for the
descriptor-exhaustion test, which lowers the open-file limit of a proxy subprocess.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.context import Context
from backend.platform.settings import PROJECT_ROOT, Settings
from supervisor.api import make_api_app
from supervisor.proxy.limits import ConnectionGuard
from supervisor.proxy.server import PROXY_KEY
from tests.conftest import free_port
from tests.support.api_world import StubReconciler
from tests.support.proxy_env import Env, proxy_env

pytestmark = pytest.mark.timeout(120)
HALF_OPEN = b"GET / HTTP/1.1\r\nHost: localhost\r\n"  # and then silence
ATTACKER = "127.0.0.1"
VISITOR = "127.0.0.2"



def limited(settings: Settings, **changes: Any) -> Settings:
    values: dict[str, Any] = {"proxy_header_timeout": 3.0, "proxy_body_timeout": 3.0,
              "proxy_keepalive_timeout": 3.0, **changes}
    return dataclasses.replace(settings, **values)


def guard_of(env: Env) -> ConnectionGuard:
    guard = env.runner.app[PROXY_KEY].guard
    assert guard is not None
    return guard


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)  # polling interval


async def half_open(port: int, source: str, count: int) -> list[socket.socket]:
    """`count` connections from `source` that send a request line and nothing more."""
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []

    async def one() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source, 0))
        socks.append(sock)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        try:
            await loop.sock_sendall(sock, HALF_OPEN)
        except OSError:
            pass  # refused and closed already
    for start in range(0, count, 100):  # batches: the listen backlog is 128
        await asyncio.gather(*(one() for _ in range(start, min(count, start + 100))))
    return socks


def closed_by_server(sock: socket.socket) -> bool:
    """The server answered (a 503) or closed; False while the connection waits."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


async def answers(env: Env, source: str, timeout: float = 5.0) -> dict[str, int]:
    """Status of the dashboard, the API and the app, asked from `source`."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    out: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        for name, path, sub in (("dashboard", "/", None), ("api", "/api/v1/health", None),
                                ("app", "/", "hello")):
            async with s.get(env.base + path, headers={"Host": env.host(sub)}) as r:
                out[name] = r.status
    return out


def test_slowloris_from_many_addresses_neither_exhausts_nor_locks_out(
        settings: Settings, ctx: Context) -> None:
    """1,500 half-open connections from four addresses: the per-client cap holds for
    each, the total cap holds overall, the dashboard, the API and an app keep answering
    another client, and every half-open connection is closed after the header timeout."""
    per_client, total = 300, 800
    conf = limited(settings, proxy_max_connections_per_client=per_client,
                   proxy_max_connections=total, proxy_header_timeout=6.0,
                   proxy_keepalive_timeout=60.0)  # the header timeout is what closes them

    async def main() -> None:
        async with proxy_env(conf, api=make_api_app(ctx, StubReconciler())) as env:
            guard, port = guard_of(env), conf.port
            socks = await half_open(port, ATTACKER, 2 * per_client)
            await wait_for(lambda: sum(map(closed_by_server, socks)) == per_client, 5,
                           "connections over the per-client cap closed")
            assert guard.per_client[ATTACKER] == per_client
            assert await answers(env, VISITOR) == {"dashboard": 200, "api": 200, "app": 200}
            for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
                socks += await half_open(port, source, per_client)
                assert guard.total <= total
            assert guard.total == total  # full, of half-open connections
            assert await answers(env, VISITOR) == {"dashboard": 200, "api": 200, "app": 200}
            started = time.monotonic()
            await wait_for(lambda: all(map(closed_by_server, socks)),
                           conf.proxy_header_timeout + 5, "half-open connections closed")
            assert time.monotonic() - started < conf.proxy_header_timeout + 5
            await wait_for(lambda: guard.total == 0, 5, "every connection released")
            close_all(socks)
    asyncio.run(main())


def test_idle_keepalive_connections_make_room_at_the_total_cap(settings: Settings) -> None:
    """Connections that finished a request and then sit idle fill the total cap; a new
    visitor closes the one idle longest instead of being refused."""
    conf = limited(settings, proxy_max_connections=10, proxy_keepalive_timeout=60.0,
                   proxy_header_timeout=60.0)

    async def main() -> None:
        async with proxy_env(conf) as env:
            loop = asyncio.get_running_loop()
            idle: list[socket.socket] = []
            for _ in range(10):
                sock = socket.socket()
                sock.setblocking(False)
                sock.bind((ATTACKER, 0))
                await loop.sock_connect(sock, ("127.0.0.1", conf.port))
                await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: "
                                        + env.host("hello").encode() + b"\r\n\r\n")
                answer = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                assert answer.startswith(b"HTTP/1.1 200 ")
                idle.append(sock)
            assert guard_of(env).total == 10
            assert await answers(env, VISITOR) == {"dashboard": 200, "api": 404, "app": 200}
            assert closed_by_server(idle[0])  # the one idle longest made room
            assert not any(map(closed_by_server, idle[2:]))
            close_all(idle)
    asyncio.run(main())


def test_per_client_cap_does_not_starve_another_client(settings: Settings) -> None:
    conf = limited(settings, proxy_max_connections_per_client=20,
                   proxy_header_timeout=30.0)

    async def main() -> None:
        async with proxy_env(conf) as env:
            socks = await half_open(conf.port, ATTACKER, 20)
            await wait_for(lambda: guard_of(env).per_client.get(ATTACKER) == 20, 5,
                           "the attacker's connections counted")
            extra = await half_open(conf.port, ATTACKER, 1)
            await wait_for(lambda: closed_by_server(extra[0]), 5, "21st connection refused")
            assert extra[0].recv(100).startswith(b"HTTP/1.1 503 ")
            connector = aiohttp.TCPConnector(local_addr=(VISITOR, 0))
            async with aiohttp.ClientSession(connector=connector) as s:
                async with s.get(env.base + "/", headers={"Host": env.host("hello")},
                                 timeout=aiohttp.ClientTimeout(total=5)) as r:
                    assert r.status == 200
            assert not any(map(closed_by_server, socks))  # the cap refuses, never evicts
            close_all(socks + extra)
    asyncio.run(main())


def test_a_trusted_proxy_is_not_held_to_the_per_client_cap(settings: Settings) -> None:
    """A TLS terminator in proxy_trusted_proxies carries many clients: only the total
    counts for it; other addresses keep their cap."""
    conf = limited(settings, proxy_max_connections_per_client=5, proxy_header_timeout=30.0,
                   proxy_keepalive_timeout=30.0, proxy_trusted_proxies=f"{VISITOR}, 10.0.0.0/8")

    async def main() -> None:
        async with proxy_env(conf) as env:
            guard = guard_of(env)
            trusted = await half_open(conf.port, VISITOR, 12)
            others = await half_open(conf.port, ATTACKER, 8)
            await wait_for(lambda: guard.per_client.get(VISITOR) == 12
                           and sum(map(closed_by_server, others)) == 3, 5,
                           "trusted peer admitted, the other capped")
            assert not any(map(closed_by_server, trusted))
            close_all(trusted + others)
    asyncio.run(main())


def test_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(
        settings: Settings) -> None:
    conf = limited(settings, proxy_keepalive_timeout=1.0, proxy_header_timeout=30.0)

    async def main() -> None:
        async with proxy_env(conf) as env:
            loop = asyncio.get_running_loop()
            sock = socket.create_connection(("127.0.0.1", conf.port))
            sock.setblocking(False)
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: "
                                    + env.host("hello").encode() + b"\r\n\r\n")
            answer = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            assert answer.startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            while await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
                pass  # the rest of the answer, then the end of the connection
            assert 0.5 <= time.monotonic() - started < 4
            sock.close()
    asyncio.run(main())


def test_body_read_timeout_closes_a_stalled_upload_not_a_slow_one(settings: Settings) -> None:
    conf = limited(settings, proxy_body_timeout=1.0, proxy_header_timeout=30.0)

    async def main() -> None:
        async with proxy_env(conf) as env:
            loop = asyncio.get_running_loop()
            stalled = socket.create_connection(("127.0.0.1", conf.port))
            stalled.setblocking(False)
            await loop.sock_sendall(stalled, b"POST /upload HTTP/1.1\r\nHost: "
                                    + env.host("hello").encode()
                                    + b"\r\nContent-Length: 1000\r\n\r\n0123456789")
            started = time.monotonic()
            await wait_for(lambda: closed_by_server(stalled), 6, "stalled upload closed")
            assert time.monotonic() - started >= 0.9
            stalled.close()

            async def slow_chunks():  # 8 pieces 0.3 s apart: 2.4 s in all, > the timeout
                for _ in range(8):
                    await asyncio.sleep(0.3)  # the client's pace, the point of the test
                    yield b"x" * 10
            async with env.session.post(env.base + "/upload", data=slow_chunks(),
                                        headers={"Host": env.host("hello")}) as r:
                assert r.status == 200 and (await r.json())["size"] == 80
    asyncio.run(main())


def test_quiet_live_websocket_survives_a_vanished_one_is_closed(settings: Settings) -> None:
    """Quiet for longer than every timeout: a client that answers pings (as browsers do)
    keeps its websocket; one that never reads again loses it after the ping and half."""
    conf = limited(settings, proxy_header_timeout=0.5, proxy_body_timeout=0.5,
                   proxy_keepalive_timeout=0.5, proxy_websocket_ping_interval=0.5)

    async def main() -> None:
        async with proxy_env(conf) as env:
            url = env.base + "/ws"
            async with env.session.ws_connect(url, headers={"Host": env.host("hello")},
                                              protocols=("streamlit",)) as ws:
                with pytest.raises(asyncio.TimeoutError):  # quiet; its reader answers pings
                    await asyncio.wait_for(ws.receive(), 3.0)
                await ws.send_str("still here")
                assert (await ws.receive(timeout=5)).data == "echo:still here"
            await wait_for(lambda: guard_of(env).total == 0, 5, "first websocket gone")

            dead = socket.create_connection(("127.0.0.1", conf.port))
            dead.sendall(b"GET /ws HTTP/1.1\r\nHost: " + env.host("hello").encode()
                         + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit"
                         b"\r\n\r\n")
            await wait_for(lambda: guard_of(env).total == 1, 5, "websocket open")
            await wait_for(lambda: guard_of(env).total == 0, 5,
                           "an unanswered ping closes the websocket")
            dead.close()
    asyncio.run(main())


def test_api_413_is_json(settings: Settings, ctx: Context) -> None:
    async def main() -> None:
        async with proxy_env(settings, api=make_api_app(ctx, StubReconciler())) as env:
            body = b"x" * (2 * 1024 * 1024)
            async with env.session.post(env.base + "/api/v1/hooks/github", data=body,
                                        headers={"Host": env.host(),
                                                 "X-Hub-Signature-256": "sha256=00"}) as r:
                assert r.status == 413
                assert r.content_type == "application/json"
                assert (await r.json())["error"]["code"] == "body_too_large"
    asyncio.run(main())


# Descriptor exhaustion, for real, in a proxy subprocess ---------------------------------
RUNNER = """
import asyncio, logging, sys
from backend.platform.settings_load import load_settings
from supervisor.proxy import start_proxy
from supervisor.routes import RouteTable
logging.basicConfig(level="INFO", filename=sys.argv[2],
                    format="%(asctime)s %(levelname)s %(name)s %(message)s")
async def main():
    settings = load_settings(env={}, data_dir=sys.argv[3], port=int(sys.argv[1]))
    await start_proxy(settings, RouteTable())
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_descriptor_exhaustion_keeps_the_log_small_and_recovers(tmp_path: Path) -> None:
    port, log_file = free_port(), tmp_path / "proxy.log"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(port), str(log_file),
                             str(tmp_path / "data")], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE)
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        in_use = len(os.listdir(f"/proc/{proc.pid}/fd"))
        hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (in_use + 10, hard))

        async def storm() -> None:
            socks.extend(await half_open(port, ATTACKER, 120))  # < the listen backlog
        asyncio.run(storm())
        cpu_before = cpu_seconds(proc.pid)
        deadline = time.monotonic() + 11  # the storm lasts this long: two log intervals
        while time.monotonic() < deadline:
            assert proc.poll() is None
            assert log_file.stat().st_size < 20_000, log_file.read_text()[:2000]
            time.sleep(0.1)  # sampling the log's size during the storm
        busy = cpu_seconds(proc.pid) - cpu_before
        print(f"cpu during the storm: {busy:.2f} s of 11 s")
        assert busy < 2.0, f"the accept loop spun: {busy:.2f} s of CPU in 11 s"
        text = log_file.read_text()
        assert "Traceback" not in text
        lines = [line for line in text.splitlines() if "out_of_descriptors" in line]
        assert len(lines) == 2, text  # one per 10 s
        quiet = int(lines[1].rsplit("suppressed=", 1)[1])
        assert quiet <= 15, f"{quiet} failed accepts in 10 s: one a second expected"
        close_all(socks)
        socks.clear()
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (hard, hard))
        recovered = time.monotonic() + 10
        while True:  # accepting resumes (asyncio retries every second)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET /__stcloud/status HTTP/1.1\r\nHost: localhost\r\n"
                              b"Connection: close\r\n\r\n")
                    if c.recv(100).startswith(b"HTTP/1.1 200 "):
                        break
            except OSError:
                pass
            assert time.monotonic() < recovered, "the proxy did not answer again"
            time.sleep(0.1)  # polling interval
        assert log_file.stat().st_size < 20_000
    finally:
        close_all(socks)
        proc.kill()
        proc.wait(timeout=10)
