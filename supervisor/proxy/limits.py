"""Connection limits of the proxy's server side: what one client, or all of them, may hold.

Every dashboard, API and app request comes through one listening socket, so a client
that opens connections and never finishes a request (slowloris) must not be able to use
up the process's file descriptors. Four rules, all settings (`proxy_*`):

- Header-read timeout: a request's headers must be complete within `header_timeout`
  seconds of the connection's start (first request) or of the request's first byte (the
  next ones on a keep-alive connection); otherwise the connection is closed.
- Idle keep-alive timeout: aiohttp's own `keepalive_timeout`, the time a connection may
  wait, after a response, for the first byte of the next request.
- Body-read timeout: while a request body is incomplete and the proxy is reading it, the
  client must send some of it at least every `body_timeout` seconds (time spent with
  reading paused by our own backpressure does not count).
- Connection caps, counted at `accept()`: at most `per_client` open connections per
  socket peer address and `total` in all. At the total cap the connection that has
  waited longest for a request (its headers incomplete, or idle between keep-alive
  requests) is closed to make room, so connections held open without requests, even
  from many addresses, cannot lock others out; over a cap with none such, the new one
  gets a canned 503 in one non-blocking `send` and is closed, before any transport,
  protocol or task exists for it. Peers listed as trusted proxies (a TLS terminator
  that multiplexes many clients) are counted in the total only. `total` is derived
  from the soft RLIMIT_NOFILE: each client connection may hold one upstream connection
  too (a websocket, a request in flight), and `RESERVED_DESCRIPTORS` stay for the
  database, logs and child processes.

Why not aiohttp alone: aiohttp 3.14's `keepalive_timeout` also closes a connection that
has sent no complete request, but counts from the connection's start or the previous
response, so a header timeout shorter than the keep-alive timeout needs its own timer; it
has no body-read timeout and no connection caps. Hence `LimitedRequestHandler`, a
subclass of aiohttp's request handler protocol, and `LimitedSocket`, the listening socket
whose `accept()` applies the caps, served by `LimitedSite`. The subclass reads a few of
aiohttp's protocol attributes (`_waiter`, `_request_count`, `_current_request`,
`_reading_paused`); aiohttp is pinned and tests/integration/test_proxy_limits.py attacks each rule.

Running out of descriptors anyway (EMFILE/ENFILE at `accept()`): asyncio 3.11 logs
"socket.accept() out of system resource" with a traceback through the loop's exception
handler and retries a second later, but keeps calling `accept()` up to the backlog in the
same turn and schedules a retry for each failure: 128 failures a second (measured), and
the log lines pile up (776 MB in 5 s with asyncio's default handler). `LimitedSocket`
lets one failure per turn through (asyncio pauses accepting for a second) and answers the
rest of the turn as "nothing to accept"; the loop's exception handler
(`install_loop_handler`) logs such errors at most once per `LOG_INTERVAL` with a count of
those it kept quiet.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from backend.platform.settings import Settings

log = logging.getLogger("supervisor.proxy")

OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RESERVED_DESCRIPTORS = 512
MIN_TOTAL = 64
LOG_INTERVAL = 10.0
MAX_REFUSALS_PER_ACCEPT = 64  # then let the event loop run other callbacks
MAX_EVICTION_TRIES = 8
_BODY = b"Too many connections; try again in a few seconds.\n"
REFUSED_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                    b"Retry-After: 5\r\nConnection: close\r\nContent-Length: "
                    + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def nofile_soft_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def descriptor_budget(soft_limit: int) -> int:
    """The most client connections a process with `soft_limit` descriptors can hold: two
    descriptors each (client + upstream), after the reserved ones."""
    return max(MIN_TOTAL, (soft_limit - RESERVED_DESCRIPTORS) // 2)


def parse_networks(text: str) -> tuple[Network, ...]:
    """`"10.0.0.1, 192.168.0.0/16"` → networks; raises ValueError naming a bad entry."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"Setting 'proxy_trusted_proxies' has {item!r}, which is "
                                 "not an IP address or network.") from None
    return tuple(networks)


class Evictable(Protocol):
    def evict(self) -> bool: ...


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    per_client: int
    total: int
    websocket_ping: float | None  # seconds of quiet before a ping; None: no pings
    trusted: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, soft_limit: int | None = None
                      ) -> ConnectionLimits:
        """The limits for this process: `total` is the setting, at most the descriptor
        budget of the soft RLIMIT_NOFILE (a bigger setting is lowered, with a warning)."""
        budget = descriptor_budget(nofile_soft_limit() if soft_limit is None else soft_limit)
        total = settings.proxy_max_connections or budget
        if total > budget:
            log.warning("proxy_max_connections lowered setting=%d to=%d reason=nofile_limit",
                        total, budget)
            total = budget
        ping = settings.proxy_websocket_ping_interval
        return cls(header_timeout=settings.proxy_header_timeout,
                   body_timeout=settings.proxy_body_timeout,
                   keepalive_timeout=settings.proxy_keepalive_timeout,
                   per_client=settings.proxy_max_connections_per_client, total=total,
                   websocket_ping=ping if ping > 0 else None,
                   trusted=parse_networks(settings.proxy_trusted_proxies))


