"""Reliability: kill -9 loops, log rotation, a full disk, and a scaled-down load test.

Kill loops: a real supervisor subprocess is SIGKILLed at a point chosen by a seeded RNG
during (a) an environment build, (b) a zero-downtime swap, (c) email sending, (d) a burst of
view events, then started again, 3 times each. After every restart: the apps that ran
still serve, there is exactly one process per app (counted from the OS, not from our state),
no build directory of a dead builder is left, no email is lost or (outside the documented
one-message window) sent twice, and every view event committed before the kill is still
there, with none counted twice. Waits poll a condition with a deadline; the random delays
are the kill points themselves, never synchronisation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from sqlmodel import func, select, update

from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.context import open_context
from bench.load import RssSampler, Target, run_load
from models import Build, EmailOutbox, ViewEvent, session_scope, utcnow
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from supervisor.runtimes.process_builders import BUILDER_MARKER
from tests.integration.test_e2e import http_get, instance_id, running_instances
from tests.support.lifecycle_support import (
    MailSink,
    build_visible_dir,
    gated_package,
    package_files,
)
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_for_state, wait_until

SEED = int(os.environ.get("STCLOUD_RELIABILITY_SEED", "20261125"))
ROUNDS = 3
PAGE = "import streamlit as st\nst.write('Version {n}')\n"
BASE_REQS = "streamlit==1.67.0\n"


# Shared checks -------------------------------------------------------------------------------
def dead_builder_dirs(settings) -> list[str]:  # type: ignore[no-untyped-def]
    """`*.building-*` dirs in envs_dir whose builder process is gone."""
    out = []
    for path in settings.envs_path.glob("*.building-*"):
        try:
            owner = json.loads((path / BUILDER_MARKER).read_text())
            alive = psutil.pid_exists(owner["pid"]) and abs(
                psutil.Process(owner["pid"]).create_time() - owner["create_time"]) < 0.01
        except (OSError, ValueError, KeyError, psutil.Error):
            alive = False
        if not alive:
            out.append(path.name)
    return out


def builder_groups(settings) -> list[int]:  # type: ignore[no-untyped-def]
    """Process groups of the build subprocesses recorded in build dirs' markers."""
    out = []
    for path in settings.envs_path.glob("*.building-*"):
        try:
            owner = json.loads((path / BUILDER_MARKER).read_text())
        except (OSError, ValueError):
            continue
        out += [int(g["pgid"]) for g in owner.get("groups", [])]
    return out


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def assert_serving_once(settings, ctx, app_id: int, sup) -> None:  # type: ignore[no-untyped-def]
    """Running, answering through the proxy, and exactly one process on this machine."""
    app = wait_for_state(ctx, app_id, {"running"}, timeout=180, sup=sup)
    host = f"{app.subdomain}.localhost:{settings.port}"
    wait_until(lambda: http_get(settings.port, host)[0] == 200, 60, f"{host} to answer", sup)
    wait_until(lambda: running_instances(settings, app_id) == [instance_id(ctx, app_id)], 60,
               f"one instance of app {app_id}", sup)


def restart(sup: SupervisorProcess, settings, tmp_path: Path,  # type: ignore[no-untyped-def]
            n: int) -> SupervisorProcess:
    sup.kill()
    return SupervisorProcess(settings, tmp_path / f"sup{n}.log").start()


def builds(ctx, app_id: int) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with session_scope(ctx.engine) as s:
        return [(b.commit, b.status) for b in
                s.exec(select(Build).where(Build.app_id == app_id).order_by(Build.id))]


# (a) builds --------------------------------------------------------------------------------
def test_kill9_during_builds(settings, admin, make_repo, tmp_path) -> None:
    rng = random.Random(SEED)
    settings = dataclasses.replace(settings, git_poll_interval=0)
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup0.log").start()
    try:
        for round_ in range(ROUNDS):
            pkg, gate = gated_package(build_visible_dir(settings, f"gated{round_}"))
            repo = make_repo(f"b{round_}", {
                "streamlit_app.py": PAGE.format(n=round_),
                "requirements.txt": BASE_REQS + "./gatedpkg\n", **package_files(pkg)})
            view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain=f"b{round_}")
            wait_until(lambda: [s for _, s in builds(ctx, view.id)] == ["running"]
                       and list(settings.envs_path.glob("*.building-*")), 120,
                       "the build to be under way", sup)
            point = rng.choice(["gate closed", "gate open"])
            if point == "gate open":  # kill somewhere in the rest of the build
                gate.write_text("ok")
                time.sleep(rng.uniform(0.0, 2.0))  # the random kill point
            sup.kill()
            left = dead_builder_dirs(settings)
            groups = builder_groups(settings)
            orphans = [pid for g in groups for pid in group_members(g)]
            gate.write_text("ok")
            sup = SupervisorProcess(settings, tmp_path / f"sup{round_ + 1}.log").start()
            # adoption (which removes dead builders' dirs) runs once this supervisor leads
            wait_until(lambda: not dead_builder_dirs(settings), 60,
                       f"the stale build dirs {left} to be removed", sup)
            assert_serving_once(settings, ctx, view.id, sup)
            statuses = [s for _, s in builds(ctx, view.id)]
            assert statuses[-1] == "succeeded" and "running" not in statuses, statuses
            # the killed supervisor's uv processes (own sessions) did not outlive the start
            strays = [pid for g in groups for pid in group_members(g)]
            assert not strays, f"orphan build processes {strays} (round {round_}, {point})"
            print(f"build round {round_}: kill point {point!r}, stale dirs left by the kill: "
                  f"{len(left)}, orphan build processes {len(orphans)}; both removed at start")
        for app in apps.list_apps(ctx, admin):  # earlier rounds' apps still serve, once
            assert_serving_once(settings, ctx, app.id, sup)
    finally:
        sup.stop()


