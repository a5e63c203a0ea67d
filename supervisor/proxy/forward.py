"""Forwarding one request to an upstream (an app instance or the dashboard).

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

Every upstream call uses one shared `ClientSession` (see `server.py`) whose pool keeps
upstream connections warm; that is what lets a proxy beat direct access (FINDINGS.md).
Streamlit's uvicorn closes idle keep-alive connections after 5 s; aiohttp's client retries
an idempotent request once when a pooled connection was closed under it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, MultiMapping
from yarl import URL

from supervisor.proxy import cookies, inject

log = logging.getLogger("supervisor.proxy")
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only

CONNECT_TIMEOUT = 10.0
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT,
                                       sock_connect=CONNECT_TIMEOUT, sock_read=None)
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)
RESPONSE_TIMEOUT = 300.0
OUR_HEADER_PREFIX = "x-stcloud-"

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "proxy-connection",
})
# Request headers we answer ourselves (aiohttp already sent "100 Continue").
_REQUEST_DROP = HOP_BY_HOP | {"expect"}
# The websocket handshake is redone upstream by aiohttp's client.
_WS_REQUEST_DROP = _REQUEST_DROP | {
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept", "content-length",
}
# A body already complete is re-sent with its length computed by web.Response.
_BUFFERED_DROP = HOP_BY_HOP | {"content-length"}
# Close codes that must not be sent in a close frame (RFC 6455 §7.4.1).
_RESERVED_CLOSE = frozenset({1005, 1006, 1015})


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
    headers = filter_headers(req, _WS_REQUEST_DROP if websocket else _REQUEST_DROP)
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
        raise UpstreamUnavailable(_describe(exc)) from exc
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
                            headers=response_headers(upstream.headers, _BUFFERED_DROP, how))
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
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError,
            asyncio.TimeoutError) as exc:
        # Mid-body failure on either side: the status line is gone, so the only honest
        # signal left is to drop the client connection (a truncated body must not look
        # complete).
        log.info("stream_aborted host=%s path=%s upstream=%s:%s error=%s",
                 request.headers.get("Host", ""), request.path, *address, _describe(exc))
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
        raise UpstreamUnavailable(_describe(exc)) from exc
    raw = b"".join(chunks)
    if size <= inject.MAX_HTML:
        upstream.release()
        body = inject.decode(raw, upstream.headers.get("Content-Encoding", ""))
        edited = inject.insert_tags(body, how.inject or b"") if body is not None else None
        if edited is not None:
            headers = response_headers(upstream.headers, _BUFFERED_DROP, how)
            for name in inject.EDITED_RESPONSE_DROP:
                headers.popall(name, None)
            return web.Response(status=upstream.status, reason=upstream.reason,
                                body=edited, headers=headers)
        return web.Response(status=upstream.status, reason=upstream.reason, body=raw,
                            headers=response_headers(upstream.headers, _BUFFERED_DROP, how))
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


@dataclass(eq=False)
class WebSocketPair:
    """One relayed websocket: the browser's end and ours to the upstream."""

    client: web.WebSocketResponse
    upstream: aiohttp.ClientWebSocketResponse
    tasks: list[asyncio.Task] = field(default_factory=list)
    closed_with: int | None = None  # set when we closed both ends ourselves

    async def close(self, code: int, message: bytes = b"") -> None:
        if self.closed_with is None:
            self.closed_with = code
        await asyncio.gather(self.client.close(code=code, message=message),
                             self.upstream.close(code=code, message=message),
                             return_exceptions=True)


def websocket_protocols(request: web.BaseRequest) -> list[str]:
    """The client's subprotocols in order, empty entries kept (Streamlit is positional)."""
    raw = ",".join(request.headers.getall("Sec-WebSocket-Protocol", ()))
    return [p.strip() for p in raw.split(",")] if raw.strip() else []


