"""Reliability under kill -9 loops: a real supervisor subprocess is SIGKILLed at a point
chosen by a seeded RNG during (a) an environment build, (b) a zero-downtime swap, (c) email
sending, (d) a burst of view events, then started again, 3 times each. After every restart:
the apps that ran still serve, there is exactly one process per app (counted from the OS,
not from our state), no build directory of a dead builder is left, no email is lost or
(outside the documented one-message window) sent twice, and every view event committed
before the kill is still there, with none counted twice. Waits poll a condition with a
deadline; the random delays are the kill points themselves, never synchronisation. Log
rotation, a full disk, the scaled-down load test and builders that die with their
supervisor are in test_reliability_disk.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import threading
import time
from datetime import timedelta
from pathlib import Path

import psutil
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import func, select, update

from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings import Settings
from models import Build, EmailOutbox, ViewEvent, session_scope, utcnow
from supervisor.runtimes.process_builders import BUILDER_MARKER
from tests.support.instances import assert_serving_once, instance_id, running_instances
from tests.support.lifecycle_support import (
    MailSink,
    build_visible_dir,
    gated_package,
    package_files,
)
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_until

SEED = int(os.environ.get("STCLOUD_RELIABILITY_SEED", "20261125"))
ROUNDS = 3
PAGE = "import streamlit as st\nst.write('Version {n}')\n"
BASE_REQS = "streamlit==1.67.0\n"


# Shared checks -------------------------------------------------------------------------------
def dead_builder_dirs(settings: Settings) -> list[str]:
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


def builder_groups(settings: Settings) -> list[int]:
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


def restart(sup: SupervisorProcess, settings: Settings, tmp_path: Path,
            n: int) -> SupervisorProcess:
    sup.kill()
    return SupervisorProcess(settings, tmp_path / f"sup{n}.log").start()


def builds(ctx: Context, app_id: int) -> list[tuple[str, str]]:
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

        async def slow(server: SMTP, session: Session, envelope: Envelope) -> str:
            await asyncio.sleep(delay)  # the server's processing time
            return await original(server, session, envelope)

        handler.handle_DATA = slow


def queue_mail(ctx: Context, n: int, round_: int) -> list[str]:
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
def view_count(ctx: Context, app_id: int) -> int:
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