# (b) swaps ---------------------------------------------------------------------------------
def test_kill9_during_swaps(settings, admin, make_repo, tmp_path) -> None:
    rng = random.Random(SEED + 1)
    settings = dataclasses.replace(settings, git_poll_interval=0.3, redeploy_drain=1.0)
    ctx = open_context(settings)
    repo = make_repo("swap", {"streamlit_app.py": PAGE.format(n=0),
                              "requirements.txt": BASE_REQS})
    sup = SupervisorProcess(settings, tmp_path / "sup0.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="swap")
        assert_serving_once(settings, ctx, view.id, sup)
        # every kill point once, in an order the seed picks
        points = rng.sample(["building", "new instance beside the old", "draining"], ROUNDS)
        for round_ in range(ROUNDS):
            pkg, gate = gated_package(build_visible_dir(settings, f"gated{round_}"))
            pushed = repo.commit({"streamlit_app.py": PAGE.format(n=round_ + 1),
                                  "requirements.txt": BASE_REQS + "./gatedpkg\n",
                                  **package_files(pkg)})
            wait_until(lambda: (pushed, "running") in builds(ctx, view.id), 60,
                       "the new environment's build", sup)
            point = points[round_]
            if point != "building":
                gate.write_text("ok")
            if point == "new instance beside the old":
                wait_until(lambda: list(settings.run_path.glob(f"app-{view.id}-*.json")), 120,
                           "the second instance", sup)
            elif point == "draining":
                wait_until(lambda: load_app(ctx, view.id).commit == pushed, 120,
                           "the route switch", sup)
            sup = restart(sup, settings, tmp_path, round_ + 1)
            gate.write_text("ok")
            wait_until(lambda: load_app(ctx, view.id).commit == pushed, 180,
                       "the push to be deployed after the restart", sup)
            assert_serving_once(settings, ctx, view.id, sup)
            assert not dead_builder_dirs(settings)
            wait_until(lambda: "running" not in [s for _, s in builds(ctx, view.id)], 30,
                       "the build to be recorded as finished", sup)
            assert [s for c, s in builds(ctx, view.id) if c == pushed][-1] == "succeeded"
            wait_until(lambda: not list(settings.run_path.glob(f"app-{view.id}-*.json"))
                       or running_instances(settings, view.id) == [instance_id(ctx, view.id)],
                       30, "the old instance to be gone", sup)
            print(f"swap round {round_}: killed at {point!r}; builds {builds(ctx, view.id)}")
    finally:
        sup.stop()


# (c) email ---------------------------------------------------------------------------------
class SlowSink(MailSink):
    """A MailSink whose server takes a moment per message, so kills land mid-send."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        handler = self._controller.handler
        original = handler.handle_DATA

        async def slow(server, session, envelope):  # type: ignore[no-untyped-def]
            await asyncio.sleep(delay)  # the server's processing time
            return await original(server, session, envelope)

        handler.handle_DATA = slow


def queue_mail(ctx, n: int, round_: int) -> list[str]:  # type: ignore[no-untyped-def]
    keys = [f"reliability:{round_}:{i}" for i in range(n)]
    with session_scope(ctx.engine) as s:
        for key in keys:
            s.add(EmailOutbox(kind="test", to_addr="dev@example.com", subject=key,
                              body_text="hello", dedupe_key=key))
    return keys


def test_kill9_during_email_sends(settings, admin, tmp_path) -> None:
    rng = random.Random(SEED + 2)
    sink = SlowSink(0.05).start()
    settings = dataclasses.replace(settings, git_poll_interval=0, **sink.settings())
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup0.log").start()
    ambiguous = 0
    try:
        for round_ in range(ROUNDS):
            keys = queue_mail(ctx, 30, round_)
            kill_after = rng.randint(1, 25)
            wait_until(lambda: len([s for s in sink.subjects() if s in keys]) >= kill_after, 60,
                       f"{kill_after} emails of round {round_}", sup)
            sup.kill()
            with session_scope(ctx.engine) as s:
                in_flight = [r.subject for r in s.exec(select(EmailOutbox).where(
                    EmailOutbox.status == "sending"))]
                # The lease of the dead sender's row runs out (2 min); jump there.
                s.exec(update(EmailOutbox).where(EmailOutbox.status == "sending")
                       .values(lease_until=utcnow() - timedelta(seconds=1)))
            assert len(in_flight) <= 1, f"a killed sender holds {in_flight}"
            sup = SupervisorProcess(settings, tmp_path / f"sup{round_ + 1}.log").start()
            wait_until(lambda: all(k in sink.subjects() for k in keys), 60, "every email", sup)
            with session_scope(ctx.engine) as s:
                wait_until(lambda: not s.exec(select(EmailOutbox).where(
                    EmailOutbox.status != "sent")).all() or s.expire_all(), 30,
                    "every row sent", sup)
            received = [m for m in sink.messages if str(m["Subject"]) in keys]
            subjects = [str(m["Subject"]) for m in received]
            dupes = sorted({k for k in subjects if subjects.count(k) > 1})
            # Only the one message whose fate was unknown at the kill may come twice, and
            # then with the same Message-ID (supervisor/mailer.py explains the window).
            assert set(dupes) <= set(in_flight), (dupes, in_flight)
            for key in dupes:
                ids = {m["Message-ID"] for m in received if str(m["Subject"]) == key}
                assert len(ids) == 1 and subjects.count(key) == 2
            ambiguous += len(dupes)
            print(f"email round {round_}: killed after {kill_after}/30 received, in flight "
                  f"{in_flight}, duplicates {dupes}")
    finally:
        sup.stop()
        sink.stop()
    print(f"email: {ambiguous} duplicate(s) in {ROUNDS} rounds")


# (d) view events ---------------------------------------------------------------------------
def view_count(ctx, app_id: int) -> int:  # type: ignore[no-untyped-def]
    with session_scope(ctx.engine) as s:
        return s.exec(select(func.count()).select_from(ViewEvent)
                      .where(ViewEvent.app_id == app_id)).one()


def test_kill9_during_view_burst(settings, admin, hello_repo, tmp_path) -> None:
    rng = random.Random(SEED + 3)
    settings = dataclasses.replace(settings, git_poll_interval=0)
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup0.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="views")
        assert_serving_once(settings, ctx, view.id, sup)
        host = f"views.localhost:{settings.port}"
        url = f"ws://127.0.0.1:{settings.port}"
        for round_ in range(ROUNDS):
            before = view_count(ctx, view.id)
            opened: list[int] = [0]
            committed: list[int] = [before]
            stop = threading.Event()

            def watch() -> None:  # what the database holds, as the burst goes on
                while not stop.is_set():
                    committed[0] = view_count(ctx, view.id)
                    stop.wait(0.05)

            async def burst(n: int) -> None:
                sem = asyncio.Semaphore(6)

                async def one() -> None:
                    async with sem:
                        try:
                            seen = await open_streamlit_session(url, host, timeout=20)
                            if seen["new_session"]:
                                opened[0] += 1
                        except Exception:  # the kill cuts some off
                            pass
                await asyncio.gather(*(one() for _ in range(n)))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            kill_after = rng.randint(5, 35)
            runner = threading.Thread(target=lambda: asyncio.run(burst(40)), daemon=True)
            runner.start()
            wait_until(lambda: opened[0] >= kill_after, 120, f"{kill_after} sessions", sup)
            stop.set()
            watcher.join()
            acknowledged = committed[0]  # rows the database had committed before the kill
            sup.kill()
            runner.join(60)
            sup = SupervisorProcess(settings, tmp_path / f"sup{round_ + 1}.log").start()
            assert_serving_once(settings, ctx, view.id, sup)
            after = view_count(ctx, view.id)
            assert after >= acknowledged, f"lost committed views: {after} < {acknowledged}"
            assert after - before <= 40, "no view counted twice"
            print(f"views round {round_}: killed after {kill_after} sessions "
                  f"({opened[0]} opened by the end); committed before kill "
                  f"{acknowledged - before}, after restart {after - before}")
    finally:
        sup.stop()


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
def small_disk(tmp_path):  # type: ignore[no-untyped-def]
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
        with RssSampler(sup.proc.pid, 0.5) as rss:  # type: ignore[union-attr]
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
from backend.platform.settings import load_settings
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
