"""Relaying one websocket between the browser and an upstream (see `forward.py` for the
contract: subprotocols passed as they are, frames pumped both ways undecoded, a close from
either side closes the other with the same code, the client pinged when quiet).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from supervisor.proxy.upstream import (
    PLAIN,
    WS_TIMEOUT,
    Forwarding,
    UpstreamUnavailable,
    describe,
    upstream_headers,
    upstream_url,
    websocket_protocols,
)

log = logging.getLogger("supervisor.proxy")
# Close codes that must not be sent in a close frame (RFC 6455 §7.4.1).
_RESERVED_CLOSE = frozenset({1005, 1006, 1015})


@dataclass(eq=False)
class WebSocketPair:
    """One relayed websocket: the browser's end and ours to the upstream."""

    client: web.WebSocketResponse
    upstream: aiohttp.ClientWebSocketResponse[Any]  # decode_text=False: bytes for text too
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    closed_with: int | None = None  # set when we closed both ends ourselves

    async def close(self, code: int, message: bytes = b"") -> None:
        if self.closed_with is None:
            self.closed_with = code
        await asyncio.gather(self.client.close(code=code, message=message),
                             self.upstream.close(code=code, message=message),
                             return_exceptions=True)



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
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise UpstreamUnavailable(describe(exc)) from exc

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
    except Exception:  # a broken pump ends the relay like an error close
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



def _sendable(code: int) -> int:
    if code in _RESERVED_CLOSE or not (1000 <= code < 5000):
        return 1011 if code in (1006, 1015) else 1000
    return code

