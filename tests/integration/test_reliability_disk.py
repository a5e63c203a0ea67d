"""Reliability of logs, disk and builds: the log pipe and copytruncate rotation, an app log
that stays under its cap on disk, a build on a full disk that fails cleanly, a scaled-down
load test with a flat supervisor RSS, and build directories and build steps that do not
outlive their supervisor. The kill -9 loops are in test_reliability.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.context import open_context
from bench.load import RssSampler, Target, run_load
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from supervisor.runtimes.process_builders import BUILDER_MARKER
from tests.support.instances import assert_serving_once, http_get
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

PAGE = "import streamlit as st\nst.write('Version {n}')\n"
BASE_REQS = "streamlit==1.67.0\n"


# Logs and disk ------------------------------------------------------------------------------
def test_logpipe_rotates_and_keeps_pid_and_exit_code(tmp_path) -> None:
    log = tmp_path / "app.log"
    script = ("import os, sys\nprint(os.getpid(), flush=True)\n"
              "for i in range(20000): print(f'line {i:06d} ' + 'x' * 60)\n"
              "sys.stderr.write('the end\\n'); sys.exit(3)\n")
    from supervisor.runtimes.process import LOGPIPE
    proc = subprocess.Popen([sys.executable, "-I", str(LOGPIPE), str(log), "100000", "2", "--",
                             sys.executable, "-c", script], start_new_session=True)
    assert proc.wait(60) == 3, "the app's exit code comes through"
    wait_until(lambda: "the end" in log.read_text(), 30, "the writer to drain")
    files = app_logs.log_files(log)
    assert [f.name for f in files] == ["app.log.2", "app.log.1", "app.log"]
    assert all(f.stat().st_size <= 100_000 for f in files)
    first_line = (tmp_path / "app.log.2").read_text().splitlines()[0]
    assert first_line.startswith("line ")  # the oldest lines (and the pid) were dropped
    text, size = app_logs.tail_across(log, 150_000)
    assert text.rstrip().endswith("the end") and "line 019999" in text
    assert size == log.stat().st_size


def test_copytruncate_for_append_writers(tmp_path) -> None:
    """The Docker runtime's bind-mounted log: rotated by copy and truncate in place, the
    writer's open append descriptor goes on at the start of the emptied file."""
    from supervisor.runtimes.logpipe import copytruncate
    log = tmp_path / "app.log"
    with open(log, "ab", buffering=0) as writer:
        for round_ in range(4):
            writer.write(f"round {round_} ".encode() + b"z" * 2000 + b"\n")
            assert copytruncate(str(log), 1000, 2)
        writer.write(b"after\n")
    assert log.read_bytes() == b"after\n"
    assert [f.name for f in app_logs.log_files(log)] == ["app.log.2", "app.log.1", "app.log"]
    assert all(f.stat().st_size <= 1000 for f in app_logs.log_files(log))
    assert not copytruncate(str(log), 1000, 2), "under the cap: nothing to do"


LOUD = ("import streamlit as st\n"
        "for i in range(30000):\n    print(f'noise {i:06d} ' + 'y' * 90)\n"
        "st.write('done')\n")


