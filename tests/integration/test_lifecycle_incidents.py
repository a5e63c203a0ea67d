"""Incidents end to end through a real supervisor process and a real SMTP server:

- memory over the limit (process runtime with a cgroup v1 memory controller, and Docker):
  `over_limit` and exactly one email with the seed's subject;
- a crash loop: restarts with backoff, then `crashed` with the log tail and exactly one
  email (both engines);
- hibernation (process runtime): an idle public app sleeps (instance stopped), an idle
  private app does not, a 6-day-idle app gets the warning, and waking restarts the sleeper
  on its kept environment; polling picks up a push without any webhook.

Time is moved by writing the apps' last view/deploy times into the past, not by waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.notifications import OVER_LIMIT_SUBJECT
from backend.platform.settings import Settings
from models import App, Build, EmailOutbox, User, session_scope, utcnow
from supervisor.runtimes import cgroups
from supervisor.runtimes.base import AppSpec, EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from tests.support.instances import http_get, instance_alive
from tests.support.lifecycle_support import LiveSession, MailSink
from tests.support.runtimes import wait_healthy
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_for_state, wait_until

REQUIREMENTS = "streamlit==1.67.0\npandas==3.1.1\n"
HELLO = "import streamlit as st\nst.title('Hello')\nst.write('{text}')\n"
HOG = ("import time\nimport streamlit as st\nst.write('Allocating')\nhog = []\n"
       "for _ in range(60):\n    hog.append(b'x' * (20 << 20))\nst.write(len(hog))\n"
       "time.sleep(60)  # holds the memory, as a cache would\n")


def prepare(
        engine_settings: Settings, mail_sink: MailSink, **extra: Any) -> tuple[Settings, Context]:
    settings = dataclasses.replace(engine_settings, **mail_sink.settings(), **extra)
    ctx = open_context(settings)
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == "admin")).one()
        user.email = "dev@example.com"
        s.add(user)
    return settings, ctx


def instance(ctx: Context, app_id: int) -> dict[str, Any]:
    app = load_app(ctx, app_id)
    return json.loads(app.runtime_state).get("instance", {}) if app else {}


def ident(state: dict) -> str:
    return str(state.get("pid") or state.get("container_id") or "")


def kill(state: dict) -> None:
    """Kill an instance behind the supervisor's back, as a crash would."""
    if state.get("pid"):
        os.killpg(state["pid"], signal.SIGKILL)
    else:
        import docker
        docker.from_env().containers.get(state["container_id"]).kill()


def set_fields(ctx: Context, app_id: int, **fields: Any) -> None:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        for name, value in fields.items():
            setattr(app, name, value)
        s.add(app)


