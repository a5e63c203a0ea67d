"""The reverse proxy against fake upstreams, on real sockets: routing by Host to the
dashboard, the API and apps, the oven page and the state pages, and pending states until the
reconciler publishes.

Every test runs one `asyncio.run(...)` (tests/support/proxy_env.py): fake upstream aiohttp
servers on free ports, a RouteTable, and the proxy started with `start_proxy` on the
settings' free port. Clients pick the target with the Host header, as a browser would.
Headers, streaming and websockets are in test_proxy_streaming.py.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest

from backend.context import Context
from backend.platform.settings import Settings
from models import App, session_scope
from supervisor.routes import Route, RouteTable
from tests.support.analytics_world import make_app, make_workspace
from tests.support.proxy_env import (
    Env,
    api_app,
    proxy_env,
    run,
)

pytestmark = pytest.mark.timeout(90)


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
        async with proxy_env(settings, api=await api_app(), dashboard=False) as env:
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


def test_an_unpublished_app_is_never_a_not_found_page(ctx: Context) -> None:
    """Between the supervisor's start of a deployed app (its row says running) and the
    table's publish, the app host answers its oven page, not "No app lives here", and
    forwards nowhere: only the table's routes carry addresses."""
    from supervisor.proxy.pending import PendingStates

    app_id = make_app(ctx, make_workspace(ctx, "team", {}), "fresh")
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        assert app is not None
        app.state, app.runtime_state = "running", '{"address": ["127.0.0.1", 9]}'
        s.add(app)
    found = asyncio.run(PendingStates().unpublished(ctx, "fresh"))
    assert found is not None and (found.state, found.address, found.serving) == \
        ("starting", None, False)
    assert asyncio.run(PendingStates().unpublished(ctx, "nobody")) is None
