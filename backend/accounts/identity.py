"""Who a visitor of an app host is: signed tokens, one-time sign-in tokens, the dashboard's
sign-in cookie, and the identity header of the Manage app panel.

Browsers never send the dashboard's cookie to an app host (`<sub>.localhost` and
`localhost` are different sites), so identity reaches an app host by a
top-level redirect through the dashboard host (the proxy's `/__stcloud/authorize`), which
mints a one-time token; the app host's `/__stcloud/callback` exchanges it for a host-only
cookie `stcloud_session`. All values here are signed with one server key
(`<data_dir>/keys/proxy_identity`, made on first use, mode 0600), each with its own
purpose string so that a value signed for one use is never accepted for another:

- `session`: the `stcloud_session` cookie of one app host: user id, username, the
  subdomain it was issued for, expiry. `user_id == 0` is the "checked, not signed in"
  marker of an anonymous visitor (so the silent sign-in check runs once, not per page).
- `panel`: the `X-Stcloud-Identity` header the proxy adds to requests it forwards to the
  panel's Streamlit process (and strips from every client request). The panel page reads
  it with `st.context.headers`; it names the user and the one app the panel is for.
- `csrf`: `nonce.signature` bound to a host; the double-submit value of our forms.
- `signout`: a short-lived link from an app host's sign-out to the dashboard host's.

Tokens are `base64url(json payload).base64url(HMAC-SHA256(key, purpose "." payload))`.
One-time sign-in tokens (single use, `ONE_TIME_TTL`) live in the database:
backend/signin_tokens.py.

The dashboard cookie `stcloud_dashboard` is streamlit-authenticator 0.4.2's: a PyJWT HS256
token `{"username", "exp_date"}` signed with `keys.dashboard_cookie_key`; it is verified the
way that library does (signature, then `exp_date` in the future).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from backend.accounts.keys import dashboard_cookie_key, load_or_create_secret
from backend.context import Context

KEY_NAME = "proxy_identity"
SESSION_COOKIE = "stcloud_session"
VISITOR_COOKIE = "stcloud_visitor"
DASHBOARD_COOKIE = "stcloud_dashboard"
CSRF_COOKIE = "stcloud_csrf"
RETURN_COOKIE = "stcloud_return"
OUR_COOKIES = frozenset({SESSION_COOKIE, VISITOR_COOKIE, DASHBOARD_COOKIE, CSRF_COOKIE,
                         RETURN_COOKIE})
PANEL_HEADER = "X-Stcloud-Identity"
PANEL_PREFIX = "/__stcloud/panel"
PANEL_BASE_URL_PATH = PANEL_PREFIX.strip("/")  # Streamlit's server.baseUrlPath

SESSION_TTL = 7 * 86400  # like the dashboard's cookie
ANONYMOUS_TTL = 10 * 60  # how long "not signed in" is believed before checking again
PANEL_TTL = 12 * 3600
ONE_TIME_TTL = 60.0
_VISITOR_RE = re.compile(r"^[A-Za-z0-9_-]{16,43}$")


def server_key(ctx: Context) -> bytes:
    return load_or_create_secret(ctx, KEY_NAME).encode()


# Signed values ---------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, body: str) -> str:
    return _b64(hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest())


def sign(key: bytes, purpose: str, payload: dict[str, Any], ttl: float,
         now: float | None = None) -> str:
    """`payload` plus an expiry, signed for `purpose`."""
    data = {**payload, "exp": int((now or time.time()) + ttl)}
    body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_mac(key, purpose, body)}"


def verify(key: bytes, purpose: str, token: str | None,
           now: float | None = None) -> dict[str, Any] | None:
    """The payload of a token signed for `purpose` and not expired, else None."""
    if not token or len(token) > 4096 or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    if not hmac.compare_digest(mac.encode(), _mac(key, purpose, body).encode()):
        return None
    try:
        data = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
        return None
    if data["exp"] <= (now or time.time()):
        return None
    return data


# Sessions of app hosts ---------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    user_id: int  # 0: checked, not signed in
    username: str
    subdomain: str
    expires: int
    issued: int = 0

    @property
    def anonymous(self) -> bool:
        return self.user_id == 0


def session_cookie(key: bytes, user_id: int, username: str, subdomain: str,
                   ttl: float | None = None, now: float | None = None) -> str:
    if ttl is None:
        ttl = ANONYMOUS_TTL if user_id == 0 else SESSION_TTL
    issued = int(now or time.time())
    return sign(key, "session", {"u": user_id, "n": username, "s": subdomain, "i": issued},
                ttl, now)


def read_session(key: bytes, value: str | None, subdomain: str,
                 now: float | None = None) -> Session | None:
    """The session in a `stcloud_session` value, if valid and issued for this subdomain."""
    data = verify(key, "session", value, now)
    if data is None or data.get("s") != subdomain or not isinstance(data.get("u"), int):
        return None
    issued = data.get("i")
    return Session(user_id=data["u"], username=str(data.get("n", "")), subdomain=subdomain,
                   expires=data["exp"], issued=issued if isinstance(issued, int) else 0)


def new_visitor_id() -> str:
    return secrets.token_urlsafe(16)


def valid_visitor_id(value: str | None) -> bool:
    return bool(value) and _VISITOR_RE.match(value or "") is not None


# CSRF ----------------------------------------------------------------------------------------
def csrf_token(key: bytes, host: str) -> str:
    """A fresh double-submit value for `host` (cookie and form carry the same value)."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_mac(key, 'csrf:' + host, nonce)}"


