"""Waiting for a Streamlit server to answer `/_stcore/health`, shared by app instances and
the dashboard processes. Callers give the deadline and how to tell that the server died."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp


async def wait_for_health(url: str, alive: Callable[[], Awaitable[bool]], timeout: float,
                          step: float = 0.05,
                          clock: Callable[[], float] = time.monotonic) -> bool | None:
    """True once `url` answers 200; False as soon as `alive()` says the server is gone;
    None when `timeout` seconds pass first."""
    deadline = clock() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while clock() < deadline:
            if not await alive():
                return False
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(step)  # polling interval of a health probe
    return None