def test_app_log_stays_under_cap_on_disk(settings, admin, make_repo, tmp_path) -> None:
    settings = dataclasses.replace(settings, app_log_max_bytes=256 * 1024, app_log_backups=2,
                                   git_poll_interval=0)
    ctx = open_context(settings)
    repo = make_repo("loud", {"streamlit_app.py": LOUD})
    sup = SupervisorProcess(settings, tmp_path / "sup.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="loud")
        assert_serving_once(settings, ctx, view.id, sup)
        for _ in range(2):  # ~6 MB of output, 24× the cap of one file
            seen = asyncio.run(open_streamlit_session(f"ws://127.0.0.1:{settings.port}",
                                                      f"loud.localhost:{settings.port}", 60))
            assert "done" in seen["texts"], seen
        log = settings.logs_path / str(view.id) / "app.log"
        wait_until(lambda: "noise 029999" in log.read_text(), 30, "the output on disk", sup)
        files = app_logs.log_files(log)
        total = sum(f.stat().st_size for f in files)
        cap = 256 * 1024 * 3
        assert len(files) == 3 and total <= cap, (files, total)
        tail = app_logs.read_tail(ctx, admin, view.id, "app", 600_000)
        assert "noise 029999" in tail.text and tail.size == log.stat().st_size
        print(f"app log: {total} bytes on disk after ~6 MB of output (cap {cap})")
    finally:
        sup.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs the test controls (a Streamlit environment needs ~400 MB)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr}")
        pytest.skip(f"mount not permitted: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_build_on_full_disk_fails_cleanly(settings, admin, make_repo, small_disk,
                                          tmp_path) -> None:
    # The running app's environment is already there (a symlink into the shared envs);
    # the new app's environment must be built on the small disk, and does not fit.
    page = PAGE.format(n=1)
    src = tmp_path / "src"
    src.mkdir()
    (src / "streamlit_app.py").write_text(page)
    spec = EnvSpec.from_checkout(src, settings.default_python, settings.default_streamlit)
    env = asyncio.run(ProcessRuntime(settings).ensure_env(spec, lambda line: None))
    (small_disk / spec.dep_hash).symlink_to(env.location)
    settings = dataclasses.replace(settings, envs_dir=small_disk, git_poll_interval=0)
    ctx = open_context(settings)
    fits = make_repo("fits", {"streamlit_app.py": page})
    big = make_repo("big", {"streamlit_app.py": page,
                            "requirements.txt": BASE_REQS + "pandas==3.1.1\n"})
    sup = SupervisorProcess(settings, tmp_path / "sup.log").start()
    try:
        ok = apps.deploy_app(ctx, admin, repo_url=fits.url, subdomain="fits")
        assert_serving_once(settings, ctx, ok.id, sup)
        bad = apps.deploy_app(ctx, admin, repo_url=big.url, subdomain="big")
        app = wait_for_state(ctx, bad.id, {"build_failed", "running", "crashed"}, 300, sup)
        assert app.state == "build_failed", app.state_reason
        assert "disk space" in app.state_reason and str(small_disk) in app.state_reason
        assert not list(small_disk.glob("*.building-*")), "no partial environment left"
        assert sorted(p.name for p in small_disk.iterdir()) == [spec.dep_hash]
        assert sup.alive()
        status, body = http_get(settings.port, f"localhost:{settings.port}", "/api/v1/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert_serving_once(settings, ctx, ok.id, sup)  # the other app is unaffected
        print(f"full disk: {app.state_reason!r}")
    finally:
        sup.stop()


# Load ----------------------------------------------------------------------------------------
def test_scaled_down_load_no_errors_and_flat_supervisor_rss(settings, admin, hello_repo,
                                                            tmp_path) -> None:
    settings = dataclasses.replace(settings, git_poll_interval=0)
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup.log").start()
    try:
        ids = [apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain=f"l{i}").id
               for i in range(2)]
        for app_id in ids:
            assert_serving_once(settings, ctx, app_id, sup)
        targets = [Target(settings.port, f"l{i}.localhost:{settings.port}") for i in range(2)]
        dash = Target(settings.port, f"localhost:{settings.port}")
        wait_until(lambda: http_get(settings.port, dash.host, "/_stcore/health")[0] == 200,
                   60, "the dashboard", sup)
        with RssSampler(sup.pid, 0.5) as rss:
            stats = asyncio.run(run_load(targets, viewers=20, duration=12, ramp=5,
                                         rerun_every=2, reload_every=6, dashboard=dash,
                                         dashboard_users=1))
        assert not stats.errors, stats.errors[:5]
        assert stats.sessions >= 20 and stats.rerun and stats.dashboard
        first = rss.samples[0][1]
        peak = max(m for _, m in rss.samples)
        assert peak < first * 1.5 + 50, f"supervisor RSS grew {first:.0f} → {peak:.0f} MiB"
        print(f"scaled load: {stats.requests} requests, {stats.sessions} sessions, 0 errors; "
              f"supervisor RSS {first:.0f} → {rss.samples[-1][1]:.0f} MiB (peak {peak:.0f})")
    finally:
        sup.stop()


def test_stale_build_with_a_half_written_marker_is_removed(settings, tmp_path) -> None:
    """A builder killed while writing its marker (seen in the kill -9 loop before markers
    were replaced atomically) left an empty `.stcloud-builder`: still a dead build."""
    from supervisor.runtimes.process import ProcessRuntime
    settings = dataclasses.replace(settings, envs_dir=tmp_path / "envs")
    dead = settings.envs_path / "0123abcd.building-x1"
    (dead / "bin").mkdir(parents=True)
    (dead / BUILDER_MARKER).write_text("")
    unmarked = settings.envs_path / "4567ef01.building-x2"  # just made: maybe in progress
    unmarked.mkdir()
    assert ProcessRuntime(settings).clean_stale_builds() == [dead.name]
    assert not dead.exists() and unmarked.exists()


BUILDER_SCRIPT = """
import asyncio, sys
from backend.platform.settings_load import load_settings
from supervisor.runtimes.process import ProcessRuntime

runtime = ProcessRuntime(load_settings(env={}, data_dir=sys.argv[1]))
cmd = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(600)"]
asyncio.run(runtime._run(cmd, lambda line: print("child", line, flush=True)))
"""


def test_a_build_step_dies_with_its_supervisor(tmp_path) -> None:
    """A supervisor killed right after spawning a build step (uv) has not noted its group
    for the next one to end: the step must die with it, or it writes into the build
    directory after the next supervisor removed it (seen in test_kill9_during_swaps)."""
    builder = subprocess.Popen(
        [sys.executable, "-c", BUILDER_SCRIPT, str(tmp_path / "data")],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout is not None
        line = builder.stdout.readline()
        assert line.startswith("child "), line
        child = psutil.Process(int(line.split()[1]))
        assert child.ppid() == builder.pid and child.status() != psutil.STATUS_ZOMBIE
        builder.kill()
        builder.wait(30)

        def gone() -> bool:
            try:
                return child.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True
        wait_until(gone, 30, "the build step to die with its supervisor")
    finally:
        if builder.poll() is None:
            builder.kill()
        try:
            psutil.Process(child.pid).kill()
        except (NameError, psutil.Error):
            pass
