"""Helpers the benchmarks share."""

from __future__ import annotations

import asyncio
import http.client
import time


def healthy(port: int, host: str | None = None) -> bool:
    """True when `/_stcore/health` on 127.0.0.1:`port` answers 200 (new connection; the
    Host header picks an app through our proxy)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/_stcore/health", headers={"Host": host or f"127.0.0.1:{port}"})
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


async def wait_health(port: int, timeout: float = 120, step: float = 0.01) -> None:
    """Poll `healthy(port)` every `step` s until it answers; RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not healthy(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} never healthy")
        await asyncio.sleep(step)
