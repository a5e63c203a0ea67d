"""A fake upstream for the proxy tests: an aiohttp server on a free loopback port that keeps
the requests its handlers record and holds a slow response until the test releases it.
Subclasses add their routes to `app` before `start`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Self

from aiohttp import web


class RecordingServer:
    """An aiohttp application served on 127.0.0.1 once `start` has run."""

    def __init__(self) -> None:
        self.requests: list[web.BaseRequest] = []
        self.release = asyncio.Event()
        self.app = web.Application()
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> Self:
        self.runner = web.AppRunner(self.app, shutdown_timeout=1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        assert self.runner is not None, "stop before start"
        await self.runner.cleanup()

    async def held_response(self, request: web.Request, first: bytes,
                            headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """Sends `first`, then waits for `release` before the rest and the end."""
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        await resp.write(first)
        await self.release.wait()
        await resp.write(b"the rest")
        await resp.write_eof()
        return resp
