"""Security of passwords and sign-in (docs/security.md): passwords are bcrypt hashes;
password sign-in is rate limited per username and client, in the database, and the
dashboard's form shows it; without https our pages carry no HSTS header.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import bcrypt
import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts import auth
from backend.context import Context, open_context
from backend.platform.settings import Settings
from models import utcnow
from supervisor.proxy.server import make_proxy_app
from supervisor.routes import RouteTable
from tests.support.dashboard import (
    HOME,
    Dash,
    sign_in_form,
)
from tests.support.dashboard import open_dashboard as open_dash_as

# Passwords and sign-in ------------------------------------------------------------------------
BCRYPT = re.compile(r"^\$2[aby]\$(1[0-9]|[4-9])\$[./A-Za-z0-9]{53}\Z")


def test_passwords_are_stored_as_bcrypt_hashes(ctx: Context) -> None:
    user = auth.create_user(ctx, "alice", "correct horse battery")
    assert BCRYPT.match(user.password_hash), user.password_hash
    assert "correct horse" not in user.password_hash
    assert int(user.password_hash.split("$")[2]) >= 12  # bcrypt's default cost
    assert bcrypt.checkpw(b"correct horse battery", user.password_hash.encode())
    creds = auth.authenticator_credentials(ctx)["usernames"]["alice"]
    assert creds["password"] == user.password_hash  # the sign-in widget gets hashes only


def test_sign_in_is_limited_per_username_and_client_in_the_database(ctx: Context) -> None:
    auth.create_user(ctx, "bob", "right-password")
    for _ in range(auth.SIGNIN_MAX_FAILURES):
        assert auth.authenticate(ctx, "bob", "wrong", "10.0.0.1") is None
    with pytest.raises(auth.SignInThrottled, match="Too many failed sign-ins") as caught:
        auth.authenticate(ctx, "bob", "right-password", "10.0.0.1")  # even the right one
    assert 0 < caught.value.retry_after <= auth.SIGNIN_WINDOW
    # Another process (a restarted dashboard, the panel) sees the same failures.
    other = open_context(ctx.settings)
    with pytest.raises(auth.SignInThrottled):
        auth.authenticate(other, "BOB", "right-password", "10.0.0.1")
    # Someone else's address is not locked out; the window passes.
    assert auth.authenticate(ctx, "bob", "right-password", "10.0.0.2") is not None
    later = utcnow() + timedelta(seconds=auth.SIGNIN_WINDOW + 1)
    assert auth.authenticate(ctx, "bob", "right-password", "10.0.0.1", now=later)
    assert auth.signin_wait(ctx, "bob", "10.0.0.1") == 0  # success cleared the failures
    # Unknown accounts record nothing (nothing to guess).
    assert auth.authenticate(ctx, "nobody", "x", "10.0.0.1") is None
    assert auth.client_of({"X-Forwarded-For": "6.6.6.6, 10.0.0.9"}) == "10.0.0.9"


def test_dashboard_sign_in_form_is_rate_limited(dash: Dash) -> None:
    at = AppTest.from_file(HOME, default_timeout=30)
    at.run()
    for _ in range(auth.SIGNIN_MAX_FAILURES):
        sign_in_form(at, dash.admin.username, "not-the-password")
        assert any("Wrong username or password" in e.value for e in at.error)
    sign_in_form(at, dash.admin.username, dash.admin_password)
    assert any("Too many failed sign-ins" in e.value for e in at.error)
    assert not at.session_state["authentication_status"]
    fresh = AppTest.from_file(HOME, default_timeout=30)  # a new session: still limited
    fresh.run()
    sign_in_form(fresh, dash.admin.username, dash.admin_password)
    assert any("Too many failed sign-ins" in e.value for e in fresh.error)
    assert open_dash_as(dash.admin) is not None  # a signed-in session is unaffected


def test_security_headers_without_https_have_no_hsts(settings: Settings) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    async def main() -> dict[str, str]:
        app = make_proxy_app(settings, RouteTable())
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/__stcloud/status", headers={"Host": "localhost"})
            return {k.lower(): v for k, v in r.headers.items()}
    headers = asyncio.run(main())
    assert headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in headers
