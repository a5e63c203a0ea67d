"""The OIDC provider over real HTTP against a running proxy (supervisor/proxy/oidc.py),
driven by Authlib's OAuth 2 client, the library Streamlit's st.login() uses: discovery,
JWKS, the code flow with PKCE for a signed-in viewer (no prompt), the detour through
sign-in for an anonymous one, and the attacks: replayed code, wrong verifier, another
app's client secret, a foreign redirect URI, no PKCE, a private app's outsider."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from backend.accounts import identity, oidc_clients
from backend.accounts.oidc_clients import Client
from backend.context import Context
from supervisor.routes import Route
from tests.support import overlay_support as rows
from tests.support.overlay_env import Env, run


def base(env: Env) -> str:
    return f"http://localhost:{env.port}"


def fetch(env: Env, path: str) -> dict[str, Any]:
    r = requests.get(base(env) + path, timeout=10)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def session_for(env: Env, client: Client, secret: str | None = None) -> OAuth2Session:
    return OAuth2Session(client.client_id, secret or client.client_secret,
                         scope="openid email profile", code_challenge_method="S256",
                         redirect_uri=oidc_clients.redirect_uri(env.ctx.settings, "hello"))


def browser_get(env: Env, url: str, cookies: dict[str, str] | None = None,
                **headers: str) -> requests.Response:
    """The browser's step: GET with the dashboard's cookies, not following redirects."""
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return requests.get(url, headers=headers, allow_redirects=False, timeout=10)


def start(env: Env, client: Client, **extra: str) -> tuple[str, str, str, str]:
    """An authorization URL with a fresh verifier, state and nonce."""
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(8)
    doc = fetch(env, "/.well-known/openid-configuration")
    url, state = session_for(env, client).create_authorization_url(
        doc["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra)
    return url, state, verifier, nonce


def code_from(resp: requests.Response, state: str) -> str:
    assert resp.status_code == 302, resp.text
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["state"] == [state], query
    return query["code"][0]


def exchange(env: Env, client: Client, code: str, verifier: str,
             secret: str | None = None) -> dict[str, Any]:
    doc = fetch(env, "/.well-known/openid-configuration")
    token: dict[str, Any] = session_for(env, client, secret).fetch_token(
        doc["token_endpoint"], code=code, code_verifier=verifier)
    return token


def flow(ctx: Context, scenario: Any) -> None:
    async def main(env: Env) -> None:
        await asyncio.to_thread(scenario, env)
    run(ctx, main)


def test_discovery_and_jwks(ctx: Context) -> None:
    def scenario(env: Env) -> None:
        doc = fetch(env, "/.well-known/openid-configuration")
        assert doc["issuer"] == base(env)
        assert doc["authorization_endpoint"] == base(env) + "/oidc/authorize"
        assert doc["code_challenge_methods_supported"] == ["S256"]
        keys = fetch(env, "/oidc/jwks")["keys"]
        assert keys and all("d" not in k and k["alg"] == "RS256" for k in keys)
        # The server-side endpoints follow the address the document was asked on.
        r = requests.get(f"http://127.0.0.1:{env.port}/.well-known/openid-configuration",
                         timeout=10)
        assert r.json()["token_endpoint"] == f"http://127.0.0.1:{env.port}/oidc/token"
        assert r.json()["issuer"] == base(env)
        # On an app host these paths are the app's, forwarded to it.
        r = requests.get(f"http://127.0.0.1:{env.port}/oidc/jwks",
                         headers={"Host": env.host("hello")}, timeout=10)
        assert env.app.requests and env.app.requests[-1].path == "/oidc/jwks", r.status_code
    flow(ctx, scenario)


def test_signed_in_viewer_gets_tokens_without_a_prompt(ctx: Context) -> None:
    def scenario(env: Env) -> None:
        client = oidc_clients.client_for_app(env.ctx, env.app_id)
        url, state, verifier, nonce = start(env, client)
        signed_in = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "vera")}
        code = code_from(browser_get(env, url, signed_in), state)
        token = exchange(env, client, code, verifier)
        claims = jwt.decode(token["id_token"], KeySet.import_key_set(
            fetch(env, "/oidc/jwks"))).claims
        assert claims["aud"] == client.client_id and claims["nonce"] == nonce
        assert claims["iss"] == base(env)
        assert (claims["email"], claims["role"], claims["preferred_username"]) == \
            ("vera@example.com", "viewer", "vera")
        info = requests.get(base(env) + "/oidc/userinfo", timeout=10, headers={
            "Authorization": f"Bearer {token['access_token']}"}).json()
        assert info["email"] == "vera@example.com" and info["role"] == "viewer"
        # The developer's role is theirs.
        url, state, verifier, _ = start(env, client)
        dev = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "dev")}
        token = exchange(env, client, code_from(browser_get(env, url, dev), state), verifier)
        assert jwt.decode(token["id_token"], KeySet.import_key_set(
            fetch(env, "/oidc/jwks"))).claims["role"] == "developer"
        # An ID token is not an access token.
        r = requests.get(base(env) + "/oidc/userinfo", timeout=10,
                         headers={"Authorization": f"Bearer {token['id_token']}"})
        assert r.status_code == 401
    flow(ctx, scenario)


def test_anonymous_viewer_signs_in_first_and_comes_back(ctx: Context) -> None:
    def scenario(env: Env) -> None:
        client = oidc_clients.client_for_app(env.ctx, env.app_id)
        url, state, verifier, _ = start(env, client)
        hop = browser_get(env, url, **{"Sec-Fetch-Site": "cross-site"})
        assert hop.status_code == 200 and "hop=1" in hop.text  # the Strict cookie's hop
        r = browser_get(env, url)
        assert r.status_code == 302
        assert r.headers["Location"] == base(env) + "/?signin_for=hello"
        back = {identity.RETURN_COOKIE: r.cookies[identity.RETURN_COOKIE]}
        # Signed in on the dashboard's form: the return poll names the authorize URL.
        signed_in = {**back,
                     identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "vera")}
        target = browser_get(env, base(env) + "/__stcloud/return", signed_in).json()["url"]
        assert target.startswith("/oidc/authorize?")
        code = code_from(browser_get(env, base(env) + target, signed_in), state)
        assert exchange(env, client, code, verifier)["id_token"]
        # prompt=none with nobody signed in: login_required, back at the app.
        url, state, _, _ = start(env, client, prompt="none")
        r = browser_get(env, url)
        query = parse_qs(urlsplit(r.headers["Location"]).query)
        assert query["error"] == ["login_required"] and query["state"] == [state]
    flow(ctx, scenario)


def test_attacks_on_codes_clients_and_redirects(ctx: Context) -> None:
    def scenario(env: Env) -> None:
        client = oidc_clients.client_for_app(env.ctx, env.app_id)
        ws = rows.workspace(env.ctx, "other", [])
        other_id = rows.app(env.ctx, ws, "other")
        env.routes.set(Route(app_id=other_id, subdomain="other", state="running",
                             address=env.app.address, workspace_id=ws))
        other = oidc_clients.client_for_app(env.ctx, other_id)
        signed_in = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "vera")}
        token_url = base(env) + "/oidc/token"

        def post(data: dict[str, str], auth: tuple[str, str] | None) -> requests.Response:
            return requests.post(token_url, data=data, auth=auth, timeout=10)

        def fresh() -> tuple[str, str]:
            url, state, verifier, _ = start(env, client)
            return code_from(browser_get(env, url, signed_in), state), verifier

        redirect = oidc_clients.redirect_uri(env.ctx.settings, "hello")
        code, verifier = fresh()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                "code_verifier": verifier}
        mine = (client.client_id, client.client_secret)
        # Another app's secret for this client, and the other client with its own secret.
        r = post(form, (client.client_id, other.client_secret))
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
        r = post(form, (other.client_id, other.client_secret))
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        # That attempt burnt the code: single use, whoever tried first.
        assert post(form, mine).json()["error"] == "invalid_grant"
        code, verifier = fresh()
        form.update(code=code, code_verifier=verifier)
        assert "id_token" in post(form, mine).json()
        r = post(form, mine)  # replayed
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        code, _ = fresh()
        r = post({**form, "code": code, "code_verifier": secrets.token_urlsafe(48)}, mine)
        assert r.json()["error"] == "invalid_grant"  # wrong verifier
        code, verifier = fresh()
        r = post({**form, "code": code, "code_verifier": verifier,
                  "redirect_uri": redirect + "/x"}, mine)
        assert r.json()["error"] == "invalid_grant"  # another redirect URI

        def authorize(**params: str) -> requests.Response:
            query = {"response_type": "code", "client_id": client.client_id,
                     "redirect_uri": redirect, "scope": "openid", "state": "s1",
                     "code_challenge": "A" * 43, "code_challenge_method": "S256", **params}
            return browser_get(env, base(env) + "/oidc/authorize?" + urlencode(query),
                               signed_in)
        for foreign in ("https://evil.example/oauth2callback",
                        oidc_clients.redirect_uri(env.ctx.settings, "other"),
                        redirect + "?next=https://evil.example", "//evil.example"):
            r = authorize(redirect_uri=foreign)
            assert r.status_code == 400 and "Location" not in r.headers, foreign
        r = authorize(client_id="app-unknown")
        assert r.status_code == 400 and "Location" not in r.headers
        for params, error in (({"code_challenge_method": "plain"}, "invalid_request"),
                              ({"code_challenge": ""}, "invalid_request"),
                              ({"scope": "email"}, "invalid_scope"),
                              ({"response_type": "token"}, "unsupported_response_type")):
            location = authorize(**params).headers["Location"]
            assert location.startswith(redirect + "?"), location
            query = parse_qs(urlsplit(location).query)
            assert query["error"] == [error] and query["state"] == ["s1"], params
            assert "code" not in query
        # A private app's code goes only to who may open it.
        rows.user(env.ctx, "otto")
        from models import App, session_scope
        with session_scope(env.ctx.engine) as s:
            row = s.get(App, env.app_id)
            assert row is not None
            row.visibility = "private"
            s.add(row)
        otto = {identity.DASHBOARD_COOKIE: rows.dashboard_cookie(env.ctx, "otto")}
        query = {"response_type": "code", "client_id": client.client_id,
                 "redirect_uri": redirect, "scope": "openid", "state": "s2",
                 "code_challenge": "A" * 43, "code_challenge_method": "S256"}
        r = browser_get(env, base(env) + "/oidc/authorize?" + urlencode(query), otto)
        assert parse_qs(urlsplit(r.headers["Location"]).query)["error"] == ["access_denied"]
    flow(ctx, scenario)
