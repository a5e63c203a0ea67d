"""Sticky sessions for apps with several replicas (supervisor/proxy/sticky.py).

Unit tests of the choice and the cookie, then two real upstreams (tiny aiohttp servers that
say who they are, over HTTP and over a websocket) behind the proxy with a backend context,
one route holding both addresses, and browser-like clients with cookie jars; last, the
real supervisor with a swarm service of two replicas (skipped without a swarm manager, failed
under REQUIRE_DOCKER=1, like tests/integration/test_runtime_swarm.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from backend.accounts import identity
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings import Settings
from models import App
from supervisor.proxy import cookies, start_proxy
from supervisor.proxy.sticky import AFFINITY_COOKIE, Sticky
from supervisor.routes import Route, RouteTable, route_for
from supervisor.runtimes.swarm import SwarmRuntime
from tests.support import overlay_support as rows
from tests.support.runtimes import remove_swarm_installation
from tests.support.streamlit_client import rerun_message
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state

pytestmark = pytest.mark.timeout(300)

A = ("10.0.0.1", 8501)
B = ("10.0.0.2", 8501)
KEY = b"k" * 32


def two(sub: str = "hello", *addresses: tuple[str, int]) -> Route:
    ups = addresses or (A, B)
    return Route(app_id=1, subdomain=sub, state="running", address=ups[0], addresses=ups)


def request_with(cookie: str | None) -> web.Request:
    headers = {"Host": "hello.localhost"}
    if cookie is not None:
        headers["Cookie"] = f"{AFFINITY_COOKIE}={cookie}; theirs=1"
    return make_mocked_request("GET", "/", headers=headers)


# Units ------------------------------------------------------------------------------------
def test_token_is_opaque_signed_and_per_app() -> None:
    sticky = Sticky(KEY)
    token = sticky.token("hello", A)
    assert token == sticky.token("hello", A) == Sticky(KEY).token("hello", A)
    assert "10.0.0.1" not in token and len(token) == 22
    assert token != sticky.token("hello", B)
    assert token != sticky.token("other", A)
    assert token != Sticky(b"x" * 32).token("hello", A)  # another key: not ours
    assert sticky.pinned(two(), token) == A
    assert sticky.pinned(two(), sticky.token("hello", B)) == B
    assert sticky.pinned(two(), sticky.token("other", A)) is None  # minted for another app
    assert sticky.pinned(two(), token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert sticky.pinned(two(), "") is None and sticky.pinned(two(), None) is None
    assert sticky.pinned(two(), "x" * 5000) is None
    # The pinned upstream left the route: no pin.
    assert sticky.pinned(two("hello", B, ("10.0.0.3", 8501)), token) is None


def test_cookie_attributes() -> None:
    value = Sticky(KEY).cookie(two(), A)
    parts = [p.strip() for p in value.split(";")]
    assert parts[0] == f"{AFFINITY_COOKIE}={Sticky(KEY).token('hello', A)}"
    assert {"Path=/", "HttpOnly", "SameSite=Lax"} <= set(parts)
    assert not any(p.lower().startswith(("domain", "max-age", "expires")) for p in parts)
    assert "Secure" not in parts
    assert "Secure" in Sticky(KEY, secure=True).cookie(two(), A).split("; ")


def test_choice_least_in_flight_random_among_equals() -> None:
    sticky = Sticky(KEY, rng=random.Random(3))
    seen = {sticky.choose([A, B]) for _ in range(50)}
    assert seen == {A, B}  # ties: both get picked
    with sticky.track(A):
        assert {sticky.choose([A, B]) for _ in range(20)} == {B}
        with sticky.track(B), sticky.track(B):
            assert sticky.choose([A, B]) == A
    assert sticky.in_flight == {}  # counts go back to nothing
    assert sticky.choose([A, B], exclude={A}) == B
    assert sticky.choose([A], exclude={A}) is None


def test_pick_keeps_a_valid_pin_and_replaces_a_stale_one() -> None:
    sticky = Sticky(KEY, rng=random.Random(1))
    chosen, set_cookie = sticky.pick(request_with(None), two())
    assert chosen in (A, B) and set_cookie is not None
    assert set_cookie.startswith(f"{AFFINITY_COOKIE}={sticky.token('hello', chosen)};")
    other = B if chosen == A else A
    with sticky.track(chosen):  # a pin wins over least-in-flight
        assert sticky.pick(request_with(sticky.token("hello", chosen)), two()) == \
            (chosen, None)
    # Pinned to an upstream that is gone: picked again among those left, cookie replaced.
    left = two("hello", other, ("10.0.0.9", 1))
    again, set_cookie = sticky.pick(request_with(sticky.token("hello", chosen)), left)
    assert again in left.upstreams and set_cookie is not None
    # Garbage: as if there were none.
    assert sticky.pick(request_with("forged"), two())[1] is not None


def test_route_carries_every_replica_address() -> None:
    def row(state: str, blob: object) -> App:
        return App(id=7, workspace_id=1, subdomain="busy", repo_url="x", state=state,
                   runtime_state=json.dumps(blob))
    swarm = {"engine": "swarm", "address": list(A),
             "instance": {"service_id": "s", "addresses": [list(A), list(B)]}}
    route = route_for(row("running", swarm))
    assert route.address == A and route.addresses == (A, B) and route.upstreams == (A, B)
    one = {"engine": "swarm", "address": list(A), "instance": {"addresses": [list(A)]}}
    assert route_for(row("running", one)).upstreams == (A,)
    assert route_for(row("running", one)).addresses == ()
    process = {"engine": "process", "address": list(A), "instance": {"pid": 5}}
    assert route_for(row("running", process)).upstreams == (A,)
    assert route_for(row("sleeping", swarm)).upstreams == ()
    assert route_for(row("running", {"address": list(A), "instance": "odd"})).upstreams == (A,)
    odd = {"address": list(A), "instance": {"addresses": [["x"], 5]}}
    assert route_for(row("running", odd)).upstreams == (A,)


def test_affinity_cookie_is_ours_both_ways() -> None:
    assert AFFINITY_COOKIE in cookies.APP_STRIP and AFFINITY_COOKIE in cookies.DASHBOARD_STRIP
    assert cookies.strip_cookie_header(f"a=1; {AFFINITY_COOKIE}=x; b=2",
                                       cookies.APP_STRIP) == "a=1; b=2"


# Two real upstreams behind the proxy --------------------------------------------------------
class Replica:
    """Says who it is on every path, and on its websocket; records the Cookie headers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits: list[str] = []
        self.cookie_headers: list[str] = []
        app = web.Application()
        app.router.add_get("/_stcore/stream", self.stream)
        app.router.add_route("*", "/{tail:.*}", self.page)
        self.runner = web.AppRunner(app, shutdown_timeout=1)
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> Replica:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    def _note(self, request: web.Request) -> None:
        self.hits.append(request.path)
        self.cookie_headers.append(request.headers.get("Cookie", ""))

    async def page(self, request: web.Request) -> web.Response:
        self._note(request)
        if request.path == "/":
            return web.Response(text=f"<html><head></head><body>{self.name}</body></html>",
                                content_type="text/html",
                                headers={"Set-Cookie": f"{AFFINITY_COOKIE}=evil; Path=/"})
        return web.Response(text=self.name, content_type="text/javascript")

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        self._note(request)
        ws = web.WebSocketResponse(protocols=("streamlit",))
        await ws.prepare(request)
        await ws.send_str(self.name)
        async for _ in ws:
            pass
        return ws


