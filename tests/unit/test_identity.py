"""backend.accounts.identity: signed values, sessions, CSRF tokens, one-time sign-in tokens, the
dashboard's JWT cookie, the panel's identity header and redirect targets."""

from __future__ import annotations

import time

import jwt
import pytest

from backend.accounts import identity
from backend.accounts.keys import dashboard_cookie_key
from backend.context import Context

KEY = b"k" * 32
OTHER = b"o" * 32


def test_sign_and_verify() -> None:
    token = identity.sign(KEY, "session", {"u": 7}, ttl=60)
    assert identity.verify(KEY, "session", token)["u"] == 7
    assert identity.verify(OTHER, "session", token) is None  # another key
    assert identity.verify(KEY, "panel", token) is None  # signed for another purpose
    body, mac = token.split(".")
    forged = identity._b64(b'{"exp":9999999999,"u":1}')
    assert identity.verify(KEY, "session", f"{forged}.{mac}") is None
    assert identity.verify(KEY, "session", token + "x") is None
    for junk in ("", "a", "a.b.c", "..", None, "x" * 5000):
        assert identity.verify(KEY, "session", junk) is None


def test_expiry() -> None:
    now = time.time()
    token = identity.sign(KEY, "session", {"u": 1}, ttl=10, now=now)
    assert identity.verify(KEY, "session", token, now=now + 9) is not None
    assert identity.verify(KEY, "session", token, now=now + 11) is None


def test_session_cookie_is_bound_to_its_subdomain() -> None:
    value = identity.session_cookie(KEY, 3, "dev", "hello")
    session = identity.read_session(KEY, value, "hello")
    assert session is not None and session.user_id == 3 and session.username == "dev"
    assert not session.anonymous
    assert identity.read_session(KEY, value, "other") is None
    anon = identity.read_session(KEY, identity.session_cookie(KEY, 0, "", "hello"), "hello")
    assert anon is not None and anon.anonymous
    assert anon.expires - time.time() <= identity.ANONYMOUS_TTL + 1


def test_csrf_tokens() -> None:
    token = identity.csrf_token(KEY, "hello.localhost:8080")
    assert identity.csrf_ok(KEY, "hello.localhost:8080", token, token)
    assert not identity.csrf_ok(KEY, "hello.localhost:8080", token, None)
    assert not identity.csrf_ok(KEY, "hello.localhost:8080", None, token)
    assert not identity.csrf_ok(KEY, "hello.localhost:8080", token, token + "x")
    # A value made for a sibling host (cookie tossing) is not accepted here.
    other = identity.csrf_token(KEY, "evil.localhost:8080")
    assert not identity.csrf_ok(KEY, "hello.localhost:8080", other, other)
    # Nor one that is merely equal on both sides but not signed by us.
    assert not identity.csrf_ok(KEY, "hello.localhost:8080", "abc.def", "abc.def")


def test_dashboard_cookie_like_streamlit_authenticator(ctx: Context) -> None:
    key = dashboard_cookie_key(ctx)
    exp = time.time() + 3600
    # The exact encoding of streamlit_authenticator.models.cookie_model._token_encode.
    token = jwt.encode({"username": "dev", "exp_date": exp}, key, algorithm="HS256")
    assert identity.dashboard_username(key, token) == "dev"
    assert identity.dashboard_user_from_cookie(ctx, token) == "dev"
    expired = jwt.encode({"username": "dev", "exp_date": time.time() - 1}, key,
                         algorithm="HS256")
    assert identity.dashboard_username(key, expired) is None
    assert identity.dashboard_username("another key of at least thirty-two bytes", token) is None
    none_alg = jwt.encode({"username": "dev", "exp_date": exp}, key="", algorithm="none")
    assert identity.dashboard_username(key, none_alg) is None
    assert identity.dashboard_username(key, "garbage") is None
    assert identity.dashboard_username(key, None) is None
    no_user = jwt.encode({"exp_date": exp}, key, algorithm="HS256")
    assert identity.dashboard_username(key, no_user) is None


def test_panel_header_cannot_be_forged(ctx: Context) -> None:
    key = identity.server_key(ctx)
    assert key == identity.server_key(ctx)  # kept in the data dir
    mode = (ctx.settings.data_dir / "keys" / identity.KEY_NAME).stat().st_mode & 0o777
    assert mode == 0o600
    value = identity.panel_header(key, 4, "dev", 9, "hello")
    headers = {"Host": "hello.localhost:8080", identity.PANEL_HEADER: value}
    who = identity.panel_identity(ctx, headers)
    assert who == identity.PanelIdentity(4, "dev", 9, "hello")
    # header names are case-insensitive, as Streamlit's st.context.headers
    assert identity.panel_identity(ctx, {k.lower(): v for k, v in headers.items()}) == who
    # For another app host, or signed with another key, or made up: nobody.
    assert identity.panel_identity(ctx, {**headers, "Host": "other.localhost:8080"}) is None
    forged = identity.panel_header(OTHER, 1, "admin", 9, "hello")
    assert identity.panel_identity(ctx, {**headers, identity.PANEL_HEADER: forged}) is None
    assert identity.panel_identity(ctx, {"Host": "hello.localhost:8080"}) is None
    late = identity.panel_header(key, 4, "dev", 9, "hello", now=time.time() - 13 * 3600)
    assert identity.panel_identity(ctx, {**headers, identity.PANEL_HEADER: late}) is None


def test_is_panel_request() -> None:
    assert identity.is_panel_request({}, "__stcloud/panel")
    assert identity.is_panel_request({}, "/__stcloud/panel/")
    assert identity.is_panel_request({"x-stcloud-identity": "v"}, "")
    assert not identity.is_panel_request({"Host": "localhost"}, "")


@pytest.mark.parametrize("value,expected", [
    ("/", "/"), ("/page?x=1&y=%2F", "/page?x=1&y=%2F"), ("/a/b#frag", "/a/b#frag"),
    (None, "/"), ("", "/"), ("page", "/"), ("//evil.example/x", "/"),
    ("/\\evil.example", "/"), ("https://evil.example/", "/"), ("\\\\evil", "/"),
    ("/\tx", "/"), ("/x\r\nSet-Cookie: a=b", "/"), ("/__stcloud/logout", "/"),
    ("/" + "a" * 3000, "/"),
])
def test_safe_next_allows_only_relative_paths(value: str | None, expected: str) -> None:
    assert identity.safe_next(value) == expected


def test_visitor_ids() -> None:
    vid = identity.new_visitor_id()
    assert identity.valid_visitor_id(vid)
    assert vid != identity.new_visitor_id()
    for bad in ("", None, "short", "x" * 80, "has space in it here!!", "a;b=c" * 5):
        assert not identity.valid_visitor_id(bad)
