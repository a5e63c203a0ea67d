"""The environment git runs with for a repository that needs a credential, for the deploy
checks (`backend.repositories.checks`) and the supervisor's clones and fetches
(`supervisor/sources/git_auth.py`) alike.

- A private key is written for the duration to a mode-0600 file in
  `<data_dir>/run/git-keys/` (directory 0700), removed afterwards, and named by
  `GIT_SSH_COMMAND`: ssh offers only that key (`IdentitiesOnly`, no agent), never prompts
  (`BatchMode`), ignores ~/.ssh/config (`-F /dev/null`) and checks the server against
  `<data_dir>/known_hosts` (a host seen for the first time is accepted, a changed key is
  refused).
- A token is git config in the environment (not the argument list, which `ps` shows):
  `http.<repository URL>.extraHeader` with Basic authorization, which git sends to that URL
  and the paths under it only, never to another host a submodule or a redirect names.
- The operator's own CA (setting `ca_bundle`) is trusted for https when set.
"""

from __future__ import annotations

import base64
import os
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.context import Context
from backend.repositories.credentials import GitCredential


def known_hosts_path(ctx: Context) -> Path:
    """The SSH known_hosts file of every git run over ssh (GitHub's keys are pinned there
    on deploy, `backend.github.deploy_keys.pin_host_keys`)."""
    return ctx.settings.data_dir / "known_hosts"


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
    """GIT_SSH_COMMAND for any private key (an app's deploy key, or a test's)."""
    with key_file(ctx.settings.run_path / "git-keys", private_key) as path:
        yield {"GIT_SSH_COMMAND": ssh_command(path, known_hosts_path(ctx), port)}


def token_env(repo_url: str, username: str, token: str) -> dict[str, str]:
    """Basic authorization `username:token` for `repo_url` and the paths under it only."""
    basic = base64.b64encode(f"{username}:{token}".encode()).decode()
    scope = repo_url.strip().rstrip("/")
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{scope}.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}


def trust_env(ctx: Context) -> dict[str, str]:
    return {"GIT_SSL_CAINFO": ctx.settings.ca_bundle} if ctx.settings.ca_bundle else {}


@contextmanager
def credential_env(ctx: Context, credential: GitCredential | None, repo_url: str,
                   port: int | None = None) -> Iterator[dict[str, str]]:
    """What git needs for `repo_url` with `credential` (None: only the trusted CA)."""
    if credential is None:
        yield trust_env(ctx)
    elif credential.kind == "token":
        yield {**trust_env(ctx), **token_env(repo_url, credential.username, credential.secret)}
    else:
        with key_env(ctx, credential.secret, port) as env:
            yield {**trust_env(ctx), **env}