def csrf_token_valid(key: bytes, host: str, token: str | None) -> bool:
    if not token or len(token) > 200 or token.count(".") != 1:
        return False
    nonce, mac = token.split(".")
    return hmac.compare_digest(mac.encode(), _mac(key, "csrf:" + host, nonce).encode())


def csrf_ok(key: bytes, host: str, cookie: str | None, submitted: str | None) -> bool:
    """The form's (or header's) token equals the cookie's, and was signed for this host:
    a value set by a sibling subdomain (cookie tossing) is not one of ours."""
    return bool(cookie and submitted) and hmac.compare_digest(
        (cookie or "").encode(), (submitted or "").encode()) and csrf_token_valid(
        key, host, cookie)


# The dashboard's sign-in cookie -------------------------------------------------------------
def dashboard_username(cookie_key: str, token: str | None,
                       now: float | None = None) -> str | None:
    """The username in a valid, unexpired `stcloud_dashboard` JWT, else None."""
    if not token:
        return None
    try:
        data = jwt.decode(token, cookie_key, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    username, exp = data.get("username"), data.get("exp_date")
    if not isinstance(username, str) or not username or not isinstance(exp, (int, float)):
        return None
    return username if exp > (now or time.time()) else None


def dashboard_user_from_cookie(ctx: Context, token: str | None) -> str | None:
    return dashboard_username(dashboard_cookie_key(ctx), token)


# The panel's identity header ----------------------------------------------------------------
@dataclass(frozen=True)
class PanelIdentity:
    user_id: int
    username: str
    app_id: int
    subdomain: str


def panel_header(key: bytes, user_id: int, username: str, app_id: int, subdomain: str,
                 now: float | None = None) -> str:
    return sign(key, "panel", {"u": user_id, "n": username, "a": app_id, "s": subdomain},
                PANEL_TTL, now)


def read_panel_header(key: bytes, value: str | None, host: str,
                      now: float | None = None) -> PanelIdentity | None:
    """The identity in a panel header, if signed by us and issued for the app at `host`
    (the request's Host header: `<subdomain>.<domain>[:port]`)."""
    data = verify(key, "panel", value, now)
    if data is None:
        return None
    sub = str(data.get("s", ""))
    if not sub or host.split(":", 1)[0].lower().split(".", 1)[0] != sub:
        return None
    try:
        return PanelIdentity(int(data["u"]), str(data["n"]), int(data["a"]), sub)
    except (KeyError, TypeError, ValueError):
        return None


def panel_identity(ctx: Context, headers: Mapping[str, str]) -> PanelIdentity | None:
    """For the panel page: the identity the proxy signed into this request's headers."""
    lower = {k.lower(): v for k, v in headers.items()}
    return read_panel_header(server_key(ctx), lower.get(PANEL_HEADER.lower()),
                             lower.get("host", ""))


def is_panel_request(headers: Mapping[str, str], base_url_path: str = "") -> bool:
    """Whether a dashboard script run is the Manage app panel: the proxy set the panel
    header (it strips client copies), or this Streamlit process serves the panel prefix."""
    if base_url_path.strip("/") == PANEL_BASE_URL_PATH:
        return True
    return any(k.lower() == PANEL_HEADER.lower() for k in headers.keys())


# Redirect targets -----------------------------------------------------------------------------
def safe_next(value: str | None, default: str = "/") -> str:
    """A relative path on the same host, or `default`: no scheme, no `//host`, no
    backslashes or control characters (no open redirect)."""
    if not value or len(value) > 2048 or not value.startswith("/"):
        return default
    if value.startswith("//") or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7f
                                                     for c in value):
        return default
    if value.startswith("/__stcloud/"):  # never bounce back into our own endpoints
        return default
    return value
