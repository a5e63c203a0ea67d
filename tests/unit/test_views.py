"""backend.analytics.views: view events queued without I/O, deduplicated, written in batches by a
background flush (ViewEvent rows, analytics aggregates, App.last_viewed_at)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import select

from backend.analytics import store as analytics_store
from backend.analytics.reports import View
from backend.analytics.views import ViewRecorder, write_views
from backend.context import Context, open_context
from backend.platform.settings import Settings
from models import App, ViewEvent, session_scope
from tests.support import overlay_support as rows
from tests.support.supervisor_harness import wait_until


def _events(ctx: Context) -> list[ViewEvent]:
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(ViewEvent).order_by(ViewEvent.id)).all())


def _last_viewed(ctx: Context, app_id: int) -> datetime | None:
    with session_scope(ctx.engine) as s:
        return s.get(App, app_id).last_viewed_at


def test_record_dedupes_and_does_no_io(ctx: Context) -> None:
    now = [100.0]
    calls: list[int] = []
    rec = ViewRecorder(ctx, dedupe_seconds=30, clock=lambda: now[0],
                       writer=lambda c, views: calls.append(len(views)) or len(views))
    assert rec.record(1, "u:1") is True
    assert rec.record(1, "u:1") is False  # a reconnect or reload of the same viewer
    assert rec.record(1, "v:abcdefghijklmnopqrstuv") is True
    assert rec.record(2, "u:1") is True  # another app
    now[0] += 31
    assert rec.record(1, "u:1") is True  # later: a new view
    assert rec.pending == 4 and calls == []  # nothing written yet

    async def flush() -> None:
        assert await rec.flush() == 4
        assert await rec.flush() == 0
    asyncio.run(flush())
    assert calls == [4] and rec.pending == 0  # one batch


def test_pending_is_bounded(ctx: Context) -> None:
    rec = ViewRecorder(ctx, max_pending=10, dedupe_seconds=0)
    for i in range(25):
        rec.record(1, f"u:{i}")
    assert rec.pending == 10 and rec.dropped == 15


def test_flush_writes_events_and_last_viewed(ctx: Context) -> None:
    ws = rows.workspace(ctx, "acme", [])
    a, b = rows.app(ctx, ws, "one"), rows.app(ctx, ws, "two")
    rec = ViewRecorder(ctx)
    rec.record(a, "u:1")
    rec.record(a, "v:visitor-id-0123456789")
    rec.record(b, "u:1")
    rec.record(999, "u:1")  # an app that does not exist (deleted meanwhile): dropped

    async def flush() -> int:
        return await rec.flush()
    assert asyncio.run(flush()) == 3
    got = sorted((e.app_id, e.viewer_key) for e in _events(ctx))
    assert got == [(a, "u:1"), (a, "v:visitor-id-0123456789"), (b, "u:1")]
    assert _last_viewed(ctx, a) is not None and _last_viewed(ctx, b) is not None


def test_last_viewed_only_moves_forward(ctx: Context) -> None:
    from backend.analytics.reports import View
    ws = rows.workspace(ctx, "acme", [])
    a = rows.app(ctx, ws, "one")
    now = datetime.now(UTC)
    write_views(ctx, [View(a, "u:1", now)])
    write_views(ctx, [View(a, "u:2", now - timedelta(hours=1))])  # a late, older event
    assert abs((_last_viewed(ctx, a).replace(tzinfo=UTC) - now).total_seconds()) < 1


def test_failed_flush_keeps_events_and_close_flushes(ctx: Context) -> None:
    fail = [True]
    written: list[list] = []

    def writer(c: Any, views: list[Any]) -> int:
        if fail[0]:
            raise RuntimeError("database is locked")
        written.append(list(views))
        return len(views)
    rec = ViewRecorder(ctx, writer=writer, interval=3600)

    async def scenario() -> None:
        rec.start()
        rec.record(1, "u:1")
        assert await rec.flush() == 0 and rec.pending == 1  # kept for the next flush
        fail[0] = False
        rec.record(1, "u:2")
        await rec.close()  # stops the task and flushes what is left
    asyncio.run(scenario())
    assert [[v.viewer_key for v in batch] for batch in written] == [["u:1", "u:2"]]


def test_background_task_flushes_by_itself(ctx: Context) -> None:
    written = asyncio.Event

    async def scenario() -> None:
        done = written()
        rec = ViewRecorder(ctx, interval=0.05,
                           writer=lambda c, v: (loop.call_soon_threadsafe(done.set), len(v))[1])
        loop = asyncio.get_running_loop()
        rec.start()
        rec.record(1, "u:1")
        await asyncio.wait_for(done.wait(), 5)
        await rec.close()
        assert rec.recorded == 1
    asyncio.run(scenario())


def test_close_right_after_start_returns_at_once(ctx: Context) -> None:
    async def scenario() -> None:
        rec = ViewRecorder(ctx, interval=3600, writer=lambda c, v: len(v))
        rec.start()
        rec.record(1, "u:1")
        await asyncio.wait_for(rec.close(), 5)
        assert rec.recorded == 1 and rec.pending == 0
    asyncio.run(scenario())


def test_two_writers_count_a_reconnect_once_on_postgresql(
        settings: Settings, new_postgres_database: Callable[[], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two proxies flush at the same moment; one has the viewer's first session, the other
    its reconnect. The second writer waits for the first (a transaction advisory lock per
    app), then sees its view and drops the reconnect: one view, not two."""
    ctx = open_context(dataclasses.replace(settings, database_url=new_postgres_database()))
    a = rows.app(ctx, rows.workspace(ctx, "acme", []), "one")
    now = datetime.now(UTC)
    first_read, second_read = threading.Event(), threading.Event()
    real_last_views = analytics_store._last_views

    def second_writer_waits_for_a_lock() -> bool:
        with ctx.engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())")).scalar())

    def last_views(conn: Any, pairs: Any) -> Any:
        found = real_last_views(conn, pairs)
        if threading.current_thread().name == "first":
            first_read.set()  # hold the transaction open until the second writer is blocked
            wait_until(lambda: second_read.is_set() or second_writer_waits_for_a_lock(), 30,
                       "the second writer to read or to wait")
        else:
            second_read.set()
        return found
    monkeypatch.setattr(analytics_store, "_last_views", last_views)
    recorded: dict[str, int] = {}

    def write(name: str, view: View) -> None:
        recorded[name] = analytics_store.record_views(ctx, [view])

    first = threading.Thread(target=write, name="first", args=("first", View(a, "v:x", now)))
    first.start()
    assert first_read.wait(30)
    second = threading.Thread(target=write, name="second",
                              args=("second", View(a, "v:x", now + timedelta(seconds=5))))
    second.start()
    first.join(60)
    second.join(60)
    assert recorded == {"first": 1, "second": 0}
    assert len(_events(ctx)) == 1
