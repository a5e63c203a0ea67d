"""Local git servers for tests: a real sshd on 127.0.0.1 that accepts only the keys in its
`authorized_keys` (git over SSH as a git host serves a deploy key), and bare repositories
with one commit on `main`. The sshd skips its test when sshd is missing, except under
CI=true, where it fails."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import free_port


class Sshd:
    """A non-daemon sshd on 127.0.0.1 accepting only keys listed in `authorized_keys`."""

    def __init__(self, root: Path, authorized_keys: Path) -> None:
        binary = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(binary):
            if os.environ.get("CI") == "true":
                pytest.fail("sshd is missing (apt-get install -y openssh-server)")
            pytest.skip("sshd is not installed (apt-get install -y openssh-server)")
        root.mkdir(parents=True, exist_ok=True)
        host_key = root / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                       check=True)
        self.host_public = host_key.with_suffix(".pub").read_text().split()[:2]
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        self.user = getpass.getuser()
        config = root / "sshd_config"
        config.write_text(f"""ListenAddress 127.0.0.1
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers {self.user}
LogLevel VERBOSE
""")
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config), "-p",
                                      str(self.port)], stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # blocks until sshd says it listens (or exits)
            self.log.append(line)
            if f"Server listening on 127.0.0.1 port {self.port}" in line:
                break
        else:
            raise RuntimeError("sshd did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr or []),
                         daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def bare_repo(root: Path, owner: str, name: str, files: dict[str, str]) -> Path:
    bare, work = root / owner / f"{name}.git", root / f"{name}-work"
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    for args in (["add", "-A"], ["commit", "-q", "-m", "initial"],
                 ["push", "-q", str(bare), "main"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    return bare