async def forward_websocket(request: web.Request, address: tuple[str, int],
                            session: aiohttp.ClientSession, scheme: str,
                            active: set[WebSocketPair], how: Forwarding = PLAIN, *,
                            ping: float | None = None) -> web.StreamResponse:
    """Relay a websocket; raises UpstreamUnavailable when the upstream cannot be reached.
    With `ping`, the client is pinged after that many seconds without a frame from it
    and closed when no pong comes within half of it (aiohttp's heartbeat): a quiet but
    live session stays, a vanished one frees its descriptors.

    The upstream is connected first, so the client is answered with the protocol it
    chose, and an upstream refusal (e.g. Streamlit's 403 on a foreign Origin) is passed
    on as that HTTP status instead of an accepted-then-closed socket.
    """
    url = upstream_url(address, request)
    try:
        upstream = await session.ws_connect(
            url, protocols=websocket_protocols(request),
            headers=upstream_headers(request, scheme, websocket=True, how=how),
            timeout=WS_TIMEOUT, autoclose=True, autoping=True, heartbeat=None,
            max_msg_size=0, compress=0, decode_text=False)
    except aiohttp.WSServerHandshakeError as exc:
        status = exc.status if 400 <= exc.status < 600 else 502
        log.info("websocket_refused host=%s path=%s status=%s",
                 request.headers.get("Host", ""), request.path, exc.status)
        return web.Response(status=status, headers={"Cache-Control": "no-store"},
                            text=f"The app refused the websocket ({exc.status}).")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise UpstreamUnavailable(_describe(exc)) from exc

    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (), autoclose=True,
        autoping=True, heartbeat=ping, max_msg_size=0, compress=False, decode_text=False)
    for value in how.set_cookies:  # e.g. the replica pin of a client that had none
        client.headers.add("Set-Cookie", value)
    try:
        await client.prepare(request)
    except BaseException:
        await upstream.close()
        raise

    pair = WebSocketPair(client, upstream)
    active.add(pair)
    if how.on_open is not None:
        how.on_open()
    host = request.headers.get("Host", "")
    log.info("websocket_open host=%s path=%s protocol=%s", host, request.path,
             upstream.protocol)
    try:
        code = await _relay(pair)
    finally:
        active.discard(pair)
        for task in pair.tasks:
            task.cancel()
        await pair.close(1001)
    log.info("websocket_closed host=%s path=%s code=%s", host, request.path, code)
    return client


async def _relay(pair: WebSocketPair) -> int:
    """Pump both ways until one side ends; close the other side with the same code."""
    to_upstream = asyncio.create_task(_pump(pair.client, pair.upstream))
    to_client = asyncio.create_task(_pump(pair.upstream, pair.client))
    pair.tasks = [to_upstream, to_client]
    done, _ = await asyncio.wait(pair.tasks, return_when=asyncio.FIRST_COMPLETED)
    first = to_upstream if to_upstream in done else to_client
    try:
        target, code, message = first.result()
    except Exception:  # noqa: BLE001 - a broken pump ends the relay like an error close
        log.exception("websocket_pump_failed")
        target, code, message = None, 1011, b""
    if target is not None:
        await target.close(code=code, message=message)
    else:
        await pair.close(code, message)
    # The other pump ends once its socket is closed (the caller cancels stragglers).
    await asyncio.wait(pair.tasks, timeout=WS_TIMEOUT.ws_close)
    return pair.closed_with or code


_WS = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _pump(src: _WS, dst: _WS) -> tuple[_WS | None, int, bytes]:
    """Copy frames from src to dst until src ends or dst fails.

    Returns (socket to close now, close code, reason): dst with src's close code when
    src closed, src with 1011 when dst could not be written to.
    """
    while True:
        msg = await src.receive()
        kind = msg.type
        if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
            try:
                await dst.send_frame(msg.data, kind)
            except ConnectionError:
                return src, 1011, b""
            continue
        if kind is WSMsgType.CLOSE:
            code = msg.data if isinstance(msg.data, int) else 1000
            reason = msg.extra or b""
            return dst, _sendable(code), reason.encode() if isinstance(reason, str) else reason
        if kind is WSMsgType.ERROR:
            return dst, 1011, b""
        # CLOSING (closed locally, e.g. on shutdown) or CLOSED (connection lost).
        return dst, _sendable(src.close_code or 1001), b""


def _may_have_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)


def _sendable(code: int) -> int:
    if code in _RESERVED_CLOSE or not (1000 <= code < 5000):
        return 1011 if code in (1006, 1015) else 1000
    return code


def _describe(exc: BaseException) -> str:
    """An error for the operator log, without URLs (whose query may carry tokens)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}({exc.status} {exc.message})"
    return type(exc).__name__ + (f"({exc})" if isinstance(exc, OSError) else "")
