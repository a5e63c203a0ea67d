"""Apps that pin a Streamlit from before 1.18 (health on `/healthz`, the session websocket on
`/stream`, no subprotocol) deploy and serve as on Community Cloud.

Unit tests run the health-endpoint choice against small aiohttp servers on loopback that
answer as each Streamlit generation does; the end-to-end test deploys a fixture repository
pinning such a release through a real supervisor on the process runtime and checks that it
reaches running, its page gets the overlay, its assets load, a live session on `/stream`
renders through the proxy and counts as a view.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import select

from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings import Settings
from models import User, ViewEvent, session_scope
from supervisor.control.health import (
    CURRENT_HEALTH,
    LEGACY_HEALTH,
    HealthPaths,
    check_health,
    is_stream_path,
    wait_for_streamlit,
)
from supervisor.control.lifecycle import Lifecycle
from supervisor.runtimes.base import Instance, Status
from tests.conftest import corpus_files
from tests.support.streamlit_client import LEGACY_STREAM_PATH, open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until


# --- Servers that answer as each Streamlit generation does --------------------------------
class FakeStreamlit:
    """A loopback HTTP server with Streamlit's health endpoint at `path` (`ready` says
    whether it answers 200 `ok` or 503), 404 elsewhere, or, with `spa`, an HTML page for
    every other path. `hits` lists the paths asked, in order."""

    def __init__(self, path: str, ready: bool = True, spa: bool = False) -> None:
        self.path, self.ready, self.spa = path, ready, spa
        self.hits: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if request.path == self.path:
            return web.Response(text="ok") if self.ready else \
                web.Response(status=503, text="unavailable")
        if self.spa:
            return web.Response(text="<!doctype html><html></html>", content_type="text/html")
        return web.Response(status=404, text="404: Not Found")


@asynccontextmanager
async def serving(fake: FakeStreamlit) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _check(base: str, memo: HealthPaths) -> bool:
    async with aiohttp.ClientSession() as http:
        return await check_health(http, base, memo)


def test_legacy_server_found_then_one_request_per_check() -> None:
    async def run() -> None:
        fake, memo = FakeStreamlit(LEGACY_HEALTH), HealthPaths()
        async with serving(fake) as base:
            assert await _check(base, memo)
            assert fake.hits == [CURRENT_HEALTH, LEGACY_HEALTH]  # the new path first
            assert memo.get(base) == LEGACY_HEALTH
            fake.hits.clear()
            assert await _check(base, memo) and await _check(base, memo)
            assert fake.hits == [LEGACY_HEALTH, LEGACY_HEALTH]  # one request each
    asyncio.run(run())


def test_current_server_asked_only_the_new_path() -> None:
    async def run() -> None:
        fake, memo = FakeStreamlit(CURRENT_HEALTH), HealthPaths()
        async with serving(fake) as base:
            assert await _check(base, memo) and await _check(base, memo)
            assert fake.hits == [CURRENT_HEALTH, CURRENT_HEALTH]
            assert memo.get(base) == CURRENT_HEALTH
    asyncio.run(run())


def test_starting_legacy_server_is_learnt_before_it_is_ready() -> None:
    """/healthz answering 503 (script not ready) is not healthy, but shows which path the
    server has: the next checks ask only it."""
    async def run() -> None:
        fake, memo = FakeStreamlit(LEGACY_HEALTH, ready=False), HealthPaths()
        async with serving(fake) as base:
            assert not await _check(base, memo)
            assert memo.get(base) == LEGACY_HEALTH
            fake.ready = True
            fake.hits.clear()
            assert await _check(base, memo)
            assert fake.hits == [LEGACY_HEALTH]
    asyncio.run(run())


def test_a_page_answered_for_every_path_is_not_health() -> None:
    async def run() -> None:
        fake, memo = FakeStreamlit("/nothing-here", spa=True), HealthPaths()
        async with serving(fake) as base:
            assert not await _check(base, memo)
    asyncio.run(run())


def test_a_remembered_path_gone_missing_is_asked_afresh() -> None:
    """Another server on the same address (a port reused by a newer Streamlit)."""
    async def run() -> None:
        fake, memo = FakeStreamlit(CURRENT_HEALTH), HealthPaths()
        async with serving(fake) as base:
            memo.remember(base, LEGACY_HEALTH)
            assert not await _check(base, memo)  # /healthz: 404 here
            assert memo.get(base) is None
            assert await _check(base, memo)
            assert memo.get(base) == CURRENT_HEALTH
    asyncio.run(run())


def test_nothing_listening_teaches_nothing() -> None:
    async def run() -> None:
        async with serving(FakeStreamlit(CURRENT_HEALTH)) as base:
            pass  # closed again: its port now refuses
        memo = HealthPaths()
        assert not await _check(base, memo)
        assert memo.get(base) is None
    asyncio.run(run())


def test_memo_is_bounded() -> None:
    memo = HealthPaths(limit=2)
    for i in range(3):
        memo.remember(f"http://127.0.0.1:{i}", LEGACY_HEALTH)
    assert memo.get("http://127.0.0.1:0") is None and memo.get("http://127.0.0.1:2")


def test_stream_paths_of_every_release() -> None:
    assert is_stream_path("/_stcore/stream") and is_stream_path("/stream")
    for other in ("/streamx", "/stream/", "/_stcore/stream/x", "/app/stream", "/"):
        assert not is_stream_path(other)


class AlwaysRunning:
    """The part of a runtime `Lifecycle.wait_healthy` uses: the instance never exits."""

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        return Status("running")


def test_lifecycle_waits_for_a_legacy_server(ctx: Context) -> None:
    """The supervisor's start-up wait accepts an instance that answers only `/healthz`."""
    quick = dataclasses.replace(ctx.settings, health_timeout=5.0)
    lc = Lifecycle(dataclasses.replace(ctx, settings=quick),
                   AlwaysRunning())  # type: ignore[arg-type]  # a stand-in runtime

    async def run() -> Status | None:
        async with serving(FakeStreamlit(LEGACY_HEALTH)) as base:
            host, port = base.removeprefix("http://").split(":")
            return await lc.wait_healthy(Instance(1, (host, int(port)), {}))
    assert asyncio.run(run()) is None


