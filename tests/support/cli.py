"""The `stcloud` command line as the tests drive it: `python -m supervisor.cli` from the
project root with its own config file in a test folder, signed in with a new API token."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from backend.accounts import api_tokens
from backend.context import Context
from backend.platform.settings import PROJECT_ROOT
from models import User


def signed_in_cli(ctx: Context, user: User, home: Path,
                  token_name: str = "cli-test") -> Callable[..., str]:
    """cli(*args) -> its stdout, failing the test on a non-zero exit; signed in to the
    supervisor of `ctx` (which must be running) with a read,deploy token of `user`. The
    CLI's config file is home/cli.json."""
    env = {**os.environ, "STCLOUD_CLI_CONFIG": str(home / "cli.json"), "PYTHONUNBUFFERED": "1"}

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "supervisor.cli", *args], check=False,
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout
    _, token = api_tokens.create_token(ctx, user, token_name, "read,deploy")
    cli("login", "--url", f"http://localhost:{ctx.settings.port}", "--token", token)
    return cli
