"""The CLI (`python -m supervisor.cli`) as a subprocess against a real supervisor (process
runtime): login, deploy the example repo, wait for running, logs, reboot, secrets, delete.
Every wait polls a condition (the CLI's own `apps list`, or the database)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from backend.accounts import api_tokens
from backend.apps.secrets import runtime_path
from backend.context import Context
from backend.platform.settings import PROJECT_ROOT
from models import User
from tests.conftest import GitRepo
from tests.support.instances import instance_id
from tests.support.supervisor_harness import SupervisorProcess, wait_until

SECRET = "cli-secret-value-1234"


def test_cli_life_cycle(ctx: Context, admin: User, hello_repo: GitRepo, tmp_path: Path) -> None:
    config = tmp_path / "home" / "cli.json"
    env = {**os.environ, "STCLOUD_CLI_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "supervisor.cli", *args], check=False,
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
        if ok:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def listed() -> dict[str, dict[str, Any]]:
        return {a["subdomain"]: a for a in json.loads(cli("apps", "list", "--json").stdout)}

    _, token = api_tokens.create_token(ctx, admin, "cli-test", "read,deploy")
    url = f"http://localhost:{ctx.settings.port}"
    sup = SupervisorProcess(ctx.settings, tmp_path / "supervisor.log").start()
    try:
        bad = cli("login", "--url", url, "--token", "stc_wrong", ok=False)
        assert bad.returncode == 1 and "unknown or revoked" in bad.stderr
        assert not config.exists()
        assert "Logged in" in cli("login", "--url", url, "--token", token).stdout
        assert stat.S_IMODE(config.stat().st_mode) == 0o600

        out = cli("deploy", hello_repo.url, "--branch", "main", "--main", "streamlit_app.py",
                  "--subdomain", "hello-cli").stdout
        assert "hello-cli" in out
        app_id = listed()["hello-cli"]["id"]
        wait_until(lambda: listed()["hello-cli"]["state"] in ("running", "build_failed",
                                                                "crashed"),
                   180, "the app to run", sup)
        assert listed()["hello-cli"]["state"] == "running"
        table = cli("apps", "list").stdout
        assert "hello-cli" in table and "running" in table

        assert cli("logs", str(app_id), "--build").stdout.strip()
        cli("logs", str(app_id))  # the app log (Streamlit's start-up lines, if any)
        follow = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "logs", str(app_id),
                                   "--build", "--follow", "--max-seconds", "60"],
                                  cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert follow.stdout is not None and follow.stdout.readline().strip()
        finally:
            follow.terminate()
            follow.wait(10)

        first = instance_id(ctx, app_id)
        assert "Rebooting" in cli("reboot", str(app_id)).stdout
        wait_until(lambda: instance_id(ctx, app_id) not in (None, first)
                   and listed()["hello-cli"]["state"] == "running", 120, "the reboot", sup)

        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(f'API_KEY = "{SECRET}"\n')
        out = cli("secrets", "set", str(app_id), "-f", str(secrets_file)).stdout
        assert "Saved 1 secret key" in out and "API_KEY" in out and SECRET not in out
        assert SECRET in runtime_path(ctx.settings, app_id).read_text()

        assert "Deleting" in cli("delete", str(app_id)).stdout
        wait_until(lambda: "hello-cli" not in listed(), 60, "the delete", sup)
        gone = cli("reboot", str(app_id), ok=False)
        assert gone.returncode == 1 and "does not exist" in gone.stderr
    finally:
        sup.stop()

