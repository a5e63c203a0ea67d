"""Deploy keys of apps deployed from private GitHub repositories: a new ed25519 pair (the
public half becomes a read-only deploy key, the private half is stored encrypted on the
app's AppGithub row), GitHub's published SSH host keys pinned in our known_hosts before the
first clone, and the app's private key for git (`supervisor/sources/git_auth.py`).
`deploy_key_for_app` also finds a key whose row is not linked to the app yet, by subdomain:
the key exists before the app row does, so the supervisor's first clone always finds it."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import requests
from github import GithubException
from sqlmodel import select

from backend.apps import secrets as secret_box
from backend.context import Context
from backend.errors import BackendError
from backend.github.client import Conn, GithubError, known_hosts_path
from models import App, session_scope
from models.github import AppGithub


def ssh_host_port(ssh_url: str) -> tuple[str, int | None]:
    """(host, port or None) of an ssh URL, scp-like (`git@host:path`) or `ssh://`."""
    scp = re.match(r"^[\w.-]+@([\w.-]+):(?!//)", ssh_url)
    if scp:
        return scp.group(1), None
    parsed = urlparse(ssh_url)
    return parsed.hostname or "", parsed.port


def pin_host_keys(ctx: Context, conn: Conn, ssh_url: str) -> None:
    """Add the SSH host keys GitHub publishes (`GET /meta`) to our known_hosts, so the
    first clone already checks the server's identity. Best effort."""
    host, port = ssh_host_port(ssh_url)
    try:
        _, data = conn.gh.requester.requestJsonAndCheck("GET", "/meta")
    except (GithubException, requests.RequestException):
        return
    published = [k for k in (data or {}).get("ssh_keys", []) if isinstance(k, str)]
    if not host or not published:
        return
    name = host if port in (None, 22) else f"[{host}]:{port}"
    path = known_hosts_path(ctx)
    existing = set(path.read_text().splitlines()) if path.exists() else set()
    new = [f"{name} {k.strip()}" for k in published if f"{name} {k.strip()}" not in existing]
    if new:
        with open(path, "a") as fh:
            fh.write("".join(line + "\n" for line in new))


def deploy_key_for_app(ctx: Context, app_id: int) -> str | None:
    """The app's deploy private key (OpenSSH text), or None for apps without one."""
    with session_scope(ctx.engine) as s:
        row = s.exec(select(AppGithub).where(AppGithub.app_id == app_id)).first()
        if row is None:
            app = s.get(App, app_id)
            if app is not None:
                row = s.exec(select(AppGithub).where(
                    AppGithub.app_id == None,  # noqa: E711
                    AppGithub.pending_subdomain == app.subdomain)).first()
        token = row.private_key_ciphertext if row is not None else ""
    if not token:
        return None
    try:
        return secret_box.decrypt(ctx, token)
    except BackendError:
        raise GithubError("This app's deploy key cannot be decrypted (the server key in "
                          "<data_dir>/keys changed); redeploy the app.") from None
