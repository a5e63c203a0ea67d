"""`python -m supervisor.cli deploy .` from real git working trees with local bare remotes,
against a real supervisor (process runtime): remote, branch and main file are found, the
build's phases are printed and then the URL once the app answers; an ambiguous main file
is asked on a terminal, refused with the choices without one, and resolved by
--main-file; no git repository, no remote, an unpushed branch and a remote the platform
cannot reach each get a message that says what to do."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.accounts import api_tokens
from backend.context import Context
from backend.platform.settings import PROJECT_ROOT
from models import User
from supervisor import local_deploy
from supervisor.api_client import CliError
from tests.conftest import EXAMPLE_APP, GitRepo, _git
from tests.support.supervisor_harness import SupervisorProcess

PAGE = "import streamlit as st\nst.write({!r})\n"


def example_files() -> dict[str, str | bytes | None]:
    return {p.name: p.read_text() for p in EXAMPLE_APP.iterdir() if p.is_file()}


class Cli:
    def __init__(self, tmp: Path, url: str, token: str) -> None:
        self.env = {**os.environ, "STCLOUD_CLI_CONFIG": str(tmp / "cli.json"),
                    "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}
        self.url, self.token = url, token

    def __call__(self, *args: str, cwd: Path, stdin: int | None = subprocess.DEVNULL,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], cwd=cwd,
                              env=self.env, stdin=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def login(self) -> None:
        done = self("login", "--url", self.url, "--token", self.token, cwd=PROJECT_ROOT)
        assert done.returncode == 0, done.stderr

    def apps(self) -> dict[str, dict[str, Any]]:
        done = self("apps", "list", "--json", cwd=PROJECT_ROOT)
        return {a["subdomain"]: a for a in json.loads(done.stdout)}


@pytest.fixture
def platform(ctx: Context, admin: User, tmp_path: Path) -> Iterator[Cli]:
    _, token = api_tokens.create_token(ctx, admin, "laptop", "read,deploy")
    sup = SupervisorProcess(ctx.settings, tmp_path / "supervisor.log").start()
    cli = Cli(tmp_path, f"http://localhost:{ctx.settings.port}", token)
    cli.login()
    yield cli
    sup.stop()


def test_deploy_dot_finds_the_tree_prints_phases_and_the_url(
        platform: Cli, make_repo: Callable[..., GitRepo], ctx: Context) -> None:
    repo = make_repo("dotted", example_files())
    (repo.work / "notes").mkdir()
    done = platform("deploy", ".", "--subdomain", "dotted", cwd=repo.work / "notes")
    assert done.returncode == 0, (done.stdout, done.stderr)
    out = done.stdout
    assert (f"remote origin ({repo.bare}), branch main, main file streamlit_app.py"
            in out), out
    phases = [line.split("]")[0] + "]" for line in out.splitlines() if line.startswith("[")]
    assert phases[:4] == ["[queued]", "[building]", "[starting]", "[running]"], out
    log = [line for line in out.splitlines() if line.startswith("    ")]
    assert any("Checked out commit" in line for line in log), out
    # The build log starts while the app is still queued (its first line is "Deploying …").
    assert out.index("[queued]") < out.index(log[0]) < out.index("[running]")
    url = f"http://dotted.localhost:{ctx.settings.port}"
    assert out.rstrip().endswith(f"The app answers at {url}"), out
    app = platform.apps()["dotted"]
    assert (app["repo_url"], app["branch"], app["main_file"], app["state"]) == \
        (str(repo.bare), "main", "streamlit_app.py", "running")

    # A local commit that is not pushed is named, and the pushed one is what deploys.
    (repo.work / "extra.py").write_text("x = 1\n")
    _git("add", "extra.py", cwd=repo.work)
    _git("commit", "-q", "-m", "local only", cwd=repo.work)
    _git("checkout", "-q", "-b", "feature", cwd=repo.work)
    done = platform("deploy", ".", cwd=repo.work)
    assert done.returncode == 2
    assert "Branch feature is not on remote origin" in done.stderr
    assert "git push -u origin feature" in done.stderr


def test_an_ambiguous_main_file_is_asked_or_named(
        platform: Cli, make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo("pages", {"first.py": PAGE.format("first"),
                               "second.py": PAGE.format("second"),
                               "helper.py": "VALUE = 1\n",
                               "requirements.txt": example_files()["requirements.txt"]})
    done = platform("deploy", ".", cwd=repo.work)
    assert done.returncode == 2
    assert "Several main files could be meant: first.py, second.py. Pass one with " \
        "--main-file." in done.stderr, done.stderr

    leader, follower = pty.openpty()
    try:
        os.write(leader, b"2\n")  # the terminal's answer, read once the question is asked
        done = platform("deploy", ".", "--subdomain", "asked", cwd=repo.work, stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Which main file?\n  1) first.py\n  2) second.py" in done.stdout
    assert "main file second.py" in done.stdout and "The app answers at" in done.stdout

    done = platform("deploy", ".", "--main-file", "first.py", "--subdomain", "named",
                    "--timeout", "1", cwd=repo.work)
    assert "Which main file?" not in done.stdout and "main file first.py" in done.stdout
    apps = platform.apps()
    assert (apps["asked"]["main_file"], apps["named"]["main_file"]) == \
        ("second.py", "first.py")


def test_deploy_dot_says_what_is_missing(
        platform: Cli, make_repo: Callable[..., GitRepo], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    done = platform("deploy", ".", cwd=plain)
    assert done.returncode == 2 and "is not in a git working tree" in done.stderr

    _git("init", "-q", "-b", "main", cwd=plain)
    (plain / "streamlit_app.py").write_text(PAGE.format("x"))
    _git("add", "-A", cwd=plain)
    _git("commit", "-q", "-m", "one", cwd=plain)
    done = platform("deploy", ".", cwd=plain)
    assert done.returncode == 2 and "has no git remote" in done.stderr
    assert "git remote add origin URL" in done.stderr

    # A remote this machine cannot read, nor the platform: the platform's refusal, with why.
    _git("remote", "add", "origin", "http://127.0.0.1:9/owner/gone.git", cwd=plain)
    done = platform("deploy", ".", cwd=plain)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "could not read remote origin from here" in done.stdout
    assert "(field: repo_url)" in done.stderr
    assert "The platform clones http://127.0.0.1:9/owner/gone.git itself" in done.stderr
    assert platform.apps() == {}


def committed_tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    _git("init", "-q", "-b", "main", cwd=root)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    _git("add", "-A", cwd=root)
    _git("commit", "-q", "-m", "one", cwd=root)
    return root


def test_main_file_and_remote_rules(tmp_path: Path) -> None:
    """The choices `deploy .` makes without asking, and the ones it asks (no platform)."""
    asked: list[tuple[str, list[str]]] = []

    def ask(what: str, choices: list[str], flag: str) -> str:
        asked.append((what, choices))
        return choices[-1]

    both = committed_tree(tmp_path / "both", {"streamlit_app.py": PAGE, "app.py": PAGE})
    assert local_deploy.find_main_file(both, "", ask) == "app.py"
    assert asked == [("main file", ["streamlit_app.py", "app.py"])]
    one = committed_tree(tmp_path / "one", {"app.py": "print(1)\n", "ui/page.py": PAGE})
    assert local_deploy.find_main_file(one, "", ask) == "app.py"
    nested = committed_tree(tmp_path / "nested", {"src/dash.py": "from streamlit import "
                                                  "write\n", "lib.py": "import os\n"})
    assert local_deploy.find_main_file(nested, "", ask) == "src/dash.py"
    (nested / "untracked.py").write_text(PAGE)  # not committed: not what the platform gets
    assert local_deploy.find_main_file(nested, "", ask) == "src/dash.py"
    with pytest.raises(CliError, match="is not in the last commit"):
        local_deploy.find_main_file(nested, "untracked.py", ask)
    none = committed_tree(tmp_path / "none", {"lib.py": "import os\n"})
    with pytest.raises(CliError, match="No committed .py file .* imports streamlit"):
        local_deploy.find_main_file(none, "", ask)

    _git("remote", "add", "upstream", "https://u:secret@example.invalid/a/b.git", cwd=none)
    _git("remote", "add", "fork", "https://example.invalid/me/b.git", cwd=none)
    asked.clear()
    assert local_deploy.find_remote(none, "", ask) == "upstream"  # choices sorted by git
    assert asked == [("remote", ["fork", "upstream"])]
    _git("remote", "add", "origin", "https://example.invalid/o/b.git", cwd=none)
    assert local_deploy.find_remote(none, "", ask) == "origin"
    assert local_deploy.without_credentials("https://u:secret@example.invalid:8443/a/b.git") \
        == "https://example.invalid:8443/a/b.git"
    assert local_deploy.without_credentials("git@host:a/b.git") == "git@host:a/b.git"


def test_a_failed_build_prints_its_reason_and_log(
        platform: Cli, make_repo: Callable[..., GitRepo]) -> None:
    repo = make_repo("broken", {"streamlit_app.py": PAGE.format("x"),
                                "requirements.txt": "no-such-package-stcloud-cli==9.9\n"})
    done = platform("deploy", ".", "--subdomain", "broken", cwd=repo.work)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "[building]" in done.stdout and "[build_failed]" in done.stdout
    assert "The app is build failed:" in done.stdout and "The app answers" not in done.stdout
    log = [line for line in done.stdout.splitlines() if line.startswith("    ")]
    assert any("no-such-package-stcloud-cli" in line for line in log), done.stdout
    quiet = platform("deploy", ".", "--subdomain", "broken-quiet", "--quiet", cwd=repo.work)
    assert quiet.returncode == 1 and "[build_failed]" in quiet.stdout
    assert not [line for line in quiet.stdout.splitlines() if line.startswith("    ")]
    tail = quiet.stdout.split("The end of its build log:", 1)[1]
    assert "no-such-package-stcloud-cli" in tail
