"""Security properties of the platform (docs/security.md), each with a test that fails if
it breaks:

- a planted secret never appears in what the platform writes or shows: API responses,
  dashboard pages, the supervisor's log, our log files, the data dir (the encrypted store
  and the app's own runtime copy excepted); the app's own output is masked when shown;
- the CSRF audit: every state-changing route the proxy and API serve, enumerated from the
  routers, refuses a request that carries only cookies and a foreign Origin;
- our cookies are HttpOnly, SameSite and Secure on https; security headers on our pages.

The tests share one real supervisor per module (`platform`, tests/support/planted_platform.py)
whose public URL is https, with one app whose secrets hold `PLANTED`. Passwords, the sign-in
limiter and the headers without https are in test_security_sign_in.py.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import requests
from aiohttp import web
from streamlit.testing.v1 import AppTest

from backend.accounts import auth, identity, oidc_secrets
from backend.accounts.keys import dashboard_cookie_key
from backend.apps import secrets as app_secrets
from backend.apps.log_files import app_log_path
from backend.platform.settings import PROJECT_ROOT
from models import App, id_of, session_scope
from pages.dashboard import _ui as ui
from supervisor.api import make_api_app
from supervisor.dashboard import DashboardProcess
from supervisor.proxy.apphost import ENDPOINTS
from supervisor.proxy.oidc import ENDPOINTS as OIDC_ENDPOINTS
from supervisor.proxy.server import make_proxy_app
from supervisor.routes import RouteTable
from tests.support.dashboard import open_dashboard as open_dash_as
from tests.support.planted_platform import PLANTED, SECRETS, Platform, start_platform
from tests.support.supervisor_harness import wait_until

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EVIL_ORIGIN = "https://evil.example"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, shared_envs_dir: Path
             ) -> Iterator[Platform]:
    yield from start_platform(tmp_path_factory.mktemp("security"), shared_envs_dir)


# A planted secret ---------------------------------------------------------------------------
def test_planted_secret_never_in_api_responses(platform: Platform) -> None:
    app = platform.app_id
    bodies = {}
    for path in ("/me", "/apps", f"/apps/{app}", f"/apps/{app}/events",
                 f"/apps/{app}/logs", f"/apps/{app}/logs?kind=build",
                 f"/apps/{app}/logs?follow=1&max_seconds=1", f"/apps/{app}/analytics",
                 "/workspaces", "/users", "/openapi.json", "/health"):
        r = platform.api("GET", path)
        assert r.status_code == 200, (path, r.text)
        bodies[path] = r.text
    saved = platform.api("PUT", f"/apps/{app}/secrets?restart=0", data=SECRETS)
    assert saved.status_code == 200 and saved.json()["keys"] == 2
    bodies["PUT secrets"] = saved.text
    leaked = [p for p, body in bodies.items() if PLANTED in body]
    assert not leaked, f"the planted secret is in the answers of {leaked}"
    # The app printed it; the API shows that line masked.
    assert "app says token is ****" in json.loads(bodies[f"/apps/{app}/logs"])["text"]
    assert "app says token is ****" in bodies[f"/apps/{app}/logs?follow=1&max_seconds=1"]


def test_planted_secret_never_in_platform_files(platform: Platform) -> None:
    settings = platform.ctx.settings
    runtime_copy = app_secrets.runtime_path(settings, platform.app_id)
    app_output = app_log_path(settings, platform.app_id)
    app_dir = settings.apps_path / str(platform.app_id)
    started_with = (app_dir / oidc_secrets.PLATFORM_FILE).resolve()  # + [auth] for st.login
    allowed = {runtime_copy.resolve(), started_with, app_output.resolve()}
    checkout_copies = {p.resolve() for p in app_dir.glob("*/.streamlit/secrets.toml")}
    for path in checkout_copies | {runtime_copy.resolve(), started_with}:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is readable by others"
    assert PLANTED in app_output.read_text(), "the scan would not see a leak"
    scanned, leaks = 0, []
    for path in [*settings.data_dir.rglob("*"), platform.sup.log_path]:
        if not path.is_file() or path.is_symlink() or path.resolve() in allowed | \
                checkout_copies:
            continue
        if "site-packages" in path.parts:
            continue
        scanned += 1
        if PLANTED.encode() in path.read_bytes():
            leaks.append(str(path.relative_to(settings.data_dir.parent)))
    assert scanned > 5  # the database (and its WAL), logs, keys, checkout files...
    assert not leaks, f"the planted secret is in {leaks}"


def _all_protos(at: AppTest) -> list[tuple[Any, str]]:
    """(element, its protobuf text) for every element of the main area and sidebar."""
    out: list[tuple[Any, str]] = []

    def walk(node: Any) -> None:
        for child in getattr(node, "children", {}).values():
            proto = getattr(child, "proto", None)
            out.append((child, str(proto) if proto is not None else repr(child)))
            walk(child)
    walk(at.main)
    walk(at.sidebar)
    return out


def test_planted_secret_never_in_dashboard_pages(platform: Platform,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page as a site admin: the secret shows only in the secrets editor of Settings
    (developers edit their secrets there, as on Community Cloud), the app's printed line
    is masked on Logs."""
    import os
    for name in list(os.environ):
        if name.startswith("STCLOUD_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in platform.ctx.settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(PROJECT_ROOT)
    admin = auth.get_user(platform.ctx, platform.ctx.settings.admin_username)
    query = {"app": str(platform.app_id)}
    editor = f"secrets_text_{platform.app_id}"
    leaks = []
    for page in (ui.MY_APPS, ui.APP, ui.LOGS, ui.SETTINGS, ui.ANALYTICS, ui.WORKSPACE,
                 ui.STATUS, ui.ACCOUNT, ui.USERS):
        at = open_dash_as(admin, page, query)
        for element, text in _all_protos(at):
            if PLANTED in text and getattr(element, "key", None) != editor:
                leaks.append(f"{page}: {type(element).__name__} {text[:120]!r}")
        if page == ui.LOGS:
            assert any("app says token is ****" in c.value for c in at.code)
        if page == ui.SETTINGS:
            assert PLANTED in at.text_area(key=editor).value  # the editor, by design
    assert not leaks, "\n".join(leaks)


# CSRF ---------------------------------------------------------------------------------------
def _walk_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every route of `app` and its sub-applications (whose
    resources carry the mount prefix already)."""
    out = []
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is not None:  # add_subapp
            out += _walk_routes(sub)
            continue
        for route in resource:
            out.append((route.method, resource.canonical, route.handler))
    return out


def _fill(path: str, platform: Platform) -> str:
    with session_scope(platform.ctx.engine) as s:
        workspace_id = s.get(App, platform.app_id).workspace_id  # type: ignore[union-attr]  # planted
    return (path.replace("{app_id}", str(platform.app_id))
            .replace("{workspace_id}", str(workspace_id)).replace("{username}", "admin"))


def test_csrf_audit_every_state_changing_route_refuses_cookie_only_requests(
        platform: Platform) -> None:
    """Enumerates the routers of the proxy and API the supervisor serves (the same
    `make_proxy_app(..., api=make_api_app(...))`) and sends every state-changing route a
    request that carries a signed-in admin's cookies (dashboard and app session), a valid
    double-submit CSRF cookie, and a foreign Origin, as a cross-site form would."""
    ctx = platform.ctx
    proxy_app = make_proxy_app(ctx.settings, RouteTable(), api=make_api_app(ctx, None),
                               ctx=ctx)
    routes = _walk_routes(proxy_app)
    document = platform.api("GET", "/openapi.json").json()
    admin = auth.get_user(ctx, ctx.settings.admin_username)
    key = identity.server_key(ctx)
    app_host = platform.app_host()
    csrf = identity.csrf_token(key, app_host)
    dashboard_jwt = jwt.encode({"username": admin.username, "exp_date": time.time() + 3600},
                               dashboard_cookie_key(ctx), algorithm="HS256")
    cookies = {identity.DASHBOARD_COOKIE: dashboard_jwt, identity.CSRF_COOKIE: csrf,
               identity.SESSION_COOKIE: identity.session_cookie(
                   key, id_of(admin), admin.username, "planted")}
    cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    refused, problems = [], []

    def send(method: str, host: str, path: str, **headers: str) -> requests.Response:
        return requests.request(method, platform.url(path), data=f"csrf={csrf}&again=0",
                                headers={"Host": host, "Cookie": cookie_header,
                                         "Origin": EVIL_ORIGIN, "Sec-Fetch-Site": "cross-site",
                                         "Content-Type": "application/x-www-form-urlencoded",
                                         **headers},
                                timeout=30, allow_redirects=False)

    catch_all = 0
    for method, path, _ in routes:
        if method == "*":  # the proxy's dispatch: audited below, endpoint by endpoint
            catch_all += 1
            continue
        if method not in STATE_CHANGING:
            continue
        api_path = path.removeprefix("/api/v1")
        op = document["paths"].get(api_path, {}).get(method.lower())
        if op is None:
            problems.append(f"{method} {path} is not in the API document: how is it "
                            "protected?")
            continue
        r = send(method, platform.dash_host(), _fill(path, platform),
                 **{identity.PANEL_HEADER: "x", "X-Stcloud-CSRF": csrf})
        if r.status_code in (401, 403):
            refused.append(f"{method} {path}")
        else:
            problems.append(f"{method} {path} answered {r.status_code} to cookies only: "
                            f"{r.text[:200]}")
        if op["security"]:  # bearer routes: the refusal is about the token
            assert r.json()["error"]["code"] == "unauthorized", (path, r.text)
    assert catch_all == 1, "the proxy serves routes besides its dispatch: audit them"

    # The dispatch's own state-changing endpoints: /__stcloud/<name> on app hosts.
    posts = sorted(name for m, name in ENDPOINTS if m in STATE_CHANGING)
    assert posts, "no app-host endpoints found"
    for name in posts:
        path = f"/__stcloud/{name}"
        foreign = send("POST", app_host, path, **{"X-Stcloud-CSRF": csrf})
        no_token = requests.post(platform.url(path), data="again=0", timeout=30,
                                 allow_redirects=False,
                                 headers={"Host": app_host, "Cookie": cookie_header,
                                          "Origin": f"https://{app_host}",
                                          "Content-Type":
                                              "application/x-www-form-urlencoded"})
        for label, r in (("foreign Origin", foreign), ("no CSRF token", no_token)):
            if r.status_code == 403:
                refused.append(f"POST {path} ({label})")
            else:
                problems.append(f"POST {path} with {label} answered {r.status_code}")
    # On the dashboard host the proxy answers only GETs itself; the rest is Streamlit's
    # (see test_streamlit_xsrf_protection_is_on) or 404.
    for name in ("authorize", "return", "logout", "callback", "favorite", "wake"):
        r = send("POST", platform.dash_host(), f"/__stcloud/{name}")
        if r.status_code != 404:
            problems.append(f"POST /__stcloud/{name} on the dashboard answered "
                            f"{r.status_code}")
    # The OIDC provider's POSTs (token, userinfo) take client credentials or a bearer
    # token and never act on cookies.
    for method, path in sorted(OIDC_ENDPOINTS):
        if method in STATE_CHANGING:
            r = send(method, platform.dash_host(), path)
            if r.status_code == 401:
                refused.append(f"{method} {path}")
            else:
                problems.append(f"{method} {path} answered {r.status_code} to cookies only")
    assert not problems, "\n".join(problems)
    assert len(refused) >= 12
    with session_scope(ctx.engine) as s:  # and nothing happened
        app = s.get(App, platform.app_id)
        assert app is not None and app.desired_state == "running"


def test_streamlit_xsrf_protection_is_on(platform: Platform) -> None:
    """The dashboard and the panel are Streamlit processes: their own actions (file
    uploads; the websocket checks Origin) rely on `server.enableXsrfProtection`, which
    must resolve to true in their working directory and environment."""
    settings = platform.ctx.settings
    for proc in (DashboardProcess(settings), DashboardProcess.panel(settings)):
        command = " ".join(proc._command(8501))
        assert "enableXsrfProtection" not in command and "enableCORS" not in command
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **settings.to_env()}
    out = subprocess.run(
        [sys.executable, "-c", ("from streamlit import config; config.get_config_options("
         "force_reparse=True); print(config.get_option('server.enableXsrfProtection'), "
         "config.get_option('server.enableCORS'))")],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["True", "True"], out

    async def foreign_websocket() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(
                        platform.url("/_stcore/stream"), protocols=("streamlit",),
                        headers={"Host": platform.dash_host(), "Origin": EVIL_ORIGIN}):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status
    wait_until(lambda: requests.get(platform.url("/_stcore/health"), timeout=10, headers={
        "Host": platform.dash_host()}).status_code == 200, 90, "the dashboard", platform.sup)
    assert asyncio.run(foreign_websocket()) == 403


# Cookies and headers ----------------------------------------------------------------------------
def _set_cookies(r: requests.Response) -> dict[str, str]:
    values = r.raw.headers.getlist("Set-Cookie")
    return {v.split("=", 1)[0]: v for v in values}


def test_our_cookies_are_httponly_samesite_and_secure_on_https(platform: Platform) -> None:
    host = platform.app_host()
    r = requests.get(platform.url("/__stcloud/callback?error=login_required&next=/"),
                     headers={"Host": host}, timeout=30, allow_redirects=False)
    me = requests.get(platform.url("/__stcloud/me"), headers={"Host": host}, timeout=30)
    found = {**_set_cookies(r), **_set_cookies(me)}
    for name in (identity.SESSION_COOKIE, identity.CSRF_COOKIE):
        attrs = [a.strip().lower() for a in found[name].split(";")[1:]]
        assert "httponly" in attrs and "secure" in attrs, found[name]
        assert "samesite=lax" in attrs and not any(a.startswith("domain") for a in attrs)


def _header_set(r: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in r.headers.items()}


def test_security_headers_on_our_pages_not_on_hosted_apps(platform: Platform) -> None:
    def get(host: str, path: str) -> dict[str, str]:
        r = requests.get(platform.url(path), headers={"Host": host}, timeout=30,
                         allow_redirects=False)
        assert r.status_code < 500, (host, path, r.status_code)
        return _header_set(r)

    ours_framable_by_self = [get(platform.dash_host(), "/"),  # dashboard (or its start page)
                             get(platform.dash_host(), "/api/v1/health"),
                             get(platform.app_host(), "/__stcloud/status"),
                             get(platform.app_host(), "/__stcloud/panel/")]
    for h in ours_framable_by_self:
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "strict-origin-when-cross-origin"
        assert h["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in h["content-security-policy"]
        assert h["strict-transport-security"].startswith("max-age=")
    unknown = get(f"nothing-here.localhost:{platform.port}", "/")
    assert unknown["x-content-type-options"] == "nosniff"
    app_page = get(platform.app_host(), "/")
    app_asset = get(platform.app_host(), "/_stcore/health")
    for h in (app_page, app_asset):  # the hosted app's own responses: embeddable
        assert "x-frame-options" not in h and "frame-ancestors" not in \
            h.get("content-security-policy", "")
        assert h["strict-transport-security"].startswith("max-age=")
