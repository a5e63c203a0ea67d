"""What one forwarded request carries up and back: the options of a forwarding
(`Forwarding`), the request and response headers, the upstream URL, the errors, and what a
websocket upgrade looks like. No I/O here except `quickack` on an open connection; the
relaying itself is `forward.py` (HTTP, and the `Forwarder` that owns the session) and
`websocket.py` (websockets). See `forward.py` for the whole contract.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, MultiMapping
from yarl import URL

from supervisor.proxy import cookies

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only

CONNECT_TIMEOUT = 10.0
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT,
                                       sock_connect=CONNECT_TIMEOUT, sock_read=None)
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)
OUR_HEADER_PREFIX = "x-stcloud-"

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "proxy-connection",
})
# Identity headers the proxy itself adds for apps that turn them on (oidc.py): a client's
# copies never pass, to any upstream, whatever the app's setting.
IDENTITY_HEADERS = frozenset({"x-forwarded-user", "x-forwarded-email"})
# Request headers we answer ourselves (aiohttp already sent "100 Continue").
REQUEST_DROP = HOP_BY_HOP | IDENTITY_HEADERS | {"expect"}
# The websocket handshake is redone upstream by aiohttp's client.
WSREQUEST_DROP = REQUEST_DROP | {
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept", "content-length",
}
# A body already complete is re-sent with its length computed by web.Response.
BUFFERED_DROP = HOP_BY_HOP | {"content-length"}


class UpstreamUnavailable(Exception):
    """The upstream refused or broke before a response began."""


class UpstreamTimeout(UpstreamUnavailable):
    """The upstream accepted the request but sent no response in RESPONSE_TIMEOUT."""


@dataclass(frozen=True)
class Forwarding:
    """What the proxy adds to one forwarded request (see the module docstring)."""

    strip_cookies: frozenset[str] = frozenset()
    add_headers: Mapping[str, str] | None = None
    set_cookies: Sequence[str] = ()
    inject: bytes | None = None  # tags to insert into an HTML page
    on_open: Callable[[], None] | None = None  # a websocket was accepted upstream


PLAIN = Forwarding()


def filter_headers(headers: MultiMapping[str], drop: frozenset[str]) -> CIMultiDict[str]:
    """A copy of `headers` without `drop` and without the names listed in Connection."""
    named: set[str] = set()
    for value in headers.getall("Connection", ()):
        named.update(token.strip().lower() for token in value.split(","))
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        lower = key.lower()
        if lower in drop or lower in named or lower.startswith(OUR_HEADER_PREFIX):
            continue
        out.add(key, value)
    return out


def upstream_headers(request: web.BaseRequest, scheme: str, *, websocket: bool = False,
                     how: Forwarding = PLAIN) -> CIMultiDict[str]:
    """Request headers for the upstream: Host kept, hop-by-hop and X-Stcloud-* dropped,
    X-Forwarded-* set, our cookies stripped, the proxy's own headers added."""
    req = request.headers
    headers = filter_headers(req, WSREQUEST_DROP if websocket else REQUEST_DROP)
    remote = request.remote
    if remote:
        previous = ", ".join(req.getall("X-Forwarded-For", ()))
        headers["X-Forwarded-For"] = f"{previous}, {remote}" if previous else remote
    headers["X-Forwarded-Proto"] = scheme
    host = req.get("Host")
    if host:
        headers["X-Forwarded-Host"] = host
    if how.strip_cookies:
        cookies.strip_request_cookies(headers, how.strip_cookies)
    if how.add_headers:
        headers.update(how.add_headers)
    return headers


def response_headers(upstream: MultiMapping[str], drop: frozenset[str],
                     how: Forwarding) -> CIMultiDict[str]:
    headers = filter_headers(upstream, drop)
    if how.strip_cookies:
        cookies.strip_response_cookies(headers, how.strip_cookies)
    for value in how.set_cookies:
        headers.add("Set-Cookie", value)
    return headers


def upstream_url(address: tuple[str, int], request: web.BaseRequest) -> URL:
    """The upstream URL for this request, the path and query kept byte for byte."""
    host, port = address
    target = request.raw_path
    if not target.startswith("/"):  # absolute-form request target
        target = request.rel_url.raw_path_qs
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return URL(f"http://{host}:{port}{target}", encoded=True)


def quickack(upstream: aiohttp.ClientResponse) -> None:
    """Acknowledge the upstream's data at once instead of after Linux's ~40 ms delayed ACK.

    Streamlit 1.67 binds its socket itself and never disables Nagle on its connections, so
    on a reused connection each response body waits for our ACK (bench/proxy.py measured
    44 ms per /_stcore/health; with this, ~1 ms). The kernel clears the flag after each
    receive, so it is set again after every read."""
    conn = upstream.connection
    transport = conn.transport if conn is not None else None
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and _TCP_QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            pass



def is_websocket(request: web.BaseRequest) -> bool:
    """Is this a websocket upgrade request?"""
    headers = request.headers
    return (request.method == "GET" and "websocket" in headers.get("Upgrade", "").lower()
            and "upgrade" in headers.get("Connection", "").lower())


def websocket_protocols(request: web.BaseRequest) -> list[str]:
    """The client's subprotocols in order, empty entries kept (Streamlit is positional)."""
    raw = ",".join(request.headers.getall("Sec-WebSocket-Protocol", ()))
    return [p.strip() for p in raw.split(",")] if raw.strip() else []



def describe(exc: BaseException) -> str:
    """An error for the operator log, without URLs (whose query may carry tokens)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}({exc.status} {exc.message})"
    return type(exc).__name__ + (f"({exc})" if isinstance(exc, OSError) else "")
