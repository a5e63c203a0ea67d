"""git over SSH with a deploy key: the ssh command and key file, and a private repository
cloned from a real sshd that accepts only the deploy key the fake GitHub
(tests/support/fake_github.py) was given (supervisor/sources/git_auth.py provides git's
environment). That test skips when sshd is missing, except under CI=true, where it fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from backend.apps import service as apps
from backend.github import accounts as github
from backend.github import deploy as github_deploy
from backend.github import deploy_keys
from backend.github.client import (
    known_hosts_path,
)
from backend.repositories import credentials
from supervisor.sources import git_auth, gitsync
from tests.support.git_servers import Sshd, bare_repo
from tests.support.github_env import (
    TOKEN,
    app_row,
)


# git over SSH with the deploy key -------------------------------------------------------------
def test_ssh_command_and_key_file(gctx) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    with git_auth.key_env(gctx, key, port=2222) as env:
        cmd = env["GIT_SSH_COMMAND"]
        path = Path(cmd.split(" -i ")[1].split(" ")[0])
        assert path.read_text() == key + "\n"
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=accept-new",
                       f"UserKnownHostsFile={known_hosts_path(gctx)}", "-p 2222"):
            assert option in cmd
    assert not path.exists()
    with git_auth.deploy_key_env(gctx, 12345) as env:
        assert env == {}


def clone(url: str, dest: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**gitsync._git_env(), **extra_env}  # how gitsync runs git, plus git_auth's part
    return subprocess.run([*gitsync.GIT_BASE, "clone", "--quiet", "--depth", "1", "--", url,
                           str(dest)], env=env, capture_output=True, text=True, timeout=60)


def test_private_repo_cloned_over_ssh_with_the_deploy_key_only(gctx, fake_github, alice,
                                                               tmp_path) -> None:
    sshd = Sshd(tmp_path / "sshd", fake_github.authorized_keys)
    try:
        fake_github.ssh_user, fake_github.ssh_port = sshd.user, sshd.port
        fake_github.ssh_host_keys = [" ".join(sshd.host_public)]
        bare = bare_repo(tmp_path / "git", "alice", "secret",
                         {"streamlit_app.py": "import streamlit as st\nst.write('hi')\n",
                           "pages/more.py": "x = 1\n"})
        other = bare_repo(tmp_path / "git", "alice", "other", {"x.py": ""})
        fake_github.add_repo("alice", "secret", private=True, git_dir=bare)
        fake_github.add_repo("alice", "other", private=True, git_dir=other)
        github.connect_token(gctx, alice, TOKEN)
        assert github_deploy.list_python_files(gctx, alice, "alice/secret", "main") == \
            ["streamlit_app.py", "pages/more.py"]
        view = github_deploy.deploy_from_github(gctx, alice, "alice/secret", "main",
                                                "streamlit_app.py", subdomain="secret")
        app, _, _ = app_row(gctx, view.id)
        assert app.repo_url == f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{bare}"
        pinned = known_hosts_path(gctx).read_text()
        assert f"[127.0.0.1]:{sshd.port} {' '.join(sshd.host_public)}" in pinned
        with git_auth.deploy_key_env(gctx, view.id) as env:
            done = clone(app.repo_url, tmp_path / "clone", env)
            assert done.returncode == 0, done.stderr + "".join(sshd.log[-20:])
            assert "st.write('hi')" in (tmp_path / "clone" / "streamlit_app.py").read_text()
            # The key fetches only its own repository.
            wrong_repo = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{other}"
            assert clone(wrong_repo, tmp_path / "other", env).returncode != 0
        # Any other key is refused.
        stranger, _ = credentials.new_key_pair("stranger")
        with git_auth.key_env(gctx, stranger) as env:
            refused = clone(app.repo_url, tmp_path / "stranger", env)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        # Deleting the app deletes the deploy key on GitHub: the key no longer works.
        key = deploy_keys.deploy_key_for_app(gctx, view.id)
        assert key is not None
        apps.delete_app(gctx, alice, view.id)
        github_deploy.on_app_deleted(gctx, view.id)
        assert fake_github.find("alice/secret").keys == {}
        with git_auth.key_env(gctx, key) as env:
            assert clone(app.repo_url, tmp_path / "after", env).returncode != 0
    finally:
        sshd.stop()
