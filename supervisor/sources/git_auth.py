"""Git over SSH with an app's deploy key (private GitHub repositories, backend.github.deploy_keys).

`deploy_key_env(ctx, app_id)` is a context manager giving the environment variables git
needs for that app: `{}` for an app without a deploy key (public repositories, other
hosts), else `GIT_SSH_COMMAND` naming the app's private key, which is written for the
duration to a mode-0600 file in `<data_dir>/run/git-keys/` (directory 0700) and removed
afterwards. Use it around every clone, fetch and ls-remote of the app, merged over
gitsync's fixed environment:

    with git_auth.deploy_key_env(ctx, app.id) as extra:
        env = {**gitsync._git_env(), **extra}

The ssh command offers only that key (`IdentitiesOnly`, no agent), never prompts
(`BatchMode`), ignores the user's ~/.ssh/config (`-F /dev/null`, so nothing there adds keys
or proxies), and checks the server against `<data_dir>/known_hosts`: GitHub's published
host keys are pinned there on deploy (`deploy_keys.pin_host_keys`); a host seen for the
first time is accepted (`accept-new`), a changed host key is refused.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.context import Context
from backend.github.client import known_hosts_path
from backend.github.deploy_keys import deploy_key_for_app


def ssh_command(key_file: Path, known_hosts: Path, port: int | None = None) -> str:
    """The GIT_SSH_COMMAND value (a shell command line, so paths are quoted)."""
    parts = ["ssh", "-F", "/dev/null", "-i", str(key_file), "-o", "IdentitiesOnly=yes",
             "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=accept-new",
             "-o", f"UserKnownHostsFile={known_hosts}"]
    if port:
        parts += ["-p", str(int(port))]
    return " ".join(shlex.quote(p) for p in parts)


@contextmanager
def key_file(directory: Path, private_key: str) -> Iterator[Path]:
    """`private_key` in a new mode-0600 file under `directory`, deleted on exit."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd, name = tempfile.mkstemp(prefix="key-", dir=directory)  # created 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(private_key if private_key.endswith("\n") else private_key + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextmanager
def key_env(ctx: Context, private_key: str, port: int | None = None) -> Iterator[dict[str, str]]:
    """GIT_SSH_COMMAND for any private key (the deploy key of an app, or a test's)."""
    with key_file(ctx.settings.run_path / "git-keys", private_key) as path:
        yield {"GIT_SSH_COMMAND": ssh_command(path, known_hosts_path(ctx), port)}


@contextmanager
def deploy_key_env(ctx: Context, app_id: int, port: int | None = None) -> Iterator[dict[str, str]]:
    """Environment overrides for git commands on `app_id`'s repository ({} without a key).
    `port` is only needed when the ssh URL cannot carry it (scp-like `git@host:path`)."""
    private_key = deploy_key_for_app(ctx, app_id)
    if private_key is None:
        yield {}
        return
    with key_env(ctx, private_key, port) as env:
        yield env
