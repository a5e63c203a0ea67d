"""Leader election between supervisors sharing one database, and the node registry.

Several supervisors may run against one database (docs/scale-out.md); all of them serve the
proxy, the API and the dashboard, but only the leader runs lifecycle actions and scheduled
jobs. The leader holds a lease: the `cluster_lease` row named "leader" (models/cluster.py)
with a holder, an expiry and a fencing `epoch`. It works on SQLite and PostgreSQL alike.

- Taking over is one compare-and-set: `UPDATE … SET holder=me, epoch=epoch+1 WHERE
  epoch=<the epoch read>`; of several followers trying at once exactly one wins.
- A follower may take over when the lease expired (`lease_seconds` after the last renewal),
  or at once when the holder is provably gone: it ran on this host and its process is dead
  (pid and process start time), or, on PostgreSQL, the session-level advisory lock every
  leader holds became free (the database frees it when the leader's connection ends, so a
  leader killed on another host is replaced within a follower poll too).
- Fencing: the leader renews with `WHERE holder=me AND epoch=<mine>` at every reconcile
  pass, before it starts actions (`confirm()`); when that fails, or its own clock says
  the lease ran out without a renewal, it stops acting at once (the reconciler cancels its
  workers and leaves instances running) and becomes a follower. A leader frozen longer
  than its lease (SIGSTOP, a VM pause) runs on when it wakes before any of that: so every
  lifecycle write is fenced too (`Fence`, used by supervisor/control/lifecycle.py): its
  transaction first checks `holder=me AND epoch=<mine>` and holds that row until it
  commits (`SELECT … FOR SHARE` on PostgreSQL; `BEGIN IMMEDIATE` on SQLite, which
  serialises writers), so a take-over is ordered strictly before or after it; a refused
  write raises `Fenced`, and the action stops (and stops an instance it started but could
  not record).
- A new leader adopts what runs before acting (the reconciler's `adopt()`), so the
  instance the old leader started is kept, not started twice.

Renewal every `lease_seconds / 3`; followers poll every `min(lease_seconds / 5, 0.5)` s.
Wall-clock expiry needs hosts whose clocks agree to well under `lease_seconds` (NTP).

`NodeRegistry` keeps a `cluster_node` row per process (supervisor or standalone proxy)
with a heartbeat and, for supervisors, the dashboard and panel addresses that standalone
proxies forward to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psutil
from sqlalchemy import Connection, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col, select

from backend.context import Context
from models import ClusterLease, ClusterNode, session_scope, utcnow

log = logging.getLogger("supervisor.control.leader")
LEASE = "leader"
ADVISORY_KEY = 0x5374_436C  # "StCl": the advisory lock id of the leader lease
EPOCH_ZERO = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Me:
    node_id: str
    host: str
    pid: int
    pid_started: float


def me(node_id: str = "") -> Me:
    host = socket.gethostname()
    pid = os.getpid()
    return Me(node_id or f"{host}-{pid}", host, pid, psutil.Process(pid).create_time())


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def process_gone(host: str, pid: int, started: float) -> bool:
    """Is the process (on this host) that held the lease gone? False for other hosts."""
    if host != socket.gethostname() or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE or abs(proc.create_time() - started) > 1
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


class Fenced(BaseException):
    """Another node holds the lease at a newer epoch: this node's action must stop where it
    is. A BaseException like asyncio.CancelledError, so that an action's catch-all
    (`except Exception` → "build failed", an email) does not run for it: the app is the new
    leader's now."""


def _sqlite_in_transaction(conn: Connection) -> bool:
    """Whether pysqlite already began a transaction on this connection (its sqlite3
    connection's `in_transaction`, which SQLAlchemy's DBAPI protocol does not declare)."""
    return bool(getattr(conn.connection.dbapi_connection, "in_transaction", False))