def test_wait_gives_up_when_the_server_dies() -> None:
    async def run() -> bool | None:
        async with serving(FakeStreamlit(LEGACY_HEALTH, ready=False)) as base:
            async def dead() -> bool:
                return False
            return await wait_for_streamlit(base, dead, 5.0, HealthPaths())
    assert asyncio.run(run()) is False


async def legacy_stream(request: web.Request) -> web.WebSocketResponse:
    """Streamlit before 1.18's session websocket: `/stream`, no subprotocol."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(b"echo:" + msg.data)
    return ws


def test_proxy_counts_a_legacy_session_as_a_view(ctx: Context) -> None:
    """A browser of an old release opens `/stream` with no subprotocol: forwarded, and one
    view for its visitor."""
    from backend.accounts import identity
    from tests.support.overlay_env import env_services, overlay_env

    async def run() -> None:
        upstream = web.Application()
        upstream.router.add_get("/stream", legacy_stream)
        runner = web.AppRunner(upstream)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        address = ("127.0.0.1", runner.addresses[0][1])
        try:
            async with overlay_env(ctx) as env:
                route = env.routes.get("hello")
                assert route is not None
                env.routes.set(dataclasses.replace(route, address=address))
                visitor = identity.new_visitor_id()
                headers = {"Host": env.host(), "Origin": f"http://{env.host()}",
                           "Cookie": f"{identity.VISITOR_COOKIE}={visitor}"}
                async with env.session.ws_connect(
                        f"http://127.0.0.1:{env.port}/stream", headers=headers) as ws:
                    await ws.send_bytes(b"hi")
                    assert await ws.receive_bytes(timeout=5) == b"echo:hi"
                services = env_services(env)
                assert services.views.pending == 1
                await services.views.flush()
                with session_scope(env.ctx.engine) as s:
                    keys = [e.viewer_key for e in s.exec(select(ViewEvent)).all()]
                assert keys == [f"v:{visitor}"]
        finally:
            await runner.cleanup()
    asyncio.run(run())


# --- A real app pinning an old release, end to end --------------------------------------
@dataclasses.dataclass(frozen=True)
class OldRelease:
    corpus: str
    python: str  # the newest Python the release runs on, "" for the runtime's default


RELEASES = [
    OldRelease("old-streamlit-1.12", ""),
    # Streamlit 0.8x imports `collections.Iterable`, gone in Python 3.10. Its first script
    # run reads /etc/machine-id (else runs `sudo dbus-uuidgen`): the sandbox provides one.
    OldRelease("old-streamlit-0.89", "3.9"),
]


def _get(port: int, host: str, path: str = "/",
         headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp, resp.read()
    finally:
        conn.close()


def _visitor_cookie(resp: http.client.HTTPResponse) -> str:
    for value in resp.headers.get_all("Set-Cookie") or []:
        if value.startswith("stcloud_visitor="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError(f"no visitor cookie in {resp.headers.get_all('Set-Cookie')}")


def _views(ctx: Context, app_id: int) -> list[str]:
    with session_scope(ctx.engine) as s:
        return [e.viewer_key for e in s.exec(
            select(ViewEvent).where(ViewEvent.app_id == app_id)).all()]


def _python_offered(settings: Settings, version: str) -> bool:
    from supervisor.runtimes.process import ProcessRuntime
    return version in ProcessRuntime(settings).python_versions()


@pytest.mark.parametrize("release", RELEASES,
                         ids=lambda r: r.corpus if isinstance(r, OldRelease) else None)
def test_old_streamlit_app_runs_and_serves(release: OldRelease, settings: Settings, admin: User,
                                           make_repo: Callable[..., Any],
                                           tmp_path: Path) -> None:
    if release.python and not _python_offered(settings, release.python):
        pytest.skip(f"{release.corpus} needs Python {release.python}, which the process "
                    f"runtime does not offer on this machine (no such interpreter found)")
    # A short health timeout: an app whose health endpoint is never found fails in a
    # minute instead of sitting in "starting" for the default two.
    settings = dataclasses.replace(settings, runtime="process", health_timeout=60.0)
    ctx = open_context(settings)
    repo = make_repo(release.corpus, corpus_files(release.corpus))
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        if release.python:  # offered once the supervisor has published its runtime's list
            wait_until(lambda: release.python in apps.offered_python_versions(ctx), 60,
                       f"Python {release.python} to be offered", sup)
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="oldst",
                               python_version=release.python)
        app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"},
                             timeout=600, sup=sup)
        assert app.state == "running", app.state_reason
        _serves_through_proxy(ctx, settings.port, view.id, sup)
    finally:
        sup.stop()


def _serves_through_proxy(ctx: Context, port: int, app_id: int, sup: SupervisorProcess) -> None:
    host = f"oldst.localhost:{port}"
    status, resp, body = _get(port, host, headers={"Accept": "text/html",
                                                   "Sec-Fetch-Dest": "document"})
    page = body.decode(errors="replace")
    assert status == 200 and "<title>Streamlit</title>" in page, page[:300]
    assert "/__stcloud/overlay.js" in page and "/__stcloud/overlay.css" in page, page[:300]
    assert page.index("/__stcloud/overlay.js") < page.lower().index("</head>")
    visitor = _visitor_cookie(resp)

    # The release's own asset paths (relative `./static/...` here) pass through untouched.
    assets = re.findall(r'(?:src|href)="\.?(/static/[^"]+\.(?:js|css))"', page)
    assert assets, page[:500]
    for path in assets[:3]:
        status, _, data = _get(port, host, path)
        assert status == 200 and data, path

    # A browser of that release: `/stream`, no subprotocol.
    seen = asyncio.run(open_streamlit_session(
        f"ws://127.0.0.1:{port}", host, timeout=60, path=LEGACY_STREAM_PATH, protocols=(),
        cookies={"stcloud_visitor": visitor}))
    assert seen["new_session"] and not seen["exceptions"], seen
    assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", seen
    assert any("Pinned to an old Streamlit" in t for t in seen["texts"]), seen["texts"]

    wait_until(lambda: f"v:{visitor}" in _views(ctx, app_id), 30, "the view event", sup)
