"""View events from the proxy: one per new Streamlit session, written in batches.

The proxy calls `ViewRecorder.record(app_id, viewer_key)` when a browser opens an app's
session websocket (`/_stcore/stream`; `/stream` before Streamlit 1.18). `record` only
appends to an in-memory queue (no I/O, never blocks the request); a background task
(`run`) flushes the queue every `interval` seconds in a worker thread:

1. `backend.analytics.reports.record_views` writes the `ViewEvent` rows and the analytics
   aggregates in one transaction (it also drops events of unknown apps and reconnects
   within its own window);
2. `App.last_viewed_at` moves forward to the newest view of each app (the hibernation
   clock: a visit keeps a public app awake), one UPDATE per app per flush.

Reconnects are dropped before they are queued: a websocket that carries Streamlit's
previous session id (the third subprotocol entry) is the same session coming back (the
proxy checks that), and the same viewer on the same app within `dedupe_seconds` is not
counted again (reloads, several tabs opened at once).

A failed flush is logged and its events are retried with the next batch, up to
`max_pending` events; past that the oldest are dropped (analytics are not worth running
out of memory for). `close()` flushes what is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import col

from backend.analytics.reports import View, record_views
from backend.context import Context
from models import App

log = logging.getLogger("backend.analytics.views")

FLUSH_INTERVAL = 1.0
DEDUPE_SECONDS = 30.0
MAX_PENDING = 100_000
_RECENT_MAX = 50_000


def update_last_viewed(ctx: Context, newest: dict[int, datetime]) -> None:
    """App.last_viewed_at = max(itself, the newest view) for each app."""
    with ctx.engine.begin() as conn:
        for app_id, when in newest.items():
            conn.execute(update(App).where(
                col(App.id) == app_id,
                col(App.last_viewed_at).is_(None) | (col(App.last_viewed_at) < when))
                .values(last_viewed_at=when))


def write_views(ctx: Context, views: list[View]) -> int:
    """Record a batch (blocking; runs in a worker thread). Returns the views recorded."""
    if not views:
        return 0
    recorded = record_views(ctx, views)
    newest: dict[int, datetime] = {}
    for v in views:
        if v.app_id not in newest or v.time > newest[v.app_id]:
            newest[v.app_id] = v.time
    update_last_viewed(ctx, newest)
    return recorded


class ViewRecorder:
    def __init__(self, ctx: Context, *, interval: float = FLUSH_INTERVAL,
                 dedupe_seconds: float = DEDUPE_SECONDS, max_pending: int = MAX_PENDING,
                 writer: Callable[[Context, list[View]], int] = write_views,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.interval = interval
        self.dedupe_seconds = dedupe_seconds
        self.max_pending = max_pending
        self._writer = writer
        self._clock = clock
        self._pending: list[View] = []
        self._recent: OrderedDict[tuple[int, str], float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self.recorded = 0  # views written so far (for tests and the log)
        self.dropped = 0

    def record(self, app_id: int, viewer_key: str, when: datetime | None = None) -> bool:
        """Queue a view; False when it is a repeat of the same viewer and app too soon."""
        now = self._clock()
        pair = (app_id, viewer_key)
        last = self._recent.get(pair)
        if last is not None and now - last < self.dedupe_seconds:
            return False
        self._recent[pair] = now
        self._recent.move_to_end(pair)
        while len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)
        self._pending.append(View(app_id, viewer_key, when or datetime.now(UTC)))
        if len(self._pending) > self.max_pending:
            extra = len(self._pending) - self.max_pending
            del self._pending[:extra]
            self.dropped += extra
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what is queued now (in a worker thread); returns the views recorded."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                n = await asyncio.to_thread(self._writer, self.ctx, batch)
            except Exception:  # keep the events for the next flush
                log.exception("view_flush_failed events=%d", len(batch))
                self._pending = batch + self._pending
                return 0
            self.recorded += n
            log.debug("view_flush events=%d recorded=%d", len(batch), n)
            return n

    async def run(self) -> None:
        """Flush every `interval` seconds until `close()`; a flush under way finishes."""
        if self._stop is None:
            self._stop = asyncio.Event()
        stop = self._stop
        while not stop.is_set():
            try:  # the batching period, or an earlier stop
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
            await self.flush()

    def start(self) -> None:
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self.run(), name="view-recorder")

    async def close(self) -> None:
        """Stop the background task (letting a flush under way finish), then flush."""
        if self._task is not None:
            if self._stop is not None:
                self._stop.set()
            try:
                await asyncio.wait_for(self._task, 30)
            except TimeoutError:
                log.warning("view_flush_timeout pending=%d", self.pending)
            self._task = None
        await self.flush()
