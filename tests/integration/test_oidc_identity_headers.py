"""Identity headers (supervisor/proxy/oidc.py, upstream.IDENTITY_HEADERS): with the app's
setting on, a signed-in viewer's page loads and Streamlit websocket carry
`X-Forwarded-User` and `X-Forwarded-Email` (what `st.context.headers` reads); copies a
client sends itself never reach any upstream, setting on or off, signed in or not."""

from __future__ import annotations

import pytest

from backend.accounts import oidc_clients
from backend.context import Context
from backend.errors import BackendError
from supervisor.proxy.upstream import IDENTITY_HEADERS
from tests.support.overlay_env import Env, run, sent_headers

SPOOF = {"X-Forwarded-User": "admin", "X-Forwarded-Email": "admin@example.com",
         "x-forwarded-USER": "root"}


def identity_of(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in IDENTITY_HEADERS}


async def seen(env: Env, cookies: dict[str, str] | None, *, page: bool,
               sub: str | None = "hello") -> dict[str, str]:
    async with env.request("GET", "/echo", sub=sub, cookies=cookies, page=page,
                           headers=SPOOF) as r:
        assert r.status == 200, await r.text()
        return identity_of(sent_headers(await r.json()))


async def seen_by_stream(env: Env, cookies: dict[str, str]) -> dict[str, str]:
    headers = {"Host": env.host(), **SPOOF,
               "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    async with env.session.ws_connect(f"http://127.0.0.1:{env.port}/_stcore/stream",
                                      headers=headers, protocols=("streamlit",)):
        pass
    return identity_of({k.lower(): v for k, v in env.app.ws_headers[-1].items()})


def test_client_copies_never_pass_and_ours_only_when_turned_on(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        vera = env.signed_in(env.viewer)
        anonymous = env.signed_in(None)
        # Off (the default): nobody's identity, and the spoofed copies are gone.
        for cookies, page in ((vera, True), (vera, False), (anonymous, True), (None, False)):
            assert await seen(env, cookies, page=page) == {}, (cookies, page)
        assert await seen(env, None, page=False, sub=None) == {}  # the dashboard's too
        assert await seen_by_stream(env, vera) == {}
        # On: a signed-in viewer's own, replacing what the client sent.
        oidc_clients.set_identity_headers(env.ctx, env.dev, env.app_id, True)
        env_oidc_cache_clear(env)
        assert await seen(env, vera, page=True) == {"x-forwarded-user": "vera",
                                                    "x-forwarded-email": "vera@example.com"}
        assert await seen_by_stream(env, vera) == {"x-forwarded-user": "vera",
                                                   "x-forwarded-email": "vera@example.com"}
        assert await seen(env, anonymous, page=True) == {}
        assert await seen(env, None, page=False) == {}  # an asset of a public app
    run(ctx, scenario)


def env_oidc_cache_clear(env: Env) -> None:
    from tests.support.overlay_env import env_services
    env_services(env).oidc._headers_on.forget(env.app_id)


def test_only_developers_turn_them_on(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        with pytest.raises(BackendError):
            oidc_clients.set_identity_headers(env.ctx, env.viewer, env.app_id, True)
        with pytest.raises(BackendError):
            oidc_clients.set_identity_headers(env.ctx, env.outsider, env.app_id, True)
        assert not oidc_clients.identity_headers_on(env.ctx, env.app_id)
    run(ctx, scenario)
