"""A private repository on a plain SSH git server, deployed end to end: the CLI (a
subprocess) deploys with `--deploy-key` and prints the key to add; the real supervisor's
first clone is refused by the real sshd and the app says what to do; once the key is in the
server's authorized_keys, a reboot clones with it and the app runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.context import Context
from models import User
from tests.conftest import GitRepo
from tests.support.cli import signed_in_cli
from tests.support.git_servers import Sshd
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_until


def test_cli_deploys_a_private_repository_with_a_deploy_key(
        ctx: Context, admin: User, hello_repo: GitRepo, tmp_path: Path) -> None:
    authorized = tmp_path / "authorized_keys"
    authorized.write_text("")
    sshd = Sshd(tmp_path / "sshd", authorized)
    sup = SupervisorProcess(ctx.settings, tmp_path / "supervisor.log").start()
    try:
        cli = signed_in_cli(ctx, admin, tmp_path / "home")

        def app_state() -> dict[str, Any]:
            return {a["subdomain"]: a for a in json.loads(cli("apps", "list", "--json"))}["priv"]

        url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{hello_repo.bare}"
        out = cli("deploy", url, "--subdomain", "priv", "--deploy-key")
        key = next(line for line in out.splitlines() if line.startswith("ssh-ed25519 "))
        assert "PRIVATE KEY" not in out
        wait_until(lambda: app_state()["state"] == "build_failed", 120,
                   "the first clone to be refused", sup)
        app_id = app_state()["id"]
        failed = load_app(ctx, app_id)
        assert failed is not None and "deploy key" in failed.state_reason, failed.state_reason
        authorized.write_text(key + "\n")
        cli("reboot", str(app_id))
        wait_until(lambda: app_state()["state"] in ("running", "build_failed", "crashed"),
                   240, "the app to run", sup)
        assert app_state()["state"] == "running", load_app(ctx, app_id)
        assert any("Accepted publickey" in line for line in sshd.log), sshd.log[-10:]
    finally:
        sup.stop()
        sshd.stop()
