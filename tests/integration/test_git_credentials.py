"""Private repositories on any git host: an app's access token over https and its own
deploy key over ssh, against real local git servers (smart HTTP behind TLS and Basic
authorization, as GitLab, Gitea or Bitbucket serve a token; a real sshd accepting only the
key the developer added). The clone is the supervisor's (`gitsync.clone_tree` inside
`git_auth.deploy_key_env`, as the lifecycle runs it)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backend.apps import service as apps
from backend.context import Context
from backend.errors import ValidationError
from backend.repositories import credentials
from supervisor.sources import git_auth, gitsync
from tests.support.api_world import auth, run
from tests.support.git_http import GitHttpServer
from tests.support.git_servers import Sshd, bare_repo

TOKEN = "glpat-Secret-Token-0123456789"
FILES = {"streamlit_app.py": "import streamlit as st\nst.write('private')\n"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, the certificate being its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https_git(tmp_path: Path) -> Iterator[tuple[GitHttpServer, Path]]:
    """A TLS git server with team/private.git (token only) and team/public.git; and its
    certificate, to trust."""
    root = tmp_path / "srv"
    bare_repo(root, "team", "private", FILES)
    bare_repo(root, "team", "public", {"x.py": ""})
    server = GitHttpServer(root, "oauth2", TOKEN, private=("team/private.git",))
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    yield server, cert
    server.stop()


def clone(ctx: Context, app_id: int, url: str, dest: Path) -> tuple[str, Path]:
    async def run() -> tuple[str, Path]:
        with git_auth.deploy_key_env(ctx, app_id) as env:
            return await gitsync.clone_tree(url, "main", dest, lambda line: None, env)
    return asyncio.run(run())


def test_an_access_token_clones_over_https_and_goes_only_to_its_repository(
        ctx: Context, admin: Any, https_git: tuple[GitHttpServer, Path], tmp_path: Path) -> None:
    server, cert = https_git
    ctx.settings = ctx.settings.__class__(**{**ctx.settings.__dict__, "ca_bundle": str(cert)})
    url = f"https://127.0.0.1:{server.port}/team/private.git"
    view = apps.deploy_app(ctx, admin, repo_url=url, subdomain="private",
                           credential=credentials.access_token(TOKEN, "oauth2"))
    info = credentials.describe(ctx, admin, view.id)
    assert (info.kind, info.username, info.public_key) == ("token", "oauth2", "")
    assert TOKEN not in repr(info)

    commit, tree = clone(ctx, view.id, url, tmp_path / "app")
    assert (tree / "streamlit_app.py").read_text() == FILES["streamlit_app.py"]
    assert len(commit) == 40
    sent = [path for path, auth in server.seen if auth]
    assert sent and all(p.startswith("/team/private.git/") for p in sent), server.seen

    # The same app pointed at another repository of that host sends the token nowhere.
    server.seen.clear()
    public = f"https://127.0.0.1:{server.port}/team/public.git"
    clone(ctx, view.id, public, tmp_path / "public")
    assert server.seen and not any(auth for _, auth in server.seen), server.seen

    # A wrong token: the clone fails saying so, and the token is in no message.
    credentials.set_credential(ctx, admin, view.id, credentials.access_token("wrong-token"))
    with pytest.raises(gitsync.GitError) as failed:
        clone(ctx, view.id, url, tmp_path / "again")
    assert "wrong-token" not in str(failed.value) and TOKEN not in str(failed.value)
    assert "Authentication failed" in str(failed.value) or "401" in str(failed.value)


def test_without_a_credential_the_private_repository_is_refused(
        ctx: Context, admin: Any, https_git: tuple[GitHttpServer, Path], tmp_path: Path) -> None:
    server, cert = https_git
    ctx.settings = ctx.settings.__class__(**{**ctx.settings.__dict__, "ca_bundle": str(cert)})
    url = f"https://127.0.0.1:{server.port}/team/private.git"
    view = apps.deploy_app(ctx, admin, repo_url=url, subdomain="nocred")
    with pytest.raises(gitsync.GitError):
        clone(ctx, view.id, url, tmp_path / "app")
    assert not any(auth for _, auth in server.seen)


def test_a_credential_must_match_the_url_scheme(ctx: Context, admin: Any) -> None:
    with pytest.raises(ValidationError, match="https"):
        apps.deploy_app(ctx, admin, repo_url="http://127.0.0.1:9/team/x.git",
                        credential=credentials.access_token(TOKEN))
    with pytest.raises(ValidationError, match="ssh"):
        apps.deploy_app(ctx, admin, repo_url="https://127.0.0.1:9/team/x.git",
                        credential=credentials.new_deploy_key("x"))
    for bad in ("", "two words", "line\nbreak"):
        with pytest.raises(ValidationError):
            credentials.access_token(bad)


def test_a_deploy_key_clones_over_ssh_and_only_that_key(ctx: Context, admin: Any,
                                                        tmp_path: Path) -> None:
    authorized = tmp_path / "authorized_keys"
    authorized.write_text("")
    sshd = Sshd(tmp_path / "sshd", authorized)
    try:
        bare = bare_repo(tmp_path / "git", "team", "keyed", FILES)
        url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{bare}"
        view = apps.deploy_app(ctx, admin, repo_url=url, subdomain="keyed",
                               credential=credentials.new_deploy_key("keyed"))
        other = apps.deploy_app(ctx, admin, repo_url=url, subdomain="other",
                                credential=credentials.new_deploy_key("other"))
        public_key = credentials.describe(ctx, admin, view.id).public_key
        assert public_key.startswith("ssh-ed25519 ") and public_key.endswith(" stcloud-keyed")
        with pytest.raises(gitsync.GitError):  # before the developer added the key
            clone(ctx, view.id, url, tmp_path / "before")
        authorized.write_text(public_key + "\n")  # what the developer adds on the host
        _, tree = clone(ctx, view.id, url, tmp_path / "app")
        assert (tree / "streamlit_app.py").read_text() == FILES["streamlit_app.py"]
        with pytest.raises(gitsync.GitError):  # another app's key is not the one added
            clone(ctx, other.id, url, tmp_path / "other")
    finally:
        sshd.stop()
    proc = subprocess.run(["ls", str(ctx.settings.run_path / "git-keys")], capture_output=True,
                          text=True, check=False)
    assert proc.stdout.strip() == "", "key files are removed after each git run"


def test_the_api_deploys_with_a_new_deploy_key_and_never_returns_a_secret(
        world: Any, tmp_path: Path) -> None:
    """POST /apps with "deploy_key": true answers the public key to add; the app's
    git-credential shows it again; the private key and a token are in no answer."""
    url = "ssh://git@127.0.0.1:2222/team/keyed.git"
    answers: list[str] = []
    private_keys: list[str] = []

    async def scenario(c: Any) -> None:
        headers = auth(world, "developer")
        r = await c.post("/apps", json={"repo_url": url, "subdomain": "keyed-api",
                                        "deploy_key": True}, headers=headers)
        body = await r.json()
        answers.append(await r.text())
        assert r.status == 201, body
        assert body["deploy_key"].startswith("ssh-ed25519 ")
        app_id = body["id"]
        r = await c.get(f"/apps/{app_id}/git-credential", headers=headers)
        answers.append(await r.text())
        assert (await r.json()) == {"kind": "deploy_key", "username": "",
                                    "public_key": body["deploy_key"]}
        r = await c.put(f"/apps/{app_id}/git-credential", headers=headers,
                        json={"git_token": TOKEN})
        answers.append(await r.text())
        assert r.status == 422 and "https" in (await r.json())["error"]["message"]
        r = await c.post("/apps", headers=headers, json={
            "repo_url": "https://127.0.0.1:9/team/tok.git", "subdomain": "tok",
            "git_token": TOKEN, "deploy_key": True})
        assert r.status == 422
        stored = credentials.credential_for_app(world.ctx, app_id)
        assert stored is not None and "PRIVATE KEY" in stored[0].secret
        private_keys.append(stored[0].secret)
        r = await c.delete(f"/apps/{app_id}/git-credential", headers=headers)
        assert (await r.json())["kind"] == ""

    run(world, scenario)
    joined = "\n".join(answers)
    assert "PRIVATE KEY" not in joined and TOKEN not in joined
    assert private_keys and private_keys[0] not in joined