class Browser:
    """A cookie jar and the requests of one page view: page, an asset, the websocket."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.host = f"hello.localhost:{port}"

    async def view(self) -> set[str]:
        """Who answered each request of one page view."""
        base = f"http://127.0.0.1:{self.port}"
        who = set()
        async with self.http.get(base + "/", headers={"Host": self.host,
                                                      "Accept": "text/html"}) as resp:
            assert resp.status == 200
            body = await resp.text()
            assert "/__stcloud/overlay.js" in body  # the page path, overlay and all
            who.add(body.split("<body>")[1].split("<")[0])
        async with self.http.get(base + "/static/app.js", headers={"Host": self.host}) as r:
            assert r.status == 200
            who.add(await r.text())
        async with self.http.ws_connect(
                base + "/_stcore/stream", protocols=("streamlit",),
                headers={"Host": self.host, "Origin": f"http://{self.host}"}) as ws:
            msg = await ws.receive(timeout=10)
            who.add(msg.data)
        return who

    def pin(self) -> str | None:
        found = [c.value for c in self.http.cookie_jar if c.key == AFFINITY_COOKIE]
        return found[0] if found else None

    async def close(self) -> None:
        await self.http.close()


@asynccontextmanager
async def two_replicas(ctx: Context
                       ) -> AsyncIterator[tuple[RouteTable, Replica, Replica, Replica]]:
    """Replicas "one" and "two" in the route; "three" running, not in it yet."""
    dev = rows.user(ctx, "dev")
    ws_id = rows.workspace(ctx, "acme", [(dev, "developer")])
    app_id = rows.app(ctx, ws_id, "hello", owner=dev)
    one, other = await Replica("one").start(), await Replica("two").start()
    third = await Replica("three").start()
    routes = RouteTable()
    routes.set(Route(app_id=app_id, subdomain="hello", state="running", address=one.address,
                     addresses=(one.address, other.address), workspace_id=ws_id))
    runner = await start_proxy(ctx.settings, routes, ctx=ctx)
    try:
        yield routes, one, other, third
    finally:
        await runner.cleanup()
        for replica in (one, other, third):
            await replica.runner.cleanup()


def route_app_id(routes: RouteTable) -> int:
    route = routes.get("hello")
    assert route is not None
    return route.app_id


def test_a_browser_stays_on_one_replica_and_is_repinned_when_it_goes(ctx: Context) -> None:
    async def main() -> None:
        async with two_replicas(ctx) as (routes, one, other, third):
            port = ctx.settings.port
            browsers = [Browser(port) for _ in range(8)]
            try:
                landed = []
                for browser in browsers:
                    first = await browser.view()
                    assert len(first) == 1, first  # page, asset, websocket: one replica
                    pin = browser.pin()
                    assert pin is not None
                    for _ in range(2):  # later views: the same replica, the same cookie
                        assert await browser.view() == first
                        assert browser.pin() == pin
                    landed.append(first.pop())
                # Least in flight with random ties: both replicas get browsers.
                assert set(landed) == {"one", "two"}, landed
                # The apps never see the pin (nor our other cookies), and cannot set it.
                for replica in (one, other):
                    assert replica.cookie_headers
                    for header in replica.cookie_headers:
                        assert AFFINITY_COOKIE not in header and "stcloud_" not in header
                assert all(b.pin() != "evil" for b in browsers)

                # The route changes from (one, two) to (two, three), as when a swarm
                # service is replaced: browsers on "one" are picked again and re-pinned,
                # those on "two" stay.
                routes.set(Route(app_id=route_app_id(routes), subdomain="hello",
                                 state="running", address=other.address,
                                 addresses=(other.address, third.address)))
                pins = [b.pin() for b in browsers]
                for browser, where, pin in zip(browsers, landed, pins, strict=True):
                    now = await browser.view()
                    if where == "two":
                        assert now == {"two"} and browser.pin() == pin
                    else:
                        assert now <= {"two", "three"} and len(now) == 1
                        assert browser.pin() != pin
                        assert await browser.view() == now  # and it sticks there
            finally:
                for browser in browsers:
                    await browser.close()
    asyncio.run(main())


def test_a_replica_that_refuses_is_skipped_for_get(ctx: Context) -> None:
    async def main() -> None:
        async with two_replicas(ctx) as (routes, one, other, _):
            browser = Browser(ctx.settings.port)
            try:
                first = (await browser.view()).pop()
                dead, alive = (one, other) if first == "one" else (other, one)
                await dead.runner.cleanup()  # its port now refuses connections
                assert await browser.view() == {alive.name}
                pin = browser.pin()
                assert await browser.view() == {alive.name} and browser.pin() == pin
            finally:
                await browser.close()
    asyncio.run(main())


# End to end: the real supervisor, a swarm service with two replicas ----------------------------
def test_swarm_replicas_pin_each_browser(ssettings: Settings, swarm_client: Any, admin: Any,
                                         hello_repo: Any, tmp_path: Path) -> None:
    settings = dataclasses.replace(ssettings, swarm_replicas=2)
    ctx = open_context(settings)
    port = settings.port
    host = f"busy.localhost:{port}"
    base = f"http://127.0.0.1:{port}"
    sup = SupervisorProcess(settings, tmp_path / "sup.log").start()

    async def page(http: aiohttp.ClientSession) -> None:
        async with http.get(base + "/", headers={"Host": host, "Accept": "text/html"}) as r:
            assert r.status == 200 and "/__stcloud/overlay.js" in await r.text()

    async def session(http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        ws = await http.ws_connect(base + "/_stcore/stream", protocols=("streamlit",),
                                   headers={"Host": host, "Origin": f"http://{host}"},
                                   max_msg_size=0)
        await ws.send_bytes(rerun_message())
        kinds = []
        while "script_finished" not in kinds:
            msg = await ws.receive(timeout=60)
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            fwd = ForwardMsg()
            fwd.ParseFromString(msg.data)
            kinds.append(fwd.WhichOneof("type"))
        assert "new_session" in kinds
        return ws

    def pinned(http: aiohttp.ClientSession) -> tuple[str, int]:
        values = [c.value for c in http.cookie_jar if c.key == AFFINITY_COOKIE]
        assert len(values) == 1, values
        found = [a for a in addresses if sticky.token("busy", a) == values[0]]
        assert len(found) == 1
        return found[0]

    try:
        view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="busy")
        row = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, sup=sup)
        assert row.state == "running", row.state_reason
        addresses = route_for(row).upstreams
        assert len(set(addresses)) == 2, row.runtime_state
        sticky = Sticky(identity.server_key(ctx))

        async def scenario() -> None:
            jar = {"cookie_jar": aiohttp.CookieJar(unsafe=True)}
            async with aiohttp.ClientSession(**jar) as first:
                await page(first)
                where = pinned(first)
                ws = await session(first)  # held open: one session in flight on `where`
                try:
                    await page(first)
                    assert pinned(first) == where
                    async with aiohttp.ClientSession(
                            cookie_jar=aiohttp.CookieJar(unsafe=True)) as second:
                        await page(second)  # least in flight: the other replica
                        other = pinned(second)
                        assert other != where
                        await (await session(second)).close()
                        assert pinned(second) == other
                finally:
                    await ws.close()
        asyncio.run(scenario())
    finally:
        sup.stop()
        remove_swarm_installation(swarm_client, SwarmRuntime(settings, swarm_client).install_id)
