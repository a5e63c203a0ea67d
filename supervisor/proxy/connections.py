"""The proxy's server side with the limits of `limits.py`: the request handler protocol
with header-read and body-read timers, the site that serves it on a `LimitedSocket`, and
the event loop's exception handler that keeps descriptor exhaustion to a few log lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from supervisor.proxy.limits import (
    OUT_OF_RESOURCES,
    BoundedLog,
    ConnectionGuard,
    listening_sockets,
    peer_key,
)


class LimitedRequestHandler(RequestHandler):
    """aiohttp's request handler plus the header-read and body-read timeouts and the
    release of the guard's count when the connection ends (limits.py explains why this
    is a subclass)."""

    __slots__ = ("_guard", "_client", "_header_timer", "_body_timer", "_last_data")

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._client: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_data = 0.0

    # aiohttp's state, read-only (`_messages` too) ------------------------------------
    def _awaiting_headers(self) -> bool:
        """No complete request yet, or idle between requests (the handler waits for the
        next message): the state in which a header deadline applies."""
        if self._request_count == 0:
            return True
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _reading_body(self) -> bool:
        request = self._current_request
        return request is not None and not request.content.is_eof()

    # Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client = peer_key(transport.get_extra_info("peername"))
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_timers()
        if self._client is not None:
            self._guard.release(self._client)
            self._client = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        waiting = self._awaiting_headers()
        if waiting and self._header_timer is None and data:
            self._arm_header_timer()
        super().data_received(data)
        if waiting and not self._awaiting_headers():  # the headers are complete
            self._stop_header_timer()
            messages = self._messages
            if self._body_timer is None and messages and not messages[-1][1].is_eof():
                self._body_timer = self._loop.call_later(self._guard.limits.body_timeout,
                                                         self._body_deadline)

    async def finish_response(self, request: Any, resp: Any, start_time: float | None
                              ) -> tuple[Any, bool]:
        """After each response: a keep-alive connection becomes idle, the first to be
        evicted at the total cap (least recently used first)."""
        result = await super().finish_response(request, resp, start_time)
        if resp.keep_alive and self.transport is not None and self._client is not None:
            self._guard.waiting.pop(self, None)
            self._guard.waiting[self] = None
        return result

    def evict(self) -> bool:
        """Close now to make room for a new connection, if waiting for a request (the
        guard's count is freed at once, not when the transport has gone); False when a
        request is being handled."""
        if not self._awaiting_headers() or self._messages:
            self._guard.waiting.pop(self, None)
            return False
        self._stop_timers()
        if self._client is not None:
            self._guard.release(self._client)
            self._client = None
        self.force_close()
        return True

    # Deadlines ------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(self._guard.limits.header_timeout,
                                                   self._header_deadline)
        self._guard.waiting.pop(self, None)  # to the end: the most recent
        self._guard.waiting[self] = None

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._guard.waiting.pop(self, None)

    def _stop_timers(self) -> None:
        self._stop_header_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        self._guard.waiting.pop(self, None)
        if self.transport is None or self._force_close or not self._awaiting_headers():
            return
        self._guard.events.event("header_timeout", f"client={self._client}")
        self.force_close()

    def _body_deadline(self) -> None:
        self._body_timer = None
        if self.transport is None or self._force_close or not self._reading_body():
            return  # no body outstanding: the next request's headers arm the timer again
        timeout = self._guard.limits.body_timeout
        quiet = self._loop.time() - self._last_data
        if quiet < timeout or self._reading_paused:  # data came, or we stopped reading
            self._body_timer = self._loop.call_later(max(timeout - quiet, 0.05),
                                                     self._body_deadline)
            return
        self._guard.events.event("body_timeout", f"client={self._client}")
        self.force_close()


class LimitedSite(web.BaseSite):
    """Serves the runner's aiohttp server on `LimitedSocket`s with `LimitedRequestHandler`
    connections (the limited form of `web.TCPSite(runner, host, port)`)."""

    __slots__ = ("_sockets", "_guard", "_servers")

    def __init__(self, runner: web.BaseRunner, host: str, port: int,
                 guard: ConnectionGuard, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._guard = guard
        self._sockets = listening_sockets(host, port, guard, backlog)
        self._servers: list[asyncio.AbstractServer] = []

    @property
    def name(self) -> str:
        host, port = self._sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        kwargs = dict(server._kwargs)  # what Server.__call__ gives each RequestHandler
        guard = self._guard

        def protocol() -> LimitedRequestHandler:
            return LimitedRequestHandler(server, guard, loop=loop, **kwargs)

        for sock in self._sockets:
            self._servers.append(await loop.create_server(protocol, sock=sock,
                                                          backlog=self._backlog))
        self._server = self._servers[0]

    async def stop(self) -> None:
        for extra in self._servers[1:]:
            extra.close()
        await super().stop()
        for sock in self._sockets:
            sock.close()


def install_loop_handler(loop: asyncio.AbstractEventLoop, events: BoundedLog
                         ) -> Callable[[], None]:
    """Route the loop's out-of-descriptors errors (asyncio's "socket.accept() out of
    system resource", and any other EMFILE/ENFILE it reports) to `events`, one line per
    interval; everything else goes to the previous handler. Returns the undo."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
            events.event("out_of_descriptors",
                         f"errno={exc.errno} error={exc.strerror!r} where="
                         f"{context.get('message', '')!r}")
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)

    def undo() -> None:
        if loop.get_exception_handler() is handle:
            loop.set_exception_handler(previous)

    return undo
