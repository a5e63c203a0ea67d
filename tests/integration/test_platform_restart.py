"""A platform restart is a restart, not a redeploy: a supervisor with 20 running apps is
stopped the Ctrl-C way (SIGINT stops the apps) and started again. Every app serves again
from its checkout and environment on disk: git is never run (a `git` on PATH that records
each call), no build record is added, each app keeps its commit, tree and "Deployed" time;
and at most `start_concurrency` apps are between "Starting from its checkout" and "Serving"
at any moment (the apps' own event times, swept). An app whose checkout went missing is
deployed afresh instead, and its build log says why."""

from __future__ import annotations

import dataclasses
import json
import shutil

import psutil
import pytest

from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings import Settings
from tests.support.instances import http_get
from tests.support.restarts import (
    all_serving,
    build_count,
    deploy_running,
    git_calls,
    last_event_id,
    most_at_once,
    recording_git,
    snapshot,
    start_windows,
)
from tests.support.supervisor_harness import (
    SupervisorProcess,
    all_apps,
    load_app,
    wait_for_state,
    wait_until,
)

APPS = 20
LIMIT = 3



def pids(ctx: Context) -> dict[int, int]:
    return {a.id: json.loads(a.runtime_state)["instance"]["pid"]
            for a in all_apps(ctx) if a.id is not None and a.runtime_state not in ("", "{}")}


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


@pytest.fixture
def restart_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, git_poll_interval=0.0, start_concurrency=LIMIT,
                               health_timeout=180.0)


def test_ctrl_c_and_start_again_rebuilds_nothing_and_staggers_starts(
        restart_settings, admin, hello_repo, tmp_path, monkeypatch) -> None:
    settings = restart_settings
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        deploy_running(ctx, admin, hello_repo.url, [f"r{i:02d}" for i in range(APPS)], sup,
                       timeout=600)
    finally:
        sup.stop()  # SIGINT, as Ctrl-C: the apps stop too
    before, builds, first_pids = snapshot(ctx), build_count(ctx), pids(ctx)
    assert len(before) == APPS and builds >= APPS
    assert all(gone(pid) for pid in first_pids.values()) or not first_pids

    calls = tmp_path / "git-calls.txt"
    monkeypatch.setenv("PATH", recording_git(tmp_path / "bin", calls))
    mark = last_event_id(ctx)
    sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
    try:
        wait_until(lambda: all_serving(ctx), 600, "every app to serve again", sup)
        status, _ = http_get(settings.port, f"r07.localhost:{settings.port}")
        assert status == 200
    finally:
        sup.stop()
    called = git_calls(calls)
    assert called == "", f"git ran during the restart:\n{called}"
    assert build_count(ctx) == builds, "no build is recorded by a restart"
    assert snapshot(ctx) == before, "same commit, environment, tree and Deployed time"
    windows = start_windows(ctx, mark)
    assert len(windows) == APPS, "every app started from its checkout"
    assert most_at_once(windows) <= LIMIT


def test_a_missing_checkout_is_deployed_again_and_the_log_says_why(
        restart_settings, admin, hello_repo, tmp_path) -> None:
    settings = restart_settings
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        kept = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="kept")
        lost = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="lost")
        for view in (kept, lost):
            assert wait_for_state(ctx, view.id, {"running", "crashed", "build_failed"},
                                  sup=sup).state == "running"
    finally:
        sup.stop()
    deployed = {v.id: load_app(ctx, v.id).last_deployed_at for v in (kept, lost)}
    builds = build_count(ctx)
    app_dir = settings.apps_path / str(lost.id)
    for tree in app_dir.glob("src-*"):
        shutil.rmtree(tree)
    sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
    try:
        for view in (kept, lost):
            wait_until(lambda v=view: (a := load_app(ctx, v.id)) and a.state == "running"
                       and a.runtime_state not in ("", "{}"), 300, "the apps to serve", sup)
    finally:
        sup.stop()
    assert build_count(ctx) == builds + 1, "one fresh deploy: the app whose checkout was lost"
    assert load_app(ctx, kept.id).last_deployed_at == deployed[kept.id]
    assert load_app(ctx, lost.id).last_deployed_at != deployed[lost.id]
    build_log = (settings.logs_path / str(lost.id) / "build.log").read_text()
    assert "its checkout is missing. Deploying it again" in build_log


def test_ctrl_c_while_apps_wait_their_turn_rebuilds_nothing(
        restart_settings, admin, hello_repo, tmp_path, monkeypatch) -> None:
    """Stopped again while some apps still wait for a start slot (one at a time here): the
    next start starts those from disk too."""
    settings = dataclasses.replace(restart_settings, start_concurrency=1)
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        deploy_running(ctx, admin, hello_repo.url, [f"w{i}" for i in range(4)], sup,
                       timeout=300)
    finally:
        sup.stop()
    builds, before = build_count(ctx), snapshot(ctx)
    calls = tmp_path / "git-calls.txt"
    monkeypatch.setenv("PATH", recording_git(tmp_path / "bin", calls))
    sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
    try:
        wait_until(lambda: sum(a.state == "starting" and a.state_reason.startswith(
            "The platform restarted; waiting") for a in all_apps(ctx)) >= 2, 120,
            "apps waiting for their turn", sup, interval=0.01)
    finally:
        sup.stop()  # Ctrl-C again, mid-restart
    assert any(a.state == "starting" for a in all_apps(ctx))
    sup = SupervisorProcess(settings, tmp_path / "sup3.log").start()
    try:
        wait_until(lambda: all_serving(ctx), 300, "every app to serve again", sup)
    finally:
        sup.stop()
    called = git_calls(calls)
    assert called == "", f"git ran during the restarts:\n{called}"
    assert build_count(ctx) == builds
    assert snapshot(ctx) == before


def test_ctrl_c_restart_rebuilds_nothing_on_every_engine(
        engine_settings, admin, hello_repo, tmp_path, monkeypatch) -> None:
    """The same on each engine: the Docker engines start a new container of the kept env
    image on the kept checkout."""
    settings = dataclasses.replace(engine_settings, git_poll_interval=0.0,
                                   health_timeout=180.0)
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        deploy_running(ctx, admin, hello_repo.url, [f"e{i}" for i in range(2)], sup,
                       timeout=600)
    finally:
        sup.stop()
    builds, before = build_count(ctx), snapshot(ctx)
    calls = tmp_path / "git-calls.txt"
    monkeypatch.setenv("PATH", recording_git(tmp_path / "bin", calls))
    mark = last_event_id(ctx)
    sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
    try:
        wait_until(lambda: all_serving(ctx), 300, "every app to serve again", sup)
        assert http_get(settings.port, f"e1.localhost:{settings.port}")[0] == 200
    finally:
        sup.stop()
    called = git_calls(calls)
    assert called == "", f"git ran during the restart:\n{called}"
    assert build_count(ctx) == builds
    assert snapshot(ctx) == before
    assert len(start_windows(ctx, mark)) == 2
