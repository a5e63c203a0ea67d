"""Our endpoints and pages on app hosts by viewer: private apps refused or admitted, /me and
the in-app favorite (CSRF), the sleeping, over-limit and failure pages, reboot, and the view
events a new session records. Real sockets, fake upstreams (tests/support/overlay_env.py),
a real database.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlmodel import select
from yarl import URL

from backend.accounts import identity
from backend.apps import favorites
from backend.context import Context
from models import App, AppEvent, EmailOutbox, ViewEvent, session_scope
from tests.support import overlay_support as rows
from tests.support.overlay_env import (
    Env,
    csrf_token,
    env_services,
    run,
    set_cookies,
)

pytestmark = pytest.mark.timeout(90)


# Private apps --------------------------------------------------------------------------------
def test_private_app_refusal_and_admission(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.apps import sharing
    calls = []
    real = sharing.can_view
    monkeypatch.setattr(sharing, "can_view", lambda c, u, a: calls.append(a) or real(c, u, a))

    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, visibility="private"))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).visibility = "private"
        async with env.request("GET", "/page", page=True) as r:  # anonymous page load
            assert r.status == 302
            assert URL(r.headers["Location"]).path == "/__stcloud/login"
            assert "silent" not in URL(r.headers["Location"]).query
        for path in ("/app.js", "/_stcore/health"):  # anything else: refused outright
            async with env.request("GET", path) as r:
                assert r.status == 401
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.outsider)) as r:
            assert r.status == 403
            html = await r.text()
        assert "have access to this app" in html and "acme" in html
        assert "Sign in as someone else" in html
        async with env.request("GET", "/app.js", cookies=env.signed_in(env.outsider)) as r:
            assert r.status == 403
        assert not env.app.requests
        # Members and invited viewers are admitted.
        from backend.apps.sharing import invite_viewer
        invite_viewer(env.ctx, env.dev, env.app_id, "otto@example.com")
        for who in (env.dev, env.viewer):
            async with env.request("GET", "/", page=True, cookies=env.signed_in(who)) as r:
                assert r.status == 200
        calls.clear()
        for _ in range(20):  # assets: can_view is cached per user and app
            async with env.request("GET", "/app.js", cookies=env.signed_in(env.viewer)) as r:
                assert r.status == 200
        assert len(calls) <= 1
    run(ctx, scenario)


# Endpoints -----------------------------------------------------------------------------------
def test_me_and_favorite(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        async with env.request("GET", "/__stcloud/me") as r:
            me = await r.json()
        assert me["signed_in"] is False and me["can_manage"] is False
        assert me["can_favorite"] is False and me["sign_in_url"] == "/__stcloud/login"
        async with env.request("GET", "/__stcloud/me", cookies=env.signed_in(env.viewer)) as r:
            me = await r.json()
        assert me["role"] == "viewer" and not me["can_manage"] and not me["can_favorite"]
        cookies = env.signed_in(env.dev)
        async with env.request("GET", "/__stcloud/me", cookies=cookies) as r:
            me = await r.json()
            cookies[identity.CSRF_COOKIE] = set_cookies(r)[identity.CSRF_COOKIE]
        assert me["username"] == "dev" and me["role"] == "developer"
        assert me["can_manage"] and me["can_favorite"] and me["favorite"] is False
        assert me["csrf"] == cookies[identity.CSRF_COOKIE]
        headers = {"X-Stcloud-CSRF": me["csrf"], "Origin": f"http://{env.host()}"}
        async with env.request("POST", "/__stcloud/favorite", cookies=cookies,
                               json={"favorite": True}, headers=headers) as r:
            assert await r.json() == {"favorite": True}
        assert favorites.favorite_ids(env.ctx, env.dev) == {env.app_id}
        async with env.request("GET", "/__stcloud/me", cookies=cookies) as r:
            assert (await r.json())["favorite"] is True
        # CSRF: no token, a wrong one, or another origin are refused.
        for bad in ({}, {"X-Stcloud-CSRF": "x.y"},
                    {**headers, "Origin": f"http://evil.localhost:{env.port}"}):
            async with env.request("POST", "/__stcloud/favorite", cookies=cookies,
                                   json={"favorite": False}, headers=bad) as r:
                assert r.status == 403
        assert favorites.favorite_ids(env.ctx, env.dev) == {env.app_id}
        # View-only access: no in-app favorite.
        vcookies = {**env.signed_in(env.viewer), identity.CSRF_COOKIE: me["csrf"]}
        async with env.request("POST", "/__stcloud/favorite", cookies=vcookies,
                               json={"favorite": True}, headers=headers) as r:
            assert r.status == 403
        async with env.request("POST", "/__stcloud/favorite", cookies=cookies,
                               data=b"x" * 5000, headers=headers) as r:
            assert r.status == 413
        async with env.request("GET", "/__stcloud/favorite", cookies=cookies) as r:
            assert r.status == 405
    run(ctx, scenario)


def test_sleeping_page_wakes_with_csrf(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="sleeping", address=None))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).state = "sleeping"
        anon = {identity.SESSION_COOKIE: rows.session_cookie(env.ctx, None, "hello")}
        async with env.request("GET", "/", page=True, cookies=anon) as r:
            assert r.status == 503
            html = await r.text()
            token = set_cookies(r)[identity.CSRF_COOKIE]
        assert "This app has gone to sleep due to inactivity" in html
        assert "Yes, get this app back up!" in html and f'value="{token}"' in html
        jar = {**anon, identity.CSRF_COOKIE: token}
        for bad in ({}, {"csrf": "nope"}):
            async with env.request("POST", "/__stcloud/wake", cookies=jar, data=bad) as r:
                assert r.status == 403
        async with env.request("POST", "/__stcloud/wake", cookies=jar, data={"csrf": token},
                               headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403
        with session_scope(env.ctx.engine) as s:
            assert s.get(App, env.app_id).state == "sleeping"
        async with env.request("POST", "/__stcloud/wake", cookies=jar, data={"csrf": token},
                               headers={"Origin": f"http://{env.host()}"}) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
        with session_scope(env.ctx.engine) as s:
            assert s.get(App, env.app_id).state == "starting"
        async with env.request("GET", "/", page=True, cookies=jar) as r:
            assert r.status == 503 and "Your app is in the oven" in await r.text()
    run(ctx, scenario)


def test_over_limit_pages_and_notify_once(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="over_limit", address=None,
                                           reason="Used more than 1024 MiB"))
        with session_scope(env.ctx.engine) as s:
            app = s.get(App, env.app_id)
            app.state = "over_limit"
            s.add(AppEvent(app_id=env.app_id, from_state="running", to_state="over_limit"))
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.dev)) as r:
            html = await r.text()
        assert "Reboot app" in html and "1024 MiB" in html and "Notify" not in html
        assert f"/logs?app={env.app_id}" in html  # a link to the logs
        vcookies = env.signed_in(env.viewer)
        async with env.request("GET", "/", page=True, cookies=vcookies) as r:
            html = await r.text()
            token = set_cookies(r)[identity.CSRF_COOKIE]
        assert "Notify the developer" in html and "Reboot" not in html
        assert "1024 MiB" not in html
        vcookies[identity.CSRF_COOKIE] = token
        async with env.request("POST", "/__stcloud/notify", cookies=vcookies, data={}) as r:
            assert r.status == 403
        for _ in range(2):
            async with env.request("POST", "/__stcloud/notify", cookies=vcookies,
                                   data={"csrf": token}) as r:
                assert r.status == 200 and "Developers notified" in await r.text()
        with session_scope(env.ctx.engine) as s:
            mails = s.exec(select(EmailOutbox)).all()
        assert [m.to_addr for m in mails] == ["dev@example.com"]  # once per incident
        assert "resource limits" in mails[0].subject
    run(ctx, scenario)


@pytest.mark.parametrize("state,heading", [("crashed", "has crashed"),
                                           ("build_failed", "failed to build")])
def test_failure_pages_show_details_to_developers_only(
        ctx: Context, state: str, heading: str) -> None:
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state=state, address=None,
                                           reason="Traceback: SECRET_TOKEN=abc"))
        log_dir = env.ctx.settings.logs_path / str(env.app_id)
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "app.log").write_text("app said <hello>\n")
        (log_dir / "build.log").write_text("pip said <no>\n")
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.dev)) as r:
            dev_html = await r.text()
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.viewer)) as r:
            viewer_html = await r.text()
        assert heading in dev_html and heading in viewer_html
        assert "SECRET_TOKEN" in dev_html and "SECRET_TOKEN" not in viewer_html
        tail = "pip said &lt;no&gt;" if state == "build_failed" else "app said &lt;hello&gt;"
        assert tail in dev_html and "said" not in viewer_html
    run(ctx, scenario)


def test_reboot_needs_developer_and_csrf(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="crashed", address=None))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).state = "crashed"
        for who, status in ((env.viewer, 403), (env.dev, 303)):
            cookies = env.signed_in(who)
            token = await csrf_token(env, cookies)
            cookies[identity.CSRF_COOKIE] = token
            async with env.request("POST", "/__stcloud/reboot", cookies=cookies,
                                   data={"csrf": token}) as r:
                assert r.status == status
        with session_scope(env.ctx.engine) as s:
            assert s.get(App, env.app_id).state == "queued"
        async with env.request("GET", "/__stcloud/status") as r:  # shown at once: the oven
            assert (await r.json())["state"] == "queued"
        assert env.routes.get("hello").state == "crashed"  # the proxy never writes the table
    run(ctx, scenario)


# View events ---------------------------------------------------------------------------------
def test_view_events_per_new_session(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        async def open_stream(cookies: dict[str, str], *protocols: str) -> None:
            headers = {"Host": env.host(), "Origin": f"http://{env.host()}",
                       "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
            async with env.session.ws_connect(
                    f"http://127.0.0.1:{env.port}/_stcore/stream", headers=headers,
                    protocols=protocols or ("streamlit",)) as ws:
                await ws.send_bytes(b"hi")
                assert await ws.receive_bytes(timeout=5) == b"echo:hi"
        visitor = identity.new_visitor_id()
        await open_stream(env.signed_in(env.dev))
        await open_stream(env.signed_in(env.dev))  # the same viewer again at once: deduped
        # A reconnect that carries its session id is the same session.
        await open_stream(env.signed_in(env.viewer), "streamlit", "xsrf", "session-id-1")
        await open_stream({identity.VISITOR_COOKIE: visitor})
        assert "cookie" not in {k.lower() for k in env.app.ws_headers[-1]}
        services = env_services(env)
        assert services.views.pending == 2  # queued, nothing written on the request path
        await services.views.flush()
        with session_scope(env.ctx.engine) as s:
            events = s.exec(select(ViewEvent)).all()
            last_viewed = s.get(App, env.app_id).last_viewed_at
        assert sorted(e.viewer_key for e in events) == sorted(
            [f"u:{env.dev.id}", f"v:{visitor}"])
        assert last_viewed is not None
        assert (datetime.now(UTC) - last_viewed.replace(tzinfo=UTC)
                ).total_seconds() < 60
    run(ctx, scenario)