def test_over_limit_and_crash_loop_each_mail_once(engine_settings, admin, make_repo,
                                                  mail_sink, tmp_path) -> None:
    if engine_settings.runtime == "process" and not cgroups.available():
        pytest.skip("no writable cgroup v1 memory controller (not root?)")
    settings, ctx = prepare(engine_settings, mail_sink, crash_backoff="0.2,0.2",
                            process_memory_limit="cgroup")
    hog_repo = make_repo("hog", {"streamlit_app.py": HOG, "requirements.txt": REQUIREMENTS})
    crash_repo = make_repo("crashy", {"streamlit_app.py": HELLO.format(text="crashy"),
                                      "requirements.txt": REQUIREMENTS})
    hog = apps.deploy_app(ctx, admin, repo_url=hog_repo.url, subdomain="hog")
    set_fields(ctx, hog.id, memory_limit_mb=256)  # before any supervisor sees the app
    crashy = apps.deploy_app(ctx, admin, repo_url=crash_repo.url, subdomain="crashy")
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        for app_id in (hog.id, crashy.id):
            app = wait_for_state(ctx, app_id, {"running", "crashed", "build_failed"}, sup=sup)
            assert app.state == "running", app.state_reason
        if settings.runtime == "process":
            group = cgroups.MemoryCgroup(instance(ctx, hog.id)["cgroup"])
            assert (group.path / "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
            assert instance(ctx, hog.id)["pid"] in group.pids()

        # Over the limit: opening the app runs the script, which allocates 1.2 GB.
        session = LiveSession(settings.port, f"hog.localhost:{settings.port}").start()
        app = wait_for_state(ctx, hog.id, {"over_limit", "crashed"}, timeout=60, sup=sup)
        session.close()
        assert app.state == "over_limit", app.state_reason
        assert "256 MiB" in app.state_reason

        # A crash loop: two restarts with backoff, the third crash leaves it crashed.
        for attempt in range(3):
            state = wait_until(lambda: (a := load_app(ctx, crashy.id)) and a.state == "running"
                               and instance(ctx, crashy.id), 60, "crashy running", sup)
            kill(state)
            if attempt < 2:
                wait_until(lambda: ident(instance(ctx, crashy.id)) not in ("", ident(state)),
                           60, f"restart {attempt + 1}", sup)
        app = wait_for_state(ctx, crashy.id, {"crashed"}, timeout=60, sup=sup)
        assert "crashed 3 times" in app.state_reason

        wait_until(lambda: len(mail_sink.messages) >= 2, 30, "two emails", sup)
        over = mail_sink.matching(OVER_LIMIT_SUBJECT)
        assert [m["Subject"] for m in over] == [OVER_LIMIT_SUBJECT]
        assert "256 MiB" in over[0].get_body(("plain",)).get_content()
        crashed = mail_sink.matching("has crashed")
        assert len(crashed) == 1 and "crashed 3 times" in \
            crashed[0].get_body(("plain",)).get_content()
        # Every mail comes from the outbox: two rows, both sent, one per incident.
        wait_until(lambda: sorted((r.kind, r.status) for r in _outbox(ctx)) ==
                   [("crashed", "sent"), ("over_limit", "sent")], 30, "the outbox", sup)
        assert len(mail_sink.messages) == 2
        assert load_app(ctx, hog.id).state == "over_limit"

        # A reboot clears over_limit.
        apps.reboot_app(ctx, admin, hog.id)
        app = wait_for_state(ctx, hog.id, {"running", "crashed"}, timeout=120, sup=sup)
        assert app.state == "running"
    finally:
        sup.stop()


def test_crash_count_survives_a_supervisor_restart(settings, admin, make_repo, mail_sink,
                                                   tmp_path) -> None:
    """Crash 1 and its restart, then kill -9 the supervisor; the next one adopts the app
    and keeps counting (App.crash_record): crashes 2 and 3 leave it crashed, "crashed 3
    times", exactly as without the restart, and exactly one email."""
    settings, ctx = prepare(settings, mail_sink, crash_backoff="0.2,0.2")
    repo = make_repo("crashy", {"streamlit_app.py": HELLO.format(text="crashy"),
                                "requirements.txt": REQUIREMENTS})
    crashy = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="crashy")

    def running_other_than(previous: str) -> Callable[[], Any]:
        return lambda: ((a := load_app(ctx, crashy.id)) and a.state == "running"
                        and ident(instance(ctx, crashy.id)) not in ("", previous)
                        and instance(ctx, crashy.id))

    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        app = wait_for_state(ctx, crashy.id, {"running", "crashed", "build_failed"}, sup=sup)
        assert app.state == "running", app.state_reason
        state = wait_until(running_other_than(""), 60, "crashy running", sup)
        kill(state)  # crash 1: restart 1 of 2
        state = wait_until(running_other_than(ident(state)), 60, "restart 1", sup)
        assert len(json.loads(load_app(ctx, crashy.id).crash_record)["times"]) == 1
        sup.kill()
    finally:
        sup.stop()
    sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
    try:
        assert wait_until(running_other_than(""), 60, "adopted", sup) == state
        kill(state)  # crash 2: restart 2 of 2
        state = wait_until(running_other_than(ident(state)), 60, "restart 2", sup)
        kill(state)  # crash 3: past the schedule
        app = wait_for_state(ctx, crashy.id, {"crashed"}, timeout=60, sup=sup)
        assert "crashed 3 times" in app.state_reason and app.crash_record == ""
        wait_until(lambda: [(r.kind, r.status) for r in _outbox(ctx)] == [("crashed", "sent")],
                   30, "the crashed email", sup)
        assert len(mail_sink.matching("has crashed")) == 1
        assert len(mail_sink.messages) == 1
    finally:
        sup.stop()


def _outbox(ctx: Context) -> list[EmailOutbox]:
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(EmailOutbox)))


