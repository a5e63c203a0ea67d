"""Sleep policies against the real supervisor (process runtime) and proxy: an idle policy of
one minute puts its app to sleep while a `never` app idle for a month stays on; a visit
shows the sleeping page with its button, or, with wake_on_visit (set with the CLI), wakes
the app by itself through the oven; a schedule sleeps its app outside its hours, a visit
wakes it, and the supervisor wakes it when its hours begin.

Time is moved, not waited for: the apps' idle clocks (last view and deploy) are set back,
and the supervisor checks policies every 0.3 s (`hibernation_interval`); every wait polls
the app's state."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from backend.accounts import api_tokens
from backend.apps import service as apps
from backend.apps import sleep_settings
from backend.context import Context
from backend.platform.settings import PROJECT_ROOT, Settings
from models import App, AppEvent, User, session_scope, utcnow
from tests.conftest import GitRepo
from tests.support.api_world import make_user
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, hibernation_interval=0.3, sleep_min_idle_minutes=1.0)


def visit(settings: Settings, subdomain: str) -> tuple[int, str]:
    """A browser's page visit through the proxy: (status, body)."""
    req = urllib.request.Request(f"http://127.0.0.1:{settings.port}/", headers={
        "Host": f"{subdomain}.localhost:{settings.port}", "Accept": "text/html",
        "Sec-Fetch-Dest": "document"})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def serves(settings: Settings, subdomain: str) -> bool:
    req = urllib.request.Request(f"http://127.0.0.1:{settings.port}/_stcore/health",
                                 headers={"Host": f"{subdomain}.localhost:{settings.port}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return bool(r.status == 200 and r.read().strip() == b"ok")
    except (urllib.error.URLError, OSError):
        return False


def idle_for(ctx: Context, ages: dict[int, timedelta]) -> None:
    """Set each app's idle clock back by its age, all in one transaction (one pass of the
    supervisor sees every app moved)."""
    with session_scope(ctx.engine) as s:
        for app_id, age in ages.items():
            app = s.get(App, app_id)
            app.last_viewed_at = app.last_deployed_at = utcnow() - age
            s.add(app)


def state_of(ctx: Context, app_id: int) -> tuple[str, str]:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        return app.state, app.state_reason


def test_idle_minute_sleeps_never_stays_on_and_a_visit_wakes_per_policy(
        settings: Settings, ctx: Context, admin: User, hello_repo: GitRepo,
        supervisor: SupervisorProcess, tmp_path: Path) -> None:
    owner = make_user(ctx, "owner")
    nap = apps.deploy_app(ctx, owner, repo_url=hello_repo.url, subdomain="nap").id
    awake = apps.deploy_app(ctx, owner, repo_url=hello_repo.url, subdomain="awake").id
    for app_id in (nap, awake):
        wait_for_state(ctx, app_id, {"running"}, sup=supervisor)
    sleep_settings.set_policy(ctx, owner, nap, "idle 1m")
    sleep_settings.set_policy(ctx, owner, awake, "never")
    idle_for(ctx, {nap: timedelta(seconds=50), awake: timedelta(days=30)})
    before = sleep_settings.get_policy(ctx, owner, nap)
    assert before.next_sleep_at is not None and before.next_sleep_at > utcnow()

    idle_for(ctx, {nap: timedelta(minutes=2), awake: timedelta(days=30)})
    slept = wait_for_state(ctx, nap, {"sleeping"}, timeout=60, sup=supervisor)
    assert "sleep policy (asleep after 1 minute without a viewer)" in slept.state_reason
    assert state_of(ctx, awake)[0] == "running" and serves(settings, "awake")
    assert sleep_settings.get_policy(ctx, owner, awake).next_sleep == "stays awake"

    # Without wake_on_visit a visit shows the sleeping page and the app stays asleep.
    status, body = visit(settings, "nap")
    assert status == 503 and "Yes, get this app back up!" in body
    assert state_of(ctx, nap)[0] == "sleeping"

    # The CLI turns wake_on_visit on; then the visit itself wakes the app: the oven, then it.
    _, token = api_tokens.create_token(ctx, owner, "cli", "read,deploy")
    env = {**os.environ, "STCLOUD_CLI_CONFIG": str(tmp_path / "cli.json")}

    def cli(*args: str, status: int = 0) -> str:
        done = subprocess.run([sys.executable, "-m", "supervisor.cli", *args], cwd=PROJECT_ROOT,
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == status, (args, done.stdout, done.stderr)
        return done.stdout + done.stderr

    cli("login", "--url", f"http://localhost:{settings.port}", "--token", token)
    shown = cli("apps", "sleep-policy", str(nap), "--wake-on-visit")
    assert "sleep policy idle 1m" in shown and "a visit wakes it by itself" in shown
    status, body = visit(settings, "nap")
    assert "Yes, get this app back up!" not in body and "oven" in body.lower(), (status, body)
    assert state_of(ctx, nap)[0] in ("starting", "running")
    wait_until(lambda: serves(settings, "nap"), 120, "the woken app to serve", supervisor)
    assert "sleep policy idle 1m" in cli("apps", "sleep-policy", str(nap))
    refused = cli("apps", "sleep-policy", str(awake), "idle", "30s", status=1)
    assert "'30s' is not an idle period; write minutes, hours or days" in refused
    refused = cli("apps", "sleep-policy", str(awake), "idle", "0.5m", status=1)
    assert "shortest idle period this server allows is 1 minute" in refused
    shown = cli("apps", "sleep-policy", str(awake), "schedule", "mon-fri", "08:00-18:00",
                "Europe/Berlin")
    assert "awake Mon–Fri 08:00–18:00 (Europe/Berlin)" in shown


def test_schedule_sleeps_outside_hours_a_visit_wakes_it_and_its_hours_do(
        settings: Settings, ctx: Context, admin: User, hello_repo: GitRepo,
        supervisor: SupervisorProcess) -> None:
    owner = make_user(ctx, "owner")
    office = apps.deploy_app(ctx, owner, repo_url=hello_repo.url, subdomain="office").id
    wait_for_state(ctx, office, {"running"}, sup=supervisor)
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    today = utcnow().weekday()
    other_day = days[(today + 3) % 7]  # its hours are on another day: now is outside them
    sleep_settings.set_policy(ctx, owner, office,
                              f"schedule {other_day} 00:00-24:00 UTC", wake_on_visit=True)
    idle_for(ctx, {office: timedelta(minutes=20)})  # more than the grace after a visit
    slept = wait_for_state(ctx, office, {"sleeping"}, timeout=60, sup=supervisor)
    assert "asleep outside those hours" in slept.state_reason

    status, body = visit(settings, "office")  # any visit wakes it
    assert "Yes, get this app back up!" not in body, (status, body)
    wait_until(lambda: serves(settings, "office"), 120, "the visited app to serve", supervisor)
    view = sleep_settings.get_policy(ctx, owner, office)
    assert view.next_sleep_at is not None and view.next_sleep_at > utcnow()  # grace

    idle_for(ctx, {office: timedelta(minutes=20)})
    wait_for_state(ctx, office, {"sleeping"}, timeout=60, sup=supervisor)
    # Its hours begin (today becomes one of its days): the supervisor wakes it.
    sleep_settings.set_policy(ctx, owner, office, f"schedule {days[today]} 00:00-24:00 UTC")
    wait_for_state(ctx, office, {"starting", "running"}, timeout=60, sup=supervisor)
    # The wake's reason is an event: the start that follows at once writes its own reason.
    with session_scope(ctx.engine) as s:
        reasons = [e.reason for e in s.exec(select(AppEvent).where(AppEvent.app_id == office))]
    assert any("hours began" in r for r in reasons), reasons
    wait_until(lambda: serves(settings, "office"), 120, "the scheduled app to serve",
               supervisor)
    assert sleep_settings.get_policy(ctx, owner, office).next_sleep_at is not None

