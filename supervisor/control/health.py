"""Waiting for a Streamlit server to answer its health endpoint, shared by app instances and
the dashboard processes. Callers give the deadline and how to tell that the server died.

Streamlit moved its own endpoints under `/_stcore/` in 1.18 (health, the session
websocket); the releases before it, which public apps still pin, answer `/healthz` and
`/stream`. An app's Streamlit version is whatever its requirements resolve to, so the
endpoint is found by asking, not by reading the version: `/_stcore/health` first, and
`/healthz` once the server has shown it lacks the new path (a 404 from a listening server).
`HealthPaths` remembers per instance address which path that server has, so every later
check of it is one request.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import aiohttp

CURRENT_HEALTH = "/_stcore/health"
LEGACY_HEALTH = "/healthz"  # Streamlit before 1.18
HEALTH_PATHS = (CURRENT_HEALTH, LEGACY_HEALTH)
CURRENT_STREAM = "/_stcore/stream"
LEGACY_STREAM = "/stream"  # Streamlit before 1.18
STREAM_PATHS = frozenset({CURRENT_STREAM, LEGACY_STREAM})
_MEMO_MAX = 4096


def is_stream_path(path: str) -> bool:
    """Is `path` the session websocket of some Streamlit release (new or legacy)?"""
    return path in STREAM_PATHS


def healthy_answer(status: int, body: bytes) -> bool:
    """A health endpoint's "ready" answer: 200 with the body `ok` (a page served for an
    unknown path is not one)."""
    return status == 200 and body.strip() == b"ok"


class HealthPaths:
    """Which health path each instance address has, once its server has shown it. Bounded:
    the oldest addresses are forgotten first (ports are reused by later instances, and a
    forgotten one costs only a second request)."""

    def __init__(self, limit: int = _MEMO_MAX) -> None:
        self._known: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def get(self, base_url: str) -> str | None:
        return self._known.get(base_url)

    def remember(self, base_url: str, path: str) -> None:
        self._known[base_url] = path
        self._known.move_to_end(base_url)
        while len(self._known) > self._limit:
            self._known.popitem(last=False)

    def forget(self, base_url: str) -> None:
        self._known.pop(base_url, None)


async def check_health(http: aiohttp.ClientSession, base_url: str, memo: HealthPaths
                       ) -> bool:
    """One health check of the server at `base_url` (`http://host:port`): True when it
    answers ready. One request once `memo` knows the server's path; before that the new
    path, then the legacy one when the new one is missing (404)."""
    known = memo.get(base_url)
    for path in (known,) if known else HEALTH_PATHS:
        try:
            async with http.get(base_url + path, allow_redirects=False) as resp:
                body = await resp.content.read(64)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError):
            return False  # not listening yet (or gone): nothing learnt about its paths
        if status != 404:
            memo.remember(base_url, path)  # the server has this path (ready or not yet)
            return healthy_answer(status, body)
        if known:
            memo.forget(base_url)  # another server took the address: ask afresh next time
    return False


async def wait_for_streamlit(base_url: str, alive: Callable[[], Awaitable[bool]],
                             within: float, memo: HealthPaths, step: float = 0.05,
                             clock: Callable[[], float] = time.monotonic) -> bool | None:
    """True once the Streamlit server at `base_url` answers its health endpoint (whichever
    of `HEALTH_PATHS` it has); False as soon as `alive()` says it is gone; None when
    `within` seconds pass first. The deadline is kept here, on `clock`, rather than by the
    caller's asyncio.timeout: running out is an answer (None), not a cancellation."""
    deadline = clock() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while clock() < deadline:
            if not await alive():
                return False
            if await check_health(http, base_url, memo):
                return True
            await asyncio.sleep(step)  # polling interval of a health probe
    return None


async def wait_for_health(url: str, alive: Callable[[], Awaitable[bool]], within: float,
                          step: float = 0.05,
                          clock: Callable[[], float] = time.monotonic) -> bool | None:
    """True once `url` answers 200; False as soon as `alive()` says the server is gone;
    None when `within` seconds pass first. For a server whose Streamlit we ship (the
    dashboard); hosted apps use `wait_for_streamlit`."""
    deadline = clock() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while clock() < deadline:
            if not await alive():
                return False
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return True
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(step)  # polling interval of a health probe
    return None