@dataclass(frozen=True)
class Fence:
    """The lease as held by `node_id` at `epoch`: checked inside lifecycle writes."""
    node_id: str
    epoch: int

    def check(self, session: Session, hold: bool = True) -> None:
        """Raise Fenced unless the lease is still ours at our epoch. Call it first in the
        write's transaction: with `hold`, the row stays locked until that transaction ends
        (PostgreSQL: FOR SHARE, a take-over's UPDATE waits; SQLite: BEGIN IMMEDIATE, the
        database's one writer), so no take-over commits between the check and the write."""
        conn = session.connection()
        query = select(ClusterLease.epoch).where(
            col(ClusterLease.name) == LEASE, col(ClusterLease.holder) == self.node_id,
            col(ClusterLease.epoch) == self.epoch)
        if hold and conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        elif hold and conn.dialect.name == "sqlite" \
                and not _sqlite_in_transaction(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite would begin at the first write
        if conn.execute(query).first() is None:
            log.warning("fenced: node=%s epoch=%s is not the leader any more; write refused",
                        self.node_id, self.epoch)
            raise Fenced(f"node {self.node_id} lost the lease of epoch {self.epoch}")


class Leadership:
    """This process's view of the leader lease; `run()` keeps it up to date."""

    def __init__(self, ctx: Context, node: Me | None = None,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.ctx = ctx
        self.me = node or me(ctx.settings.node_id)
        self.ttl = max(ctx.settings.lease_seconds, 0.5)
        self.poll = min(self.ttl / 5, 0.5)
        self.epoch = 0
        self._deadline = 0.0  # monotonic time past which we no longer count as leader
        self._held = False
        self.on_change = on_change or (lambda leading: None)
        self._pg = ctx.engine.dialect.name == "postgresql"
        self._lock_conn: Connection | None = None
        self._locked = False
        self._stopping = False
        self._step_lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._held and time.monotonic() < self._deadline

    def fence(self) -> Fence:
        """The fence of our current term (lifecycle writes check it)."""
        return Fence(self.me.node_id, self.epoch)

    # One step (blocking; run in a worker thread) -------------------------------------
    def _ensure_row(self) -> ClusterLease:
        with session_scope(self.ctx.engine) as s:
            row = s.get(ClusterLease, LEASE)
            if row is not None:
                return row
        try:
            with session_scope(self.ctx.engine) as s:
                s.add(ClusterLease(name=LEASE, expires_at=EPOCH_ZERO))
        except IntegrityError:
            pass  # another node made it first
        with session_scope(self.ctx.engine) as s:
            made = s.get(ClusterLease, LEASE)
            if made is None:
                raise RuntimeError("The leader lease row vanished right after it was made: "
                                   "something else deletes cluster_lease rows; stop it.")
            return made

    def _advisory(self, want: bool) -> bool:
        """PostgreSQL: hold (want=True) or give up the advisory lock; True while held."""
        if not self._pg:
            return False
        try:
            if self._lock_conn is not None:
                self._lock_conn.execute(text("SELECT 1"))  # is our session still there?
        except SQLAlchemyError:
            self._drop_lock_conn()
        if want and not self._locked:
            if self._lock_conn is None:
                self._lock_conn = self.ctx.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT")
            self._locked = bool(self._lock_conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
        elif not want and self._locked and self._lock_conn is not None:
            self._lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            self._locked = False
        return self._locked

    def _drop_lock_conn(self) -> None:
        if self._lock_conn is not None:
            try:  # a real close: back in the pool, the session (and its lock) would live on
                self._lock_conn.invalidate()
                self._lock_conn.close()
            except SQLAlchemyError:
                pass
        self._lock_conn, self._locked = None, False

    def _renew(self) -> bool:
        start = time.monotonic()
        now = utcnow()
        with self.ctx.engine.begin() as conn:
            done = conn.execute(update(ClusterLease).where(
                col(ClusterLease.name) == LEASE, col(ClusterLease.holder) == self.me.node_id,
                col(ClusterLease.epoch) == self.epoch)
                .values(expires_at=now + timedelta(seconds=self.ttl))).rowcount == 1
        if done:
            self._deadline = start + self.ttl * 0.9
            self._advisory(True)  # (again) after a lost session: speeds up the next failover
        return done

    def _try_take(self) -> bool:
        row = self._ensure_row()
        now = utcnow()
        free = (not row.holder or _aware(row.expires_at) <= now
                or process_gone(row.host, row.pid, row.pid_started))
        locked = self._advisory(True)
        if not (free or locked):
            return False
        start = time.monotonic()
        m = self.me
        with self.ctx.engine.begin() as conn:
            won = conn.execute(update(ClusterLease).where(
                col(ClusterLease.name) == LEASE, col(ClusterLease.epoch) == row.epoch)
                .values(holder=m.node_id, host=m.host, pid=m.pid, pid_started=m.pid_started,
                        epoch=row.epoch + 1, acquired_at=now,
                        expires_at=now + timedelta(seconds=self.ttl))).rowcount == 1
        if not won:
            self._advisory(False)
            return False
        self.epoch, self._deadline = row.epoch + 1, start + self.ttl * 0.9
        log.info("leader node=%s epoch=%s (previous holder %s, %s)", m.node_id, self.epoch,
                 row.holder or "none", "its lease expired" if row.holder and
                 _aware(row.expires_at) <= now else "gone" if row.holder else "free")
        return True

    def step(self) -> bool:
        """Renew or try to take the lease once; returns whether we lead afterwards."""
        try:
            if self._held:
                ok = self._renew() and time.monotonic() < self._deadline
            else:
                ok = self._try_take()
        except SQLAlchemyError as e:
            log.warning("lease step failed: %s", e)
            ok = self._held and time.monotonic() < self._deadline
        if not ok and self._held:
            log.warning("lost the leader lease node=%s epoch=%s", self.me.node_id, self.epoch)
            try:
                self._advisory(False)
            except SQLAlchemyError:
                self._drop_lock_conn()
        self._held = ok
        return ok

    def _locked_step(self) -> bool:
        with self._step_lock:  # confirm() and run() may overlap; the lock conn is not shared
            return self.step()

    def release(self) -> None:
        """On a clean shutdown: let the next supervisor take over without waiting."""
        if self._held:
            try:
                with self.ctx.engine.begin() as conn:
                    conn.execute(update(ClusterLease).where(
                        col(ClusterLease.name) == LEASE,
                        col(ClusterLease.holder) == self.me.node_id,
                        col(ClusterLease.epoch) == self.epoch)
                        .values(expires_at=EPOCH_ZERO, holder=""))
            except SQLAlchemyError:
                pass
        self._held = False
        self._drop_lock_conn()

    # Async ------------------------------------------------------------------------------
    async def confirm(self) -> bool:
        """Fencing check before actions: renew now; False once another node took over."""
        return await self._step_async() if self._held else False

    async def step_once(self) -> bool:
        """Renew or try to take the lease now; whether we lead."""
        return await self._step_async()

    async def _step_async(self) -> bool:
        before = self._held
        ok = await asyncio.to_thread(self._locked_step)
        if ok != before:
            self.on_change(ok)
        return ok

    async def run(self) -> None:
        while not self._stopping:
            await self._step_async()
            wait = self.ttl / 3 if self._held else self.poll
            if self._held:  # never sleep past our own deadline
                wait = min(wait, max(self._deadline - time.monotonic() - 0.05, 0.01))
            await asyncio.sleep(wait)  # the lease period, not synchronisation

    async def close(self) -> None:
        self._stopping = True

        def release() -> None:
            with self._step_lock:
                self.release()
        await asyncio.to_thread(release)


def current_leader(ctx: Context) -> ClusterLease | None:
    with session_scope(ctx.engine) as s:
        row = s.get(ClusterLease, LEASE)
    if row is None or not row.holder or _aware(row.expires_at) <= utcnow():
        return None
    return row


# Node registry -------------------------------------------------------------------------
def _address(value: tuple[str, int] | None) -> str:
    return f"{value[0]}:{value[1]}" if value else ""


def parse_address(value: str) -> tuple[str, int] | None:
    if not value or ":" not in value:
        return None
    host, port = value.rsplit(":", 1)
    return host, int(port)


class NodeRegistry:
    """This process's `cluster_node` row: `beat()` upserts it (blocking)."""

    def __init__(self, ctx: Context, node: Me, role: str, engine: str = "",
                 python_versions: list[str] | None = None) -> None:
        self.ctx = ctx
        self.node = node
        self.row = ClusterNode(node_id=node.node_id, role=role, host=node.host, pid=node.pid,
                               engine=engine, python_versions=json.dumps(python_versions or []))

    def beat(self, dashboard: tuple[str, int] | None = None,
             panel: tuple[str, int] | None = None) -> None:
        try:
            with session_scope(self.ctx.engine) as s:
                row = s.get(ClusterNode, self.node.node_id) or ClusterNode(
                    node_id=self.node.node_id, started_at=utcnow())
                for name in ("role", "host", "pid", "engine", "python_versions"):
                    setattr(row, name, getattr(self.row, name))
                row.dashboard_address, row.panel_address = _address(dashboard), _address(panel)
                row.heartbeat_at = utcnow()
                s.add(row)
        except SQLAlchemyError as e:
            log.warning("node heartbeat failed: %s", e)

    def remove(self) -> None:
        try:
            with session_scope(self.ctx.engine) as s:
                row = s.get(ClusterNode, self.node.node_id)
                if row is not None:
                    s.delete(row)
        except SQLAlchemyError:
            pass


def live_nodes(ctx: Context, within: float = 30.0) -> list[ClusterNode]:
    since = utcnow() - timedelta(seconds=within)
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(ClusterNode).where(
            col(ClusterNode.heartbeat_at) >= since)).all())
