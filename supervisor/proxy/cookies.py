"""Our cookies on app hosts, and keeping them away from apps.

Hosted apps are untrusted (DESIGN.md, Security): they never see our cookies, and cannot
set them. Requests forwarded to an app (or to the panel process) lose `stcloud_session`,
`stcloud_visitor`, `stcloud_dashboard`, `stcloud_csrf`, `stcloud_return` and
`stcloud_affinity` (the replica pin, `sticky.py`) from their `Cookie` headers;
`Set-Cookie` headers for those names are dropped from app responses. The app's own
cookies pass both ways untouched. The dashboard keeps `stcloud_dashboard` (it is
the dashboard's own sign-in cookie) and loses the rest.

Cookie headers are filtered textually, pair by pair, so values we do not understand are
forwarded byte for byte.
"""

from __future__ import annotations

import re

from multidict import CIMultiDict

from backend.accounts.identity import DASHBOARD_COOKIE, OUR_COOKIES

_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9._~-]*$")
AFFINITY_COOKIE = "stcloud_affinity"  # which replica serves this browser (sticky.py)
APP_STRIP = OUR_COOKIES | {AFFINITY_COOKIE}
DASHBOARD_STRIP = APP_STRIP - {DASHBOARD_COOKIE}


def strip_cookie_header(value: str, names: frozenset[str]) -> str:
    """A `Cookie` header value without the pairs named in `names`."""
    kept = []
    for pair in value.split(";"):
        name = pair.split("=", 1)[0].strip()
        if name and name not in names:
            kept.append(pair.strip())
    return "; ".join(kept)


def strip_request_cookies(headers: CIMultiDict[str], names: frozenset[str]) -> None:
    """Remove our cookies from upstream request headers, in place."""
    values = headers.getall("Cookie", [])
    if not values:
        return
    del headers["Cookie"]
    for value in values:
        kept = strip_cookie_header(value, names)
        if kept:
            headers.add("Cookie", kept)


def set_cookie_name(value: str) -> str:
    return value.split("=", 1)[0].strip()


def strip_response_cookies(headers: CIMultiDict[str], names: frozenset[str]) -> None:
    """Drop `Set-Cookie` headers for our names from an upstream response, in place."""
    values = headers.getall("Set-Cookie", [])
    if not any(set_cookie_name(v) in names for v in values):
        return
    del headers["Set-Cookie"]
    for value in values:
        if set_cookie_name(value) not in names:
            headers.add("Set-Cookie", value)


def cookie_header(name: str, value: str, *, max_age: int | None, secure: bool,
                  http_only: bool = True, same_site: str = "Lax", path: str = "/") -> str:
    """A `Set-Cookie` value: host-only (no Domain), Path=/ unless told. Our values are
    base64url and dots only, so they need no quoting."""
    if not _COOKIE_VALUE.match(value):
        raise ValueError(f"cookie value for {name} needs quoting")
    parts = [f"{name}={value}", f"Path={path}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    if http_only:
        parts.append("HttpOnly")
    parts.append(f"SameSite={same_site}")
    return "; ".join(parts)


def expire_cookie_header(name: str, *, secure: bool) -> str:
    return cookie_header(name, "", max_age=0, secure=secure)