class BoundedLog:
    """Warnings that may come thousands a second, at most one line per event name per
    `interval`; each line says how many were kept quiet since the previous one."""

    def __init__(self, logger: logging.Logger = log, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def event(self, name: str, detail: str = "") -> None:
        now = self.clock()
        last = self._last.get(name)
        if last is not None and now - last < self.interval:
            self._quiet[name] = self._quiet.get(name, 0) + 1
            return
        self._last[name] = now
        suppressed = self._quiet.pop(name, 0)
        self.logger.warning("%s %s suppressed=%d", name, detail, suppressed)


class ConnectionGuard:
    """Open client connections per peer address and in all (see the module docstring)."""

    def __init__(self, limits: ConnectionLimits, events: BoundedLog | None = None) -> None:
        self.limits = limits
        self.events = events or BoundedLog()
        self.total = 0
        self.per_client: dict[str, int] = {}
        # Connections waiting for request headers, oldest first: at the total cap the
        # oldest is closed to admit a new one (a slowloris holds the oldest ones).
        self.waiting: dict[Evictable, None] = {}
        self._trusted: dict[str, bool] = {}

    def is_trusted(self, address: str) -> bool:
        if not self.limits.trusted:
            return False
        found = self._trusted.get(address)
        if found is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                found = False
            else:
                found = any(ip in net for net in self.limits.trusted)
            if len(self._trusted) > 4096:
                self._trusted.clear()
            self._trusted[address] = found
        return found

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`; False (nothing counted) over a cap."""
        count = self.per_client.get(address, 0)
        if count >= self.limits.per_client and not self.is_trusted(address):
            self.events.event("connection_refused",
                              f"reason=per_client client={address} open={count}")
            return False
        if self.total >= self.limits.total and not self._evict_oldest_waiting():
            self.events.event("connection_refused", f"reason=total open={self.total}")
            return False
        self.per_client[address] = count + 1
        self.total += 1
        return True

    def _evict_oldest_waiting(self) -> bool:
        """Close the connection that has waited longest for a request; False if none.
        An entry found busy (a pipelined request) leaves the list without being closed."""
        for _ in range(MAX_EVICTION_TRIES):
            oldest = next(iter(self.waiting), None)
            if oldest is None:
                return False
            del self.waiting[oldest]
            if oldest.evict():  # releases its count
                self.events.event("connection_evicted", f"reason=total open={self.total}")
                return True
        return False

    def release(self, address: str) -> None:
        count = self.per_client.get(address, 0)
        if count <= 1:
            self.per_client.pop(address, None)
        else:
            self.per_client[address] = count - 1
        self.total = max(0, self.total - 1)


def peer_key(address: object) -> str:
    """The per-client key of a peer address as `accept()` returns it."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


class LimitedSocket(socket.socket):
    """The listening socket; `accept()` applies the guard's caps (module docstring)."""

    __slots__ = ("guard", "_quiet_until")
    guard: ConnectionGuard
    _quiet_until: float  # accept() raises EAGAIN until then after running out of descriptors

    def accept(self) -> tuple[socket.socket, object]:
        guard: ConnectionGuard = self.guard
        for _ in range(MAX_REFUSALS_PER_ACCEPT):
            try:
                conn, address = super().accept()
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                now = time.monotonic()
                if now < self._quiet_until:
                    raise BlockingIOError(errno.EAGAIN, "accepting paused") from None
                self._quiet_until = now + 0.5  # asyncio pauses accepting for a second
                raise
            if guard.admit(peer_key(address)):
                return conn, address
            try:
                conn.send(REFUSED_RESPONSE, socket.MSG_DONTWAIT)
            except OSError:
                pass
            conn.close()
        raise BlockingIOError(errno.EAGAIN, "refused a burst; the rest waits a turn")


def listening_sockets(host: str, port: int, guard: ConnectionGuard,
                      backlog: int = 128) -> list[LimitedSocket]:
    """Bind and listen on every address of `host` like asyncio's create_server does
    (SO_REUSEADDR, IPv6 sockets v6-only; "" means every interface)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[LimitedSocket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = LimitedSocket(family, kind, proto)
            sockets.append(sock)
            sock.guard = guard
            sock._quiet_until = 0.0
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
