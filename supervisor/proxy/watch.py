"""What an open tab of an app watches: `GET /__stcloud/state`, answered by long-poll.

The overlay script asks `state?since=<token>`. The answer, `{"state", "token"}`, comes at
once when `since` is absent or differs from the app's token, else as soon as the token
changes, else after `HOLD` seconds with the same token (the script asks again). The token is
the state, plus, while the app serves, its instance's generation: a digest of the addresses
the route sends the app's requests to. A zero-downtime redeploy (a second instance started
beside the first, then the route switched to it) changes the generation while the state stays
`running`; a code-only push (the same instance, files swapped in place) does not. The digest
is keyed with the server's key (the same in every proxy of an installation, so a tab whose
requests reach another proxy sees the same token), so it tells nothing about the addresses.

Cheap for the proxy: the waiters of all tabs share one ticker task, which compares the tokens
of the watched apps every `TICK` seconds and wakes the waiters of an app whose token changed;
no waiter polls by itself. One client (`access.client_key`) holds at most `PER_CLIENT` waits
at once and the proxy `TOTAL`; past either, the answer is immediate and carries `retry`
(seconds), after which the script asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections import Counter
from collections.abc import Callable
from typing import Any

from supervisor.routes import Route

HOLD = 25.0  # seconds a wait is held with no change
TICK = 0.25  # seconds between the ticker's comparisons
PER_CLIENT = 6
TOTAL = 2048
RETRY = 10  # seconds, in an answer past a cap
NOT_FOUND = "not_found"


class StateWatch:
    """Long-poll waits on the routes' tokens (see the module docstring)."""

    def __init__(self, lookup: Callable[[str], Route | None], key: bytes, *,
                 hold: float = HOLD, tick: float = TICK, per_client: int = PER_CLIENT,
                 total: int = TOTAL) -> None:
        self.lookup = lookup
        self.key = key
        self.hold = hold
        self.tick = tick
        self.per_client = per_client
        self.total = total
        self._waiters: dict[str, dict[asyncio.Future[None], str]] = {}
        self._held: Counter[str] = Counter()
        self._ticker: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Waits held now (all clients)."""
        return sum(self._held.values())

    def token(self, sub: str) -> tuple[str, str]:
        """(state, token) of the app at `sub` as the proxy serves it now."""
        route = self.lookup(sub)
        if route is None:
            return NOT_FOUND, NOT_FOUND
        if not route.serving:
            return route.state, route.state
        where = repr((route.app_id, route.upstreams)).encode()
        digest = hmac.new(self.key, where, hashlib.sha256).hexdigest()[:16]
        return route.state, f"{route.state}.{digest}"

    async def wait(self, sub: str, since: str | None, client: str) -> dict[str, Any]:
        """The answer to `state?since=`: at once, on a change, or after `hold` seconds."""
        state, token = self.token(sub)
        if since is None or since != token:
            return {"state": state, "token": token}
        if self._held[client] >= self.per_client or self.held >= self.total:
            return {"state": state, "token": token, "retry": RETRY}
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(sub, {})[future] = since
        self._held[client] += 1
        self._start_ticker()
        try:
            await asyncio.wait([future], timeout=self.hold)
        finally:
            self._held[client] -= 1
            if self._held[client] <= 0:
                del self._held[client]
            waiters = self._waiters.get(sub, {})
            waiters.pop(future, None)
            if not waiters:
                self._waiters.pop(sub, None)
            future.cancel()
        state, token = self.token(sub)
        return {"state": state, "token": token}

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while self._waiters:
            await asyncio.sleep(self.tick)
            for sub, waiters in list(self._waiters.items()):
                _, token = self.token(sub)
                for future, since in list(waiters.items()):
                    if since != token and not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        """Stop the ticker (the proxy's shutdown); held waits answer as they are."""
        for waiters in self._waiters.values():
            for future in waiters:
                if not future.done():
                    future.set_result(None)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
