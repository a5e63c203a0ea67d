"""Forwarding one request to an upstream (an app instance or the dashboard): `Forwarder`.

HTTP: the request body is streamed from `request.content` and the response body with a
`StreamResponse`, chunk by chunk as it arrives, so nothing is ever buffered whole (a
20 MB download or a server-sent stream flows through). Only a body that had already
arrived complete with the headers (small pages) is sent in one write with them. Bodies
pass through untouched (`auto_decompress=False` on both sides; HTML pages of apps are the
one exception, see `inject.py`), redirects are returned to the browser, not followed.

Headers: the original `Host` is kept, because Streamlit's websocket handler accepts a
connection only when `Origin` matches `Host`; `X-Forwarded-For` is appended to,
`X-Forwarded-Proto`/`X-Forwarded-Host` are set; hop-by-hop headers (RFC 9110 §7.6.1,
plus any named in `Connection`) are dropped in both directions.

WebSocket: the client's `Sec-WebSocket-Protocol` list is passed upstream as is (Streamlit
sends "streamlit", then its XSRF token, then an optional session id; it selects the
first), and the client is answered with the protocol the upstream chose. Text and binary
frames are pumped both ways concurrently, without decoding text; a close from either side
closes the other with the same code. No message size limit; pings from either side are
answered, and the client's end is pinged when quiet (`proxy_websocket_ping_interval`).

Per request, `Forwarding` options say what else happens: our cookies are stripped from
the request and our `Set-Cookie` names from the response (`cookies.py`), headers the proxy
vouches for are added (the panel's signed identity), cookies of ours are set, and HTML
pages get the overlay (`inject.py`). Client headers named `X-Stcloud-*` never pass: only
the proxy sets those.

Timeouts: connecting 10 s; the response headers must arrive within `RESPONSE_TIMEOUT`
(300 s, room for a slow upload to finish) or the client gets a 504 page; a body then
streams for as long as it flows.

`Forwarder` is the interface the rest of the proxy uses: `start()` on the application's
startup, `forward(request, address, how)` per request, `close_websockets()` on shutdown
and `close()` on cleanup. Every upstream call uses its one shared `ClientSession`, whose
pool keeps upstream connections warm; that is what lets a proxy beat direct access
(bench/proxy.py measures it).
Streamlit's uvicorn closes idle keep-alive connections after 5 s; aiohttp's client retries
an idempotent request once when a pooled connection was closed under it.
"""


from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from supervisor.proxy import inject
from supervisor.proxy.upstream import (
    BUFFERED_DROP,
    CLIENT_TIMEOUT,
    HOP_BY_HOP,
    PLAIN,
    Forwarding,
    UpstreamTimeout,
    UpstreamUnavailable,
    describe,
    is_websocket,
    quickack,
    response_headers,
    upstream_headers,
    upstream_url,
)
from supervisor.proxy.websocket import WebSocketPair, forward_websocket

log = logging.getLogger("supervisor.proxy")

RESPONSE_TIMEOUT = 300.0
MAX_HEADER_FIELD = 32 * 1024  # big enough for chunked auth cookies


class Forwarder:
    """Relays requests to upstreams over one shared `ClientSession` and keeps the relayed
    websockets, so that shutdown can close them. `forward` raises `UpstreamUnavailable`
    when the upstream cannot be reached (also before `start()`, after `close()`, and for
    a websocket once shutdown began)."""

    def __init__(self, scheme: str, *, websocket_ping: float | None = None) -> None:
        self.scheme = scheme
        self.websocket_ping = websocket_ping
        self.websockets: set[WebSocketPair] = set()
        self.closing = False
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the shared session (call from the application's startup)."""
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=CLIENT_TIMEOUT, auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            max_line_size=MAX_HEADER_FIELD, max_field_size=MAX_HEADER_FIELD)

    async def forward(self, request: web.Request, address: tuple[str, int],
                      how: Forwarding = PLAIN) -> web.StreamResponse:
        """Relay `request` (HTTP or websocket) to `address` as `how` says."""
        session = self.session
        if session is None or session.closed:
            raise UpstreamUnavailable("proxy is not started")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("forward method=%s host=%s path=%s upstream=%s:%s", request.method,
                      request.headers.get("Host", ""), request.path, *address)
        if is_websocket(request):
            if self.closing:
                raise UpstreamUnavailable("proxy is shutting down")
            return await forward_websocket(request, address, session, self.scheme,
                                           self.websockets, how, ping=self.websocket_ping)
        return await forward_http(request, address, session, self.scheme, how)

    async def close_websockets(self) -> None:
        """Refuse new websockets and close every relayed one with 1001 (going away)."""
        self.closing = True
        pairs = list(self.websockets)
        if pairs:
            log.info("shutdown closing_websockets=%d", len(pairs))
        await asyncio.gather(*(pair.close(1001, b"Server shutting down") for pair in pairs))

    async def close(self) -> None:
        """Close the shared session."""
        if self.session is not None:
            await self.session.close()
            self.session = None


