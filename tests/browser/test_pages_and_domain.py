"""In Chromium, against the proxy in this process (fake upstreams, a real database): our
pages as a browser renders them (screenshots of each), and identity on a real domain
(`cloud.test`, mapped to loopback with Chromium's --host-resolver-rules): a developer
signed in on the dashboard host gets the Manage app button and the star on an app host.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from backend.accounts import identity
from backend.apps import favorites
from backend.context import Context, open_context
from backend.platform.settings import Settings
from models import App, AppEvent, session_scope
from tests.browser.docs_shots import docs_shot_async
from tests.support import overlay_support as rows
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path
from tests.support.overlay_env import Env, overlay_env

pytestmark = pytest.mark.timeout(120)
TIMEOUT = 20_000


def run_with_browser(ctx: Any, scenario: Callable[[Env, Any], Awaitable[None]],
                     args: tuple[str, ...] = ()) -> None:
    path = chromium_path()
    from playwright.async_api import async_playwright

    async def main() -> None:
        async with overlay_env(ctx) as env, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=path,
                                               args=[*CHROMIUM_ARGS, *args])
            try:
                await scenario(env, browser)
            finally:
                await browser.close()
    asyncio.run(main())


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def set_state(env: Env, state: str, reason: str = "") -> None:
    route = env.routes.get("hello")
    env.routes.set(dataclasses.replace(route, state=state, reason=reason,
                                       address=None if state != "running" else route.address))
    with session_scope(env.ctx.engine) as s:
        s.get(App, env.app_id).state = state
        if state == "over_limit":
            s.add(AppEvent(app_id=env.app_id, from_state="running", to_state=state))


def test_our_pages_render(ctx: Context) -> None:
    async def scenario(env: Env, browser: Any) -> None:
        url = f"http://hello.localhost:{env.port}/"
        log_dir = env.ctx.settings.logs_path / str(env.app_id)
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "app.log").write_text("MemoryError: the app wanted 2 GiB\n")
        (log_dir / "build.log").write_text("Resolving dependencies\nInstalling pandas\n")
        docs_names = {"page-oven": "state-oven", "page-over-limit-developer": "state-over-limit",
                      "page-over-limit-viewer": "state-over-limit-viewer",
                      "page-crashed-developer": "state-crashed",
                      "page-build-failed-developer": "state-build-failed"}
        cases = [
            ("building", "", "Your app is in the oven", "page-oven", None),
            ("over_limit", "Used more than 1024 MiB", "gone over its resource limits",
             "page-over-limit-developer", env.dev),
            ("over_limit", "", "gone over its resource limits", "page-over-limit-viewer",
             env.viewer),
            ("crashed", "The app stopped unexpectedly (exit code 1)", "has crashed",
             "page-crashed-developer", env.dev),
            ("crashed", "", "has crashed", "page-crashed-viewer", env.viewer),
            ("build_failed", "No matching distribution", "failed to build",
             "page-build-failed-developer", env.dev),
        ]
        for state, reason, heading, name, who in cases:
            set_state(env, state, reason)
            context = await browser.new_context(viewport={"width": 1024, "height": 720})
            await context.add_cookies([{
                "name": identity.SESSION_COOKIE, "url": url,
                "value": rows.session_cookie(env.ctx, who, "hello")}])
            page = await context.new_page()
            await page.goto(url)
            await page.get_by_role("heading", name=heading).first.wait_for(timeout=TIMEOUT)
            if state == "building":
                await page.get_by_text("Installing pandas").wait_for(timeout=TIMEOUT)
            if name.endswith("viewer"):
                assert await page.get_by_text("MemoryError").count() == 0
            if name in docs_names:
                await docs_shot_async(page, docs_names[name])
            await shot(page, name)
            if name == "page-over-limit-viewer":
                await page.get_by_role("button", name="Notify the developer").click()
                await page.get_by_role("heading", name="Developers notified").wait_for(
                    timeout=TIMEOUT)
                await shot(page, "page-notified")
            await context.close()
        # Private: someone signed in without access; and an unknown subdomain.
        set_state(env, "running")
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, visibility="private"))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).visibility = "private"
        context = await browser.new_context(viewport={"width": 1024, "height": 720})
        await context.add_cookies([{"name": identity.SESSION_COOKIE, "url": url,
                                    "value": rows.session_cookie(env.ctx, env.outsider,
                                                                 "hello")}])
        page = await context.new_page()
        await page.goto(url)
        await page.get_by_role("heading", name="You don't have access to this app").wait_for(
            timeout=TIMEOUT)
        await docs_shot_async(page, "state-no-access")
        await shot(page, "page-no-access")
        await page.goto(f"http://nosuch.localhost:{env.port}/")
        await page.get_by_role("heading", name="No app lives at").wait_for(timeout=TIMEOUT)
        await docs_shot_async(page, "state-not-found")
        await shot(page, "page-not-found")
        await context.close()
    run_with_browser(ctx, scenario)


@pytest.fixture
def domain_ctx(settings: Settings) -> Context:
    return open_context(dataclasses.replace(settings, domain="cloud.test"))


def test_identity_on_a_real_domain(domain_ctx: Context) -> None:
    async def scenario(env: Env, browser: Any) -> None:
        port = env.port
        context = await browser.new_context(viewport={"width": 1024, "height": 720})
        # What the dashboard's sign-in leaves in the browser: its JWT, host-only, Strict.
        await context.add_cookies([{
            "name": identity.DASHBOARD_COOKIE, "url": f"http://cloud.test:{port}/",
            "value": rows.dashboard_cookie(env.ctx, "dev"), "sameSite": "Strict"}])
        page = await context.new_page()
        await page.goto(f"http://hello.cloud.test:{port}/")
        manage = page.get_by_role("button", name="Manage app")
        await manage.wait_for(timeout=TIMEOUT)
        assert page.url == f"http://hello.cloud.test:{port}/"
        names = {c["name"]: c for c in await context.cookies(f"http://hello.cloud.test:{port}")}
        session = names[identity.SESSION_COOKIE]
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        assert session["domain"] == "hello.cloud.test"  # host-only
        await manage.click()
        await page.locator("iframe[title^='Manage app']").wait_for(timeout=TIMEOUT)
        seen = [r for r in env.panel.requests if r.path.startswith("/__stcloud/panel/")]
        assert seen, "the panel was requested"
        who = identity.read_panel_header(identity.server_key(env.ctx),
                                         seen[-1].headers.get(identity.PANEL_HEADER),
                                         seen[-1].headers["Host"])
        assert who is not None and who.username == "dev"
        await page.get_by_role("button", name="Close the Manage app panel").click()
        await page.get_by_role("button", name="Add to favorites").click()
        await page.get_by_role("button", name="Remove from favorites").wait_for(
            timeout=TIMEOUT)
        assert favorites.favorite_ids(env.ctx, env.dev) == {env.app_id}
        await shot(page, "real-domain-overlay")
        await context.close()
    run_with_browser(domain_ctx, scenario, args=(
        "--host-resolver-rules=MAP *.cloud.test 127.0.0.1, MAP cloud.test 127.0.0.1",))
