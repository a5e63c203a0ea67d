"""Checks on a repository before a deploy is queued: does the branch exist, and the main
file on it? So the deploy form can say so under the field instead of a build failing later.

`check_main_file` makes a blob-less, checkout-less shallow clone of the branch into a
temporary directory (`git clone --depth 1 --filter=blob:none --no-checkout`: only commit
and tree objects travel, however big the files) and lists the tree with `git ls-tree`.
Git runs the way the supervisor runs it (supervisor/gitsync.py): no prompts, no `ext::`
transport, no hooks, `--` before user input; the whole check is bounded by `timeout` and
its process group is killed past it. Input is validated by `backend.validation` first;
without `allow_local_repos` the host must resolve to public addresses only, and git is held
to them (`backend.repo_hosts`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path, PurePosixPath

from backend import failures
from backend.context import Context
from backend.errors import ValidationError
from backend.repo_hosts import public_fetch_target
from backend.validation import validate_branch, validate_main_file, validate_repo_url

GIT_BASE = ["git", "-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null",
            "-c", "advice.detachedHead=false"]
DEFAULT_TIMEOUT = 20.0


class _GitFailed(Exception):
    pass


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
            "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "LANG": "C",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"}


def _git(args: list[str], cwd: Path | None, deadline: float, now: float) -> str:
    remaining = deadline - now
    if remaining <= 0:
        raise TimeoutError
    proc = subprocess.Popen([*GIT_BASE, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=remaining)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError from None
    if proc.returncode != 0:
        raise _GitFailed(err.decode(errors="replace").strip())
    return out.decode(errors="replace")


def check_main_file(ctx: Context, repo_url: str, branch: str, main_file: str,
                    timeout: float = DEFAULT_TIMEOUT) -> None:
    """Raise `ValidationError` (field repo_url, branch or main_file) unless `main_file`
    is a file on `branch` of `repo_url`. Returns None when it is."""
    repo_url = validate_repo_url(repo_url, ctx.settings.allow_local_repos)
    branch = validate_branch(branch)
    main_file = validate_main_file(main_file)
    url = f"file://{repo_url}" if repo_url.startswith("/") else repo_url
    pinned = [] if ctx.settings.allow_local_repos else \
        list(public_fetch_target(url).git_config)  # RepoAddressError: a ValidationError
    deadline = time.monotonic() + timeout
    tmp = Path(tempfile.mkdtemp(prefix="stcloud-check-"))
    try:
        try:
            _git([*pinned, "clone", "--quiet", "--depth", "1", "--filter=blob:none", "--no-checkout",
                  "--single-branch", "--branch", branch, "--", url, str(tmp / "r")],
                 None, deadline, time.monotonic())
        except _GitFailed as e:
            raise _explain(str(e), repo_url, branch) from None
        listing = _git(["ls-tree", "-r", "--name-only", "-z", "HEAD"], tmp / "r", deadline,
                       time.monotonic())
    except TimeoutError:
        raise ValidationError("repo_url", f"The repository {repo_url} did not answer within "
                              f"{timeout:.0f} s. Check the URL and that this server can "
                              "reach it.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = [f for f in listing.split("\0") if f]
    if main_file in files:
        return
    parent = str(PurePosixPath(main_file).parent)
    parent = "" if parent == "." else parent + "/"
    nearby = sorted(f for f in files if f.endswith(".py") and f.startswith(parent)
                    and "/" not in f[len(parent):])[:8]
    hint = f" Python files in {'/' + parent if parent else 'the top level'}: " \
        f"{', '.join(nearby)}." if nearby else ""
    raise ValidationError("main_file", f"There is no file '{main_file}' on branch "
                          f"'{branch}'.{hint}")


MAX_GIT_MESSAGE = 2048


def _explain(stderr: str, repo_url: str, branch: str) -> ValidationError:
    """The explanation of a failed check clone (`backend.failures`, as a deploy's clone
    says it) with git's whole message, bounded, under the field at fault."""
    found = failures.explain("clone", stderr, repo=repo_url, branch=branch)
    lowered = stderr.lower()
    field = "branch" if "remote branch" in lowered and "not found" in lowered else "repo_url"
    quoted = stderr.encode()[:MAX_GIT_MESSAGE].decode(errors="ignore").strip()
    said = f"\n\ngit said:\n{quoted}" if quoted else ""
    return ValidationError(field, f"{found.summary} {found.fix}{said}")
