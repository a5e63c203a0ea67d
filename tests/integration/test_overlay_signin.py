"""Identity on app hosts through the proxy: the sign-in redirects and one-time tokens (no
open redirect), the silent check and the return after signing in on the dashboard, signing
out, and sessions that end with a password change. Real sockets, fake upstreams
(tests/support/overlay_env.py), a real database.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import timedelta

import pytest
from sqlmodel import select
from yarl import URL

from backend.accounts import identity
from backend.context import Context
from models import App, SigninToken, session_scope
from tests.support import overlay_support as rows
from tests.support.overlay_env import (
    Env,
    authorize,
    csrf_token,
    run,
    sent_headers,
    set_cookies,
)

pytestmark = pytest.mark.timeout(90)


# Identity on app hosts -------------------------------------------------------------------
def test_sign_in_flow_one_time_token_and_no_open_redirect(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        async with env.request("GET", "/__stcloud/login?next=/page%3Fa%3D1") as r:
            assert r.status == 302
            loc = URL(r.headers["Location"])
        assert str(loc.with_query(None)) == f"http://localhost:{env.port}/__stcloud/authorize"
        assert loc.query["app"] == "hello" and loc.query["next"] == "/page?a=1"
        dash = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "dev")}
        async with env.request("GET", loc.path_qs, sub=None, cookies=dash) as r:
            assert r.status == 302
            callback = URL(r.headers["Location"])
        assert callback.host == "hello.localhost" and callback.path == "/__stcloud/callback"
        assert callback.query["token"]
        async with env.request("GET", callback.path_qs) as r:
            assert r.status == 302 and r.headers["Location"] == "/page?a=1"
            cookie = r.headers["Set-Cookie"]
            value = set_cookies(r)[identity.SESSION_COOKIE]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie and "Secure" not in cookie  # http: no Secure
        session = identity.read_session(identity.server_key(env.ctx), value, "hello")
        assert session and session.user_id == env.dev.id
        async with env.request("GET", callback.path_qs) as r:  # single use
            assert r.status == 400 and "expired" in await r.text()
        # A token minted for another app host does not work here.
        other = env.routes.get("hello")
        env.routes.set(dataclasses.replace(other, subdomain="other", app_id=other.app_id))
        t2 = (await authorize(env, "other", dash))["token"]
        async with env.request("GET", f"/__stcloud/callback?token={t2}") as r:
            assert r.status == 400
        # next is a relative path or nothing.
        for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            async with env.request("GET", "/__stcloud/login?next=" + evil) as r:
                assert URL(r.headers["Location"]).query["next"] == "/"
            t = (await authorize(env, "hello", dash, nxt=evil))["token"]
            async with env.request("GET", f"/__stcloud/callback?token={t}&next={evil}") as r:
                assert r.headers["Location"] == "/"
        # authorize never sends anyone to an app host we do not serve.
        async with env.request("GET", "/__stcloud/authorize?app=evil.example%2F&next=/",
                               sub=None, cookies=dash) as r:
            assert r.status == 404
    run(ctx, scenario)


def test_one_time_token_expires(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(env: Env) -> None:
        dash = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "dev")}
        token = (await authorize(env, "hello", dash))["token"]
        with session_scope(env.ctx.engine) as s:  # tokens are rows (supervisor/proxy/tokens.py)
            for row in s.exec(select(SigninToken)):
                row.expires_at -= timedelta(seconds=61)
                s.add(row)
        async with env.request("GET", f"/__stcloud/callback?token={token}") as r:
            assert r.status == 400
    run(ctx, scenario)


def test_silent_check_and_return_after_sign_in(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        # A page load without a session is checked once, silently.
        async with env.request("GET", "/some/page?x=1", page=True) as r:
            assert r.status == 302
            login = URL(r.headers["Location"])
        assert login.path == "/__stcloud/login" and login.query["silent"] == "1"
        assert login.query["next"] == "/some/page?x=1"
        # Plain http on a real domain sends no Fetch Metadata: a navigation still asks for
        # HTML and to upgrade insecure requests. Other clients (curl, tests) are served.
        async with env.request("GET", "/", headers={
                "Accept": "text/html", "Upgrade-Insecure-Requests": "1"}) as r:
            assert r.status == 302 and "silent=1" in r.headers["Location"]
        async with env.request("GET", "/", headers={"Accept": "text/html"}) as r:
            assert r.status == 200
        async with env.request("GET", login.path_qs) as r:
            authorize = URL(r.headers["Location"])
        # Cross-site without the (SameSite=Strict) dashboard cookie: a same-site hop first.
        async with env.request("GET", authorize.path_qs, sub=None,
                               headers={"Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 200
            html = await r.text()
        found = re.search(r'location\.replace\("([^"]+)"\)', html)
        assert found, html
        hop = found.group(1)
        assert "hop=1" in hop
        async with env.request("GET", hop, sub=None,
                               headers={"Sec-Fetch-Site": "same-origin"}) as r:
            back = URL(r.headers["Location"])
        assert back.host == "hello.localhost" and back.query["error"] == "login_required"
        async with env.request("GET", back.path_qs) as r:
            assert r.headers["Location"] == "/some/page?x=1"
            marker = set_cookies(r)[identity.SESSION_COOKIE]
            assert "Max-Age" not in r.headers["Set-Cookie"]  # a browser-session cookie
        # Checked: the page is served, with a visitor cookie, and not checked again.
        async with env.request("GET", "/", page=True,
                               cookies={identity.SESSION_COOKIE: marker}) as r:
            assert r.status == 200
            assert identity.valid_visitor_id(set_cookies(r)[identity.VISITOR_COOKIE])
        # The marker is checked again on a page load from another site (e.g. "Open app" on
        # the dashboard, after signing in there), once it is older than a few seconds.
        key = identity.server_key(env.ctx)
        old = identity.session_cookie(key, 0, "", "hello", now=time.time() - 60)
        for cookie, site, bounced in ((old, "cross-site", True), (old, "same-origin", False),
                                      (marker, "cross-site", False)):
            async with env.request("GET", "/", cookies={identity.SESSION_COOKIE: cookie},
                                   headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate",
                                            "Sec-Fetch-Dest": "document",
                                            "Sec-Fetch-Site": site}) as r:
                assert (r.status == 302) is bounced, site
        # A non-silent sign-in without the dashboard cookie goes to the dashboard's form,
        # and the dashboard's pages then carry the script that brings the visitor back.
        async with env.request("GET", "/__stcloud/authorize?app=hello&next=/p", sub=None) as r:
            assert r.status == 302 and r.headers["Location"] == \
                f"http://localhost:{env.port}/?signin_for=hello"  # the form names the app
            ret = set_cookies(r)[identity.RETURN_COOKIE]
        jar = {identity.RETURN_COOKIE: ret}
        async with env.request("GET", "/", sub=None, cookies=jar, page=True) as r:
            assert b'/__stcloud/return.js' in await r.read()
        async with env.request("GET", "/", sub=None, page=True) as r:
            assert b"__stcloud" not in await r.read()
        async with env.request("GET", "/__stcloud/return", sub=None, cookies=jar) as r:
            assert await r.json() == {"wait": True}
        jar[identity.DASHBOARD_COOKIE] = rows.dashboard_cookie(env.ctx, "dev")
        async with env.request("GET", "/__stcloud/return", sub=None, cookies=jar) as r:
            url = (await r.json())["url"]
            assert set_cookies(r)[identity.RETURN_COOKIE] == ""  # used up
        assert url == "/__stcloud/authorize?app=hello&next=%2Fp"
        # The dashboard keeps its own cookie; the return cookie never reaches it.
        async with env.request("GET", "/echo", sub=None, cookies=jar) as r:
            got = sent_headers(await r.json())
        assert got["cookie"].startswith(identity.DASHBOARD_COOKIE + "=")
        assert identity.RETURN_COOKIE not in got["cookie"]
    run(ctx, scenario)


def test_sign_out_goes_through_the_dashboard(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        cookies = env.signed_in(env.dev)
        token = await csrf_token(env, cookies)
        cookies[identity.CSRF_COOKIE] = token
        async with env.request("POST", "/__stcloud/logout", cookies=cookies,
                               data={"csrf": token}) as r:
            assert r.status == 303
            out = URL(r.headers["Location"])
            marker = set_cookies(r)[identity.SESSION_COOKIE]
        session = identity.read_session(identity.server_key(env.ctx), marker, "hello")
        assert session is not None and session.anonymous
        async with env.request("GET", out.path_qs, sub=None) as r:
            assert r.status == 303 and r.headers["Location"] == f"http://localhost:{env.port}/"
            assert set_cookies(r)[identity.DASHBOARD_COOKIE] == ""
        async with env.request("GET", "/__stcloud/logout?t=forged", sub=None) as r:
            assert r.status == 400 and not set_cookies(r)
    run(ctx, scenario)


# Sessions ------------------------------------------------------------------------------------
def test_password_change_signs_out_app_host_sessions(ctx: Context) -> None:
    """A session cookie issued before its user's password change no longer signs in on app
    hosts (another browser, or a stolen cookie); one issued after does."""
    from backend.accounts import auth

    async def scenario(env: Env) -> None:
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, visibility="private"))
        with session_scope(env.ctx.engine) as s:
            s.get(App, env.app_id).visibility = "private"
        key = identity.server_key(env.ctx)
        before = {identity.SESSION_COOKIE: identity.session_cookie(
            key, env.dev.id, env.dev.username, "hello", now=time.time() - 30)}
        auth.reset_password(env.ctx, env.dev.username, "a-new-password-123")
        async with env.request("GET", "/", page=True, cookies=before) as r:
            assert r.status == 302, "the old session must not sign in any more"
            assert URL(r.headers["Location"]).path == "/__stcloud/login"
        after = {identity.SESSION_COOKIE: identity.session_cookie(
            key, env.dev.id, env.dev.username, "hello", now=time.time() + 2)}
        async with env.request("GET", "/", page=True, cookies=after) as r:
            assert r.status == 200

    run(ctx, scenario)