async def forward_http(request: web.Request, address: tuple[str, int],
                       session: aiohttp.ClientSession, scheme: str,
                       how: Forwarding = PLAIN) -> web.StreamResponse:
    """Forward one HTTP request and stream the answer; raises UpstreamUnavailable."""
    url = upstream_url(address, request)
    headers = upstream_headers(request, scheme, how=how)
    page = how.inject is not None and inject.may_be_page(request)
    if page:
        inject.prepare_page_request(headers)
    data = request.content if request.body_exists else None
    try:
        async with asyncio.timeout(RESPONSE_TIMEOUT):
            upstream = await session.request(request.method, url, headers=headers,
                                             data=data, allow_redirects=False)
    except TimeoutError as exc:
        raise UpstreamTimeout(f"no response in {RESPONSE_TIMEOUT:.0f} s") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(describe(exc)) from exc
    quickack(upstream)

    if page and upstream.status == 200 and inject.is_html(upstream.headers):
        edited = await _edited_page(request, upstream, how)
        if edited is not None:
            return edited
    complete = False
    content = upstream.content
    if content.is_eof() and _may_have_body(request.method, upstream.status):
        # The whole body came with the headers (small pages, health checks): answer in
        # one write instead of headers first. Nothing is waited for here.
        body = content.read_nowait()
        upstream.release()
        return web.Response(status=upstream.status, reason=upstream.reason, body=body,
                            headers=response_headers(upstream.headers, BUFFERED_DROP, how))
    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=response_headers(upstream.headers, HOP_BY_HOP,
                                                               how))
        await response.prepare(request)
        while chunk := await content.readany():
            if content.is_eof():  # the last piece goes out with the end of the body
                break
            quickack(upstream)
            await response.write(chunk)
        await response.write_eof(chunk)
        complete = True
        return response
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
            ConnectionError) as exc:
        # Mid-body failure on either side: the status line is gone, so the only honest
        # signal left is to drop the client connection (a truncated body must not look
        # complete).
        log.info("stream_aborted host=%s path=%s upstream=%s:%s error=%s",
                 request.headers.get("Host", ""), request.path, *address, describe(exc))
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        if complete:
            upstream.release()
        else:
            upstream.close()


async def _edited_page(request: web.Request, upstream: aiohttp.ClientResponse,
                       how: Forwarding) -> web.StreamResponse | None:
    """The app's HTML page with the overlay tags, or None to stream it as it is (too big
    or undecodable: then only what was read is kept for the streaming path)."""
    content = upstream.content
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= inject.MAX_HTML:
            chunk = await content.readany()
            if not chunk:
                break
            quickack(upstream)
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        upstream.close()
        raise UpstreamUnavailable(describe(exc)) from exc
    raw = b"".join(chunks)
    if size <= inject.MAX_HTML:
        upstream.release()
        body = inject.decode(raw, upstream.headers.get("Content-Encoding", ""))
        edited = inject.insert_tags(body, how.inject or b"") if body is not None else None
        if edited is not None:
            headers = response_headers(upstream.headers, BUFFERED_DROP, how)
            for name in inject.EDITED_RESPONSE_DROP:
                headers.popall(name, None)
            return web.Response(status=upstream.status, reason=upstream.reason,
                                body=edited, headers=headers)
        return web.Response(status=upstream.status, reason=upstream.reason, body=raw,
                            headers=response_headers(upstream.headers, BUFFERED_DROP, how))
    # Too big to edit: send what was read, then stream the rest.
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                  headers=response_headers(upstream.headers, HOP_BY_HOP, how))
    try:
        await response.prepare(request)
        await response.write(raw)
        while chunk := await content.readany():
            await response.write(chunk)
        await response.write_eof()
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError):
        if request.transport is not None:
            request.transport.close()
    finally:
        upstream.close()
    return response


def _may_have_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)

