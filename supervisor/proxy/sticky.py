"""Sticky sessions: one browser, one replica, for apps served by several upstreams.

A Streamlit session lives in one process: the page, its `/_stcore/stream` websocket
(and the reconnects of that websocket, which carry the session id) and the media of the
session must reach the same replica. With `swarm_replicas` > 1 the route holds every
task's address (`Route.upstreams`), and the proxy pins each browser to one of them with
the cookie `stcloud_affinity`:

- no valid cookie: the upstream with the fewest requests and websockets in flight
  through this proxy (ties broken at random) is picked, and the response sets the
  cookie: host-only, `Path=/`, HttpOnly, SameSite=Lax, Secure on https, no Max-Age (it
  ends with the browser session; a new visit may land elsewhere, which is the point);
- a valid cookie names an upstream still in the route: that one;
- a cookie for an upstream no longer in the route (a replica moved or was removed): picked
  again, cookie replaced. So is a pinned upstream that refuses the connection for a GET,
  HEAD or websocket (nothing was sent to it yet), once per other upstream.

The value is opaque: an HMAC (the proxy's identity key, shared by every proxy through
`data_dir/keys`, so any proxy honours a pin another one set) of the subdomain and the
upstream address, 128 bits, base64url. The client learns no address and cannot aim at a
replica of its choice; a value minted for one app means nothing on another. Like our
other cookies it is stripped from requests to the app and an app cannot set it
(`cookies.APP_STRIP`).

Routes with one upstream (every engine but swarm with replicas) never see the cookie:
nothing here runs for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from aiohttp import web

from supervisor.proxy import cookies
from supervisor.routes import Route

AFFINITY_COOKIE = cookies.AFFINITY_COOKIE
Address = tuple[str, int]
_TOKENS_MAX = 4096


class Sticky:
    """Chooses an upstream per request and counts what is in flight per upstream."""

    def __init__(self, key: bytes, *, secure: bool = False,
                 rng: random.Random | None = None) -> None:
        self.key = key
        self.secure = secure
        self.rng = rng or random.Random()
        self.in_flight: dict[Address, int] = {}
        self._tokens: dict[tuple[str, Address], str] = {}

    # The cookie ---------------------------------------------------------------------
    def token(self, subdomain: str, address: Address) -> str:
        """The cookie value that pins `subdomain` to `address` (cached)."""
        found = self._tokens.get((subdomain, address))
        if found is None:
            mac = hmac.new(self.key, f"affinity.{subdomain}.{address[0]}:{address[1]}"
                           .encode(), hashlib.sha256).digest()[:16]
            found = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
            if len(self._tokens) >= _TOKENS_MAX:
                self._tokens.clear()
            self._tokens[(subdomain, address)] = found
        return found

    def pinned(self, route: Route, value: str | None) -> Address | None:
        """The upstream of `route` that the cookie value names, if still in the route."""
        if not value or len(value) > 64:
            return None
        for address in route.upstreams:
            if hmac.compare_digest(value.encode(), self.token(route.subdomain,
                                                              address).encode()):
                return address
        return None

    def cookie(self, route: Route, address: Address) -> str:
        """The `Set-Cookie` value pinning the browser to `address`."""
        return cookies.cookie_header(AFFINITY_COOKIE, self.token(route.subdomain, address),
                                     max_age=None, secure=self.secure)

    # The choice -------------------------------------------------------------------------
    def choose(self, upstreams: Sequence[Address], exclude: frozenset[Address] | set[Address]
               = frozenset()) -> Address | None:
        """The upstream with the fewest in flight (random among equals), or None."""
        candidates = [a for a in upstreams if a not in exclude]
        if not candidates:
            return None
        least = min(self.in_flight.get(a, 0) for a in candidates)
        return self.rng.choice([a for a in candidates if self.in_flight.get(a, 0) == least])

    def pick(self, request: web.BaseRequest, route: Route) -> tuple[Address, str | None]:
        """(upstream, Set-Cookie value or None) for a request to a multi-upstream route."""
        found = self.pinned(route, request.cookies.get(AFFINITY_COOKIE))
        if found is not None:
            return found, None
        chosen = self.choose(route.upstreams)
        assert chosen is not None  # a serving route has at least one upstream
        return chosen, self.cookie(route, chosen)

    @contextmanager
    def track(self, address: Address) -> Iterator[None]:
        """Count one request (or relayed websocket) in flight to `address`."""
        self.in_flight[address] = self.in_flight.get(address, 0) + 1
        try:
            yield
        finally:
            left = self.in_flight.get(address, 1) - 1
            if left > 0:
                self.in_flight[address] = left
            else:
                self.in_flight.pop(address, None)
