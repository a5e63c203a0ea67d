"""Build records and build logs: one `Build` row per clone-and-environment attempt.

A build is `running` while a supervisor works on it, then `succeeded` or `failed`; one left
`running` by a supervisor that died is marked `interrupted` at the next start (and the push
or deploy that caused it is picked up again). A `failed` build of a commit is not retried
automatically: polling skips that commit until a new one is pushed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlmodel import col, select, update

from backend.context import Context
from models import App, Build, id_of, session_scope, utcnow

if TYPE_CHECKING:
    from supervisor.control.leader import Fence


class BuildLog:
    """Appends timestamped lines to an app's build log."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        self._fh.write(f"[{stamp}] {line}\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def record(ctx: Context, app_id: int, commit: str, dep_hash: str,
           fence: Fence | None = None) -> int:
    """A `running` build row; with `fence`, only while we hold the lease (else Fenced)."""
    with session_scope(ctx.engine) as s:
        if fence is not None:
            fence.check(s)
        build = Build(app_id=app_id, commit=commit, dep_hash=dep_hash)
        s.add(build)
        s.flush()
        return id_of(build)


def finish(ctx: Context, build_id: int | None, status: str, error: str = "",
           reused: bool = False, fence: Fence | None = None) -> None:
    """The build's outcome; with `fence`, only while we hold the lease (a fenced leader
    must not turn the new leader's `interrupted` into `failed`: polling skips failed
    commits)."""
    if build_id is None:
        return
    with session_scope(ctx.engine) as s:
        if fence is not None:
            fence.check(s)
        build = s.get(Build, build_id)
        if build is not None:
            build.status, build.error, build.reused_env = status, error, reused
            build.finished_at = utcnow()
            s.add(build)


def commit_failed(ctx: Context, app_id: int, commit: str) -> bool:
    """True when a build of `commit` for this app failed (so polling does not retry it)."""
    with session_scope(ctx.engine) as s:
        return s.exec(select(Build.id).where(Build.app_id == app_id, Build.commit == commit,
                                             Build.status == "failed")).first() is not None


def mark_interrupted(ctx: Context) -> int:
    """Builds a dead supervisor left `running`: mark them `interrupted`; returns how many.

    A build whose result already serves (the app runs that commit on that environment: a
    supervisor killed after a zero-downtime switch, while the old instance drained) is
    marked `succeeded` instead, so the history does not call a live deploy interrupted."""
    with session_scope(ctx.engine) as s:
        served = select(App.id).where(col(App.id) == col(Build.app_id),
                                      col(App.state) == "running",
                                      col(App.commit) == col(Build.commit),
                                      col(App.env_hash) == col(Build.dep_hash)).exists()
        s.exec(update(Build).where(col(Build.status) == "running", served)
               .values(status="succeeded", finished_at=utcnow())
               .execution_options(synchronize_session=False))
        result = s.exec(update(Build).where(col(Build.status) == "running")
                        .values(status="interrupted", finished_at=utcnow(),
                                error="The supervisor stopped during this build."))
        return result.rowcount or 0