def test_hibernation_sleep_wake_and_polling(settings, admin, make_repo, mail_sink,
                                           tmp_path) -> None:
    settings, ctx = prepare(settings, mail_sink, hibernation_interval=0.3,
                            git_poll_interval=0.5)
    made = {}
    for name in ("sleepy", "private", "warned"):
        repo = make_repo(name, {"streamlit_app.py": HELLO.format(text=name),
                                "requirements.txt": REQUIREMENTS})
        made[name] = (repo, apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain=name))
    set_fields(ctx, made["private"][1].id, visibility="private")
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        ids = {name: view.id for name, (_, view) in made.items()}
        for app_id in ids.values():
            assert wait_for_state(ctx, app_id, {"running", "crashed", "build_failed"},
                                  sup=sup).state == "running"
        sleepy_pid = instance(ctx, ids["sleepy"])["pid"]
        builds_before = _builds(ctx, ids["sleepy"])

        # Move the clock: 8 days idle for two apps, 6 days for the third.
        now = utcnow()
        for name in ("sleepy", "private"):
            set_fields(ctx, ids[name], last_deployed_at=now - timedelta(days=8),
                       last_viewed_at=now - timedelta(days=8))
        set_fields(ctx, ids["warned"], last_deployed_at=now - timedelta(days=6))
        app = wait_for_state(ctx, ids["sleepy"], {"sleeping"}, timeout=30, sup=sup)
        assert "without a view" in app.state_reason
        assert not instance_alive(str(sleepy_pid)) and instance(ctx, ids["sleepy"]) == {}
        # The proxy's route follows the row on its next refresh: until then the ended
        # instance answers 502; then the sleeping page (503).
        wait_until(lambda: http_get(settings.port, f"sleepy.localhost:{settings.port}")[0]
                   == 503, 10, "the sleeping page", sup)
        status, body = http_get(settings.port, f"sleepy.localhost:{settings.port}")
        assert status == 503
        wait_until(lambda: mail_sink.matching("will go to sleep soon"), 30, "the warning", sup)
        assert [m["Subject"] for m in mail_sink.messages] == \
            ["Your Streamlit app warned will go to sleep soon"]
        assert load_app(ctx, ids["private"]).state == "running"  # private apps never sleep
        assert load_app(ctx, ids["warned"]).state == "running"

        # Anyone can wake it: same checkout and environment, no new build.
        woke = time.monotonic()
        assert apps.wake_app(ctx, None, ids["sleepy"]) == "starting"
        wait_until(lambda: http_get(settings.port, f"sleepy.localhost:{settings.port}",
                                    "/_stcore/health")[0] == 200, 60, "the woken app", sup)
        print(f"wake to healthy through the proxy: {time.monotonic() - woke:.2f} s")
        app = load_app(ctx, ids["sleepy"])
        assert app.state == "running" and instance(ctx, ids["sleepy"])["pid"] != sleepy_pid
        assert _builds(ctx, ids["sleepy"]) == builds_before

        # Polling finds a push with no webhook at all (and it resets the idle clock).
        private_repo = made["private"][0]
        pushed = private_repo.commit({"streamlit_app.py": HELLO.format(text="polled")})
        app = wait_until(lambda: (a := load_app(ctx, ids["private"])) and a.commit == pushed
                         and a, 30, "polling to pick up the push", sup)
        assert app.last_deployed_at > now - timedelta(minutes=5)
        assert len(mail_sink.messages) == 1
    finally:
        sup.stop()


def _builds(ctx: Context, app_id: int) -> int:
    with session_scope(ctx.engine) as s:
        return len(s.exec(select(Build.id).where(Build.app_id == app_id)).all())


def test_rss_watchdog_where_no_cgroup_can_be_made(settings, tmp_path: Path) -> None:
    runtime = ProcessRuntime(dataclasses.replace(settings, process_memory_limit="watchdog"))
    assert runtime.memory_mode == "watchdog"
    checkout = tmp_path / "hog"
    checkout.mkdir()
    (checkout / "streamlit_app.py").write_text(HOG)
    (checkout / "requirements.txt").write_text(REQUIREMENTS)
    spec = EnvSpec.from_checkout(checkout, settings.default_python, settings.default_streamlit)
    app = AppSpec(app_id=9, name="hog", checkout=checkout, main_file="streamlit_app.py",
                  log_path=tmp_path / "hog.log", memory_limit_mb=256)

    async def scenario() -> str:
        env = await runtime.ensure_env(spec, lambda line: None)
        inst = await runtime.start(app, env)
        try:
            assert "cgroup" not in inst.state
            await wait_healthy(inst.address, runtime, 9, inst.state)
            host = f"{inst.address[0]}:{inst.address[1]}"
            viewer = asyncio.ensure_future(open_streamlit_session(f"ws://{host}", host, 30))
            deadline = asyncio.get_running_loop().time() + 30
            while (status := await runtime.poll(9, inst.state)).alive:
                assert asyncio.get_running_loop().time() < deadline, "never over the limit"
                await runtime.maintain(9, inst.state)  # as the reconciler does after poll
                await asyncio.sleep(0.1)  # the watchdog's own period, here the test's
            await asyncio.gather(viewer, return_exceptions=True)
            return status.kind
        finally:
            await runtime.stop(9, inst.state)

    assert asyncio.run(scenario()) == "oom"
