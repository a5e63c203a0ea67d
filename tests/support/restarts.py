"""Readers for platform-restart tests: a `git` on PATH that records each call, what each
app runs from (commit, env, Deployed time, tree), build and event counts, the windows
between "Starting from its checkout" and "Serving" and how many overlap, and apps deployed
and waited for until they serve."""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from backend.apps import service as apps
from backend.context import Context
from models import AppEvent, Build, session_scope
from tests.support.supervisor_harness import SupervisorProcess, all_apps, wait_for_state

STARTING_FROM_DISK = "Starting from its checkout and environment"


def recording_git(bin_dir: Path, calls: Path) -> str:
    """A PATH whose first `git` appends its arguments to `calls`, then runs the real git."""
    real = shutil.which("git")
    assert real, "git is needed"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "git"
    shim.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec "{real}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def snapshot(ctx: Context) -> dict[int, tuple[str, str, datetime | None, str]]:
    """app id -> (commit, env hash, last deployed, tree the instance runs in)."""
    return {a.id: (a.commit, a.env_hash, a.last_deployed_at,
                   json.loads(a.runtime_state or "{}").get("tree", ""))
            for a in all_apps(ctx) if a.id is not None}


def build_count(ctx: Context) -> int:
    """How many build records there are."""
    with session_scope(ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(Build)).one())


def last_event_id(ctx: Context) -> int:
    """The newest app event's id (0 without events): a mark to read events after."""
    with session_scope(ctx.engine) as s:
        return int(s.exec(select(func.max(AppEvent.id))).one() or 0)


def start_windows(ctx: Context, after: int) -> list[tuple[datetime, datetime]]:
    """Per app, from its "Starting from its checkout" event to its next `running` event."""
    with session_scope(ctx.engine) as s:
        events = list(s.exec(select(AppEvent).where(col(AppEvent.id) > after)
                             .order_by(col(AppEvent.id))))
    began: dict[int, datetime] = {}
    windows = []
    for e in events:
        if e.reason.startswith(STARTING_FROM_DISK):
            began[e.app_id] = e.time
        elif e.to_state == "running" and e.app_id in began:
            windows.append((began.pop(e.app_id), e.time))
    return windows


def most_at_once(windows: list[tuple[datetime, datetime]]) -> int:
    """The largest number of windows open at one moment (an end before a start at a tie)."""
    points = sorted([(a, 1) for a, _ in windows] + [(b, -1) for _, b in windows])
    now = best = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


def all_serving(ctx: Context) -> bool:
    """Every app is running with an instance recorded."""
    return all(a.state == "running" and a.runtime_state not in ("", "{}")
               for a in all_apps(ctx))


def git_calls(calls: Path) -> str:
    """What the recording `git` was asked, one call a line ('' when never)."""
    return calls.read_text() if calls.exists() else ""


def deploy_running(ctx: Context, admin: Any, repo_url: str, subdomains: list[str],
                   sup: SupervisorProcess, timeout: float) -> list[Any]:
    """Deploys `repo_url` under each subdomain and waits until every app runs."""
    views = [apps.deploy_app(ctx, admin, repo_url=repo_url, subdomain=sub)
             for sub in subdomains]
    for view in views:
        app = wait_for_state(ctx, view.id, {"running", "crashed", "build_failed"},
                             timeout=timeout, sup=sup)
        assert app.state == "running", app.state_reason
    return views
