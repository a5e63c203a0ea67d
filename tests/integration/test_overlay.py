"""The proxy with a backend context: overlay injection into pages only, cookie isolation
between our cookies and the app's, the panel's signed identity header, and header and
upstream limits. Real sockets, fake upstreams (tests/support/overlay_env.py), a real
database; one `asyncio.run` per test. Sign-in on app hosts is in test_overlay_signin.py,
our endpoints and pages by viewer in test_overlay_pages.py.
"""

from __future__ import annotations

import asyncio

import pytest

from backend.accounts import identity
from backend.context import Context
from supervisor.proxy.inject import OVERLAY_TAGS
from tests.support import overlay_support as rows
from tests.support.overlay_env import (
    PAGE,
    Env,
    run,
    sent_headers,
)

pytestmark = pytest.mark.timeout(90)


# Overlay injection ----------------------------------------------------------------------
def test_overlay_injected_into_html_pages_only(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        cookies = env.signed_in(env.dev)
        async with env.request("GET", "/", cookies=cookies, page=True,
                               headers={"Accept-Encoding": "gzip, br",
                                        "If-None-Match": '"abc"', "Range": "bytes=0-10"}) as r:
            body = await r.read()
            assert r.status == 200
            assert body == PAGE.replace(b"</head>", OVERLAY_TAGS + b"</head>")
            assert int(r.headers["Content-Length"]) == len(body)
            assert "ETag" not in r.headers and "Last-Modified" not in r.headers
        sent = env.app.requests[-1].headers  # the page was asked for whole and plain
        assert sent["Accept-Encoding"] == "identity"
        assert "If-None-Match" not in sent and "Range" not in sent
        # A compressed page is decoded, edited, and sent plain.
        async with env.request("GET", "/gz", cookies=cookies, page=True) as r:
            assert "Content-Encoding" not in r.headers
            assert await r.read() == PAGE.replace(b"</head>", OVERLAY_TAGS + b"</head>")
        # Without </head> or </body> the page is left as it is.
        async with env.request("GET", "/plain-html", cookies=cookies, page=True) as r:
            assert await r.read() == b"just text, no tags"
        # Scripts, JSON and HTML fetched as a subresource are never touched.
        for path, accept in (("/app.js", "*/*"), ("/data.json", "application/json"),
                             ("/app.js?lie=1", "*/*")):
            async with env.request("GET", path, cookies=cookies,
                                   headers={"Accept": accept, "Sec-Fetch-Dest": "script"}) as r:
                assert b"__stcloud" not in await r.read(), path
        # The overlay's own files are served on every app host.
        for name, kind in (("overlay.js", "javascript"), ("overlay.css", "text/css")):
            async with env.request("GET", f"/__stcloud/{name}") as r:
                assert r.status == 200 and kind in r.headers["Content-Type"]
    run(ctx, scenario)


def test_non_html_still_streams_unbuffered(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        # Even when the request looks like a page load, a non-HTML answer streams.
        async with env.request("GET", "/slow", cookies=env.signed_in(env.dev),
                               page=True) as r:
            first = await asyncio.wait_for(r.content.readexactly(12 * 1000), timeout=10)
            assert first == b"first chunk;" * 1000 and not env.app.release.is_set()
            env.app.release.set()
            assert await r.content.read() == b"the rest"
    run(ctx, scenario)


# Cookie isolation ------------------------------------------------------------------------
def test_our_cookies_never_reach_apps_and_apps_cannot_set_them(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        cookies = {**env.signed_in(env.dev), "app_pref": "dark", "stcloud_visitor": "v" * 22,
                   "stcloud_dashboard": "jwt", "stcloud_csrf": "c.d", "_streamlit_xsrf": "2|x"}
        async with env.request("GET", "/echo", cookies=cookies,
                               headers={"X-Stcloud-Identity": "forged",
                                        "x-stcloud-anything": "1"}) as r:
            got = sent_headers(await r.json())
        assert got["cookie"] == "app_pref=dark; _streamlit_xsrf=2|x"
        assert "x-stcloud-identity" not in got and "x-stcloud-anything" not in got
        async with env.request("GET", "/cookies") as r:
            assert r.headers.getall("Set-Cookie") == ["app_pref=dark; Path=/"]
        # Only our own cookies: the app sees no Cookie header at all.
        async with env.request("GET", "/echo", cookies=env.signed_in(env.dev)) as r:
            assert "cookie" not in sent_headers(await r.json())
    run(ctx, scenario)


# The panel ---------------------------------------------------------------------------------
def test_panel_gets_a_signed_identity_that_clients_cannot_forge(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        key = identity.server_key(env.ctx)
        forged = identity.panel_header(b"x" * 32, env.outsider.id, "otto", env.app_id,
                                       "hello")
        async with env.request("GET", "/__stcloud/panel/?a=1", cookies=env.signed_in(env.dev),
                               headers={identity.PANEL_HEADER: forged}) as r:
            body = await r.json()
        assert body["path"] == "/__stcloud/panel/?a=1"  # the prefix is kept
        got = sent_headers(body)
        who = identity.read_panel_header(key, got[identity.PANEL_HEADER.lower()], got["host"])
        assert who == identity.PanelIdentity(env.dev.id, "dev", env.app_id, "hello")
        assert "cookie" not in got
        # Anonymous: the client's copy is dropped and none is added.
        async with env.request("GET", "/__stcloud/panel/",
                               headers={identity.PANEL_HEADER: forged}) as r:
            assert identity.PANEL_HEADER.lower() not in sent_headers(await r.json())
        # The panel's websocket carries it too (Streamlit's st.context.headers reads it).
        async with env.session.ws_connect(
                f"http://127.0.0.1:{env.port}/__stcloud/panel/_stcore/stream",
                headers={"Host": env.host(), identity.PANEL_HEADER: forged,
                         "Cookie": "stcloud_session=" +
                         rows.session_cookie(env.ctx, env.dev, "hello")}) as ws:
            await ws.close()
        seen = {k.lower(): v for k, v in env.panel.ws_headers[-1].items()}
        assert identity.read_panel_header(key, seen[identity.PANEL_HEADER.lower()],
                                          seen["host"]).user_id == env.dev.id
        assert env.app.ws_headers == []  # the app never sees the panel's traffic
        env.routes.panel_address = None
        async with env.request("GET", "/__stcloud/panel/") as r:
            assert r.status == 503
    run(ctx, scenario)


# Limits --------------------------------------------------------------------------------------
def test_header_limits(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        async with env.request("GET", "/echo", headers={"X-Big": "x" * 40_000}) as r:
            assert r.status in (400, 431)
        async with env.request("GET", "/__stcloud/status",
                               headers={"X-Ok": "x" * 20_000}) as r:
            assert r.status == 200  # long cookies and tokens still fit
        many = {f"X-H{i}": "1" for i in range(150)}
        async with env.request("GET", "/echo", headers=many) as r:
            assert r.status in (400, 431)
    run(ctx, scenario)


def test_upstream_response_timeout(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor.proxy import forward
    monkeypatch.setattr(forward, "RESPONSE_TIMEOUT", 0.3)

    async def scenario(env: Env) -> None:
        async with env.request("GET", "/hang") as r:
            assert r.status == 502 and "not answering" in await r.text()
        env.app.release.set()
        async with env.request("GET", "/hang") as r:  # a prompt answer still passes
            assert r.status == 200 and await r.text() == "late"
    run(ctx, scenario)
