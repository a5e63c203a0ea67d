"""A rotated secret stays masked on every path that returns an app's logs, through a real
supervisor (process runtime) and a real app that prints its secrets, as an app may.

The app is deployed with `OLD` as its token, prints it, then its secrets are rotated
through the CLI (`NEW`, and a nested `NEW_DB`); the restarted app prints the new values,
and the token it still keeps from before, then exits (one crash leaves it `crashed`, which
emails its developer the last lines of its log). The raw log holds all three values; none
of them is in the backend's reads (the panel's and the Logs page's tail, the download),
the REST API (tail, build log, followed stream, events), the CLI (`logs`, `--build`,
`--follow`), or the crash email in the outbox. Deleting the app deletes its history."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlmodel import select

from backend.accounts import api_tokens, auth
from backend.apps import logs as app_logs
from backend.apps.log_files import app_log_path
from backend.context import Context, open_context
from backend.platform.settings import PROJECT_ROOT, Settings
from models import App, AppSecretValue, EmailOutbox, User, session_scope
from tests.conftest import EXAMPLE_APP, GitRepo
from tests.support.instances import instance_id
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

OLD = "old-token-8c1f2e9a7b"
NEW = "new-token-3d5e7f9a1c"
NEW_DB = "new-db-pw-6b4a2c8e0f"
VALUES = (OLD, NEW, NEW_DB)
APP_SOURCE = '''import os
import pathlib

import streamlit as st

print("token is", st.secrets["token"], flush=True)
if "db" in st.secrets:
    print("db password is", st.secrets["db"]["password"], flush=True)
    print("all of them:", st.secrets.to_dict(), flush=True)
    kept = pathlib.Path(__file__).with_name("kept.txt").read_text().strip()
    print("the token I kept from before:", kept, flush=True)
st.write("hello")
if st.secrets.get("crash_on_view"):
    os._exit(3)
'''
SECRETS_V1 = f'token = "{OLD}"\n'
SECRETS_V2 = f'token = "{NEW}"\ncrash_on_view = true\n[db]\npassword = "{NEW_DB}"\n'


@dataclasses.dataclass
class Rotated:
    ctx: Context
    sup: SupervisorProcess
    user: User
    token: str
    app_id: int
    cli_env: dict[str, str]

    def api(self, path: str, **kwargs: Any) -> requests.Response:
        port = self.ctx.settings.port
        return requests.get(f"http://127.0.0.1:{port}/api/v1{path}", timeout=60,
                            headers={"Host": f"localhost:{port}",
                                     "Authorization": f"Bearer {self.token}"}, **kwargs)

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "supervisor.cli", *args], check=False,
                              cwd=PROJECT_ROOT, env=self.cli_env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout + done.stderr


def view(settings: Settings) -> None:
    """Open a Streamlit session on the app, so that its script runs once."""
    host = f"rotating.localhost:{settings.port}"
    asyncio.run(open_streamlit_session(f"ws://127.0.0.1:{settings.port}", host, 30))


def state_of(ctx: Context, app_id: int) -> str:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        return app.state if app else ""


def raw_log(settings: Settings, app_id: int) -> str:
    path = app_log_path(settings, app_id)
    return path.read_text() if path.exists() else ""


@pytest.fixture
def rotated(settings: Settings, tmp_path: Path) -> Iterator[Rotated]:
    settings = dataclasses.replace(settings, crash_backoff="")  # one crash: crashed, email
    ctx = open_context(settings)
    auth.ensure_first_admin(ctx)
    user = auth.get_user(ctx, settings.admin_username)
    with session_scope(ctx.engine) as s:  # the crash email needs an address
        row = s.get(User, user.id)
        assert row is not None
        row.email = "dev@example.com"
    token = api_tokens.create_token(ctx, user, "rotation", "read,deploy")[1]
    repo = GitRepo(tmp_path / "repos" / "rotating")
    repo.commit({"streamlit_app.py": APP_SOURCE, "kept.txt": OLD + "\n",
                 "requirements.txt": (EXAMPLE_APP / "requirements.txt").read_text()})
    cli_env = {**os.environ, "STCLOUD_CLI_CONFIG": str(tmp_path / "cli.json"),
               "PYTHONUNBUFFERED": "1"}
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        r = Rotated(ctx, sup, user, token, 0, cli_env)
        r.cli("login", "--url", f"http://localhost:{settings.port}", "--token", token)
        port = settings.port
        created = requests.post(f"http://127.0.0.1:{port}/api/v1/apps", timeout=60, json={
            "repo_url": repo.url, "subdomain": "rotating", "secrets": SECRETS_V1},
            headers={"Host": f"localhost:{port}", "Authorization": f"Bearer {token}"})
        assert created.status_code == 201, created.text
        r.app_id = created.json()["id"]
        app = wait_for_state(ctx, r.app_id, {"running", "build_failed", "crashed"}, sup=sup)
        assert app.state == "running", app.state_reason
        view(settings)
        wait_until(lambda: OLD in raw_log(settings, r.app_id), 60, "the app to print OLD", sup)

        first = instance_id(ctx, r.app_id)
        secrets_file = tmp_path / "v2.toml"
        secrets_file.write_text(SECRETS_V2)
        out = r.cli("secrets", "set", str(r.app_id), "-f", str(secrets_file))
        assert "the app restarts" in out and NEW not in out
        wait_until(lambda: instance_id(ctx, r.app_id) not in (None, first)
                   and state_of(ctx, r.app_id) == "running", 180,
                   "the restart on the new secrets", sup)
        view(settings)  # prints the new values and the kept one, then exits
        wait_for_state(ctx, r.app_id, {"crashed"}, timeout=60, sup=sup)
        log = raw_log(settings, r.app_id)
        assert all(v in log for v in VALUES), log  # the app did print every value
        yield r
    finally:
        sup.stop()


def assert_masked(where: str, text: str, masks: bool = True) -> None:
    found = [v for v in VALUES if v in text]
    assert not found, f"{where} shows {found}: {text[-2000:]}"
    if masks:
        assert "****" in text, f"{where} has no masked line: {text[-2000:]}"


def test_rotated_secrets_are_masked_on_every_log_path(rotated: Rotated) -> None:
    r, ctx = rotated, rotated.ctx

    # the backend's reads: the Manage app panel and the Logs page (tails), their downloads
    shown = app_logs.read_logs(ctx, r.user, r.app_id)
    assert_masked("read_logs app", shown["app"])
    assert_masked("read_logs build", shown["build"], masks=False)
    assert_masked("read_tail", app_logs.read_tail(ctx, r.user, r.app_id, "app").text)
    assert_masked("download", app_logs.read_full(ctx, r.user, r.app_id, "app").decode())
    assert_masked("panel download", app_logs.read_logs(ctx, r.user, r.app_id,
                                                       max_bytes=5_000_000)["app"])

    # the REST API over HTTP: tail, build log, a followed stream, the events' reasons
    tail = r.api(f"/apps/{r.app_id}/logs")
    assert tail.status_code == 200, tail.text
    assert_masked("API tail", tail.json()["text"])
    assert_masked("API build", r.api(f"/apps/{r.app_id}/logs?kind=build").json()["text"],
                  masks=False)
    followed = r.api(f"/apps/{r.app_id}/logs?follow=1&max_seconds=1")
    assert_masked("API follow", followed.text)
    events = r.api(f"/apps/{r.app_id}/events").json()["events"]
    crash = next(e["reason"] for e in events if e["to_state"] == "crashed")
    assert_masked("crash event", crash)

    # the CLI, as a subprocess
    assert_masked("CLI logs", r.cli("logs", str(r.app_id)))
    assert_masked("CLI logs --build", r.cli("logs", str(r.app_id), "--build"), masks=False)
    assert_masked("CLI logs --follow",
                  r.cli("logs", str(r.app_id), "--follow", "--max-seconds", "1"))

    # the crash email in the outbox quotes the last lines of the log
    with session_scope(ctx.engine) as s:
        mails = list(s.exec(select(EmailOutbox).where(EmailOutbox.app_id == r.app_id,
                                                      EmailOutbox.kind == "crashed")))
    assert mails, "no crash email was queued"
    for mail in mails:
        assert_masked("email text", mail.body_text)
        assert_masked("email html", mail.body_html)
        assert_masked("email subject", mail.subject, masks=False)

    # deleting the app deletes its history
    with session_scope(ctx.engine) as s:
        assert s.exec(select(AppSecretValue).where(AppSecretValue.app_id == r.app_id)).all()
    port = ctx.settings.port
    gone = requests.delete(f"http://127.0.0.1:{port}/api/v1/apps/{r.app_id}", timeout=60,
                           headers={"Host": f"localhost:{port}",
                                    "Authorization": f"Bearer {r.token}"})
    assert gone.status_code in (200, 202), gone.text

    def history_gone() -> bool:
        with session_scope(ctx.engine) as s:
            return not s.exec(select(AppSecretValue)
                              .where(AppSecretValue.app_id == r.app_id)).all()
    wait_until(history_gone, 60, "the delete to remove the history", r.sup)
