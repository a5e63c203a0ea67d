"""Git for app checkouts: clone a branch, read the head commit, check a remote branch.

`clone_tree` makes a new tree per deploy or push (`supervisor/sources/checkouts.py` says why and
how trees are laid out); `remote_branch_commit` is the cheap `git ls-remote` that polling
uses to notice a push on any git host.

Every call runs `git` with no prompts, no `ext::` transport, and `--` before user input, so
a URL or branch can never become an option. With `public_only` (callers pass
`not settings.allow_local_repos`) a fetch goes only to a host whose addresses are all
public, checked just before git runs and pinned for http(s), without redirects
(`backend.repositories.hosts`). Errors become `GitError` with a message for a
person (what failed, and what to check).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

from backend.apps import failures
from backend.repositories.hosts import RepoAddressError, public_fetch_target
from supervisor.runtimes.base import LogSink
from supervisor.sources.checkouts import new_tree_path

MAX_GIT_MESSAGE = 2048
GIT_BASE = ["git", "-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null",
            "-c", "advice.detachedHead=false"]


class GitError(Exception):
    """A git operation failed; the message says what to check."""


def _git_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
            "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "LANG": "C",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"}


async def _git(args: list[str], log: LogSink | None = None, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> str:
    """Run git; `env` adds to the fixed environment (e.g. git_auth's deploy key)."""
    proc = await asyncio.create_subprocess_exec(
        *GIT_BASE, *args, cwd=cwd, env={**_git_env(), **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        raise
    text_err = err.decode(errors="replace").strip()
    if log and text_err:
        for line in text_err.splitlines():
            log(line)
    if proc.returncode != 0:
        raise GitError(text_err or f"git {args[0]} failed with exit code {proc.returncode}")
    return out.decode(errors="replace").strip()


def _explain(error: GitError, repo_url: str, branch: str, workdir: Path | None = None) -> GitError:
    """What a failed clone says to its deployer: the explanation (`backend.apps.failures`) and
    git's own message, whole up to MAX_GIT_MESSAGE bytes (not only its last line, which
    is often a generic "Could not read from remote repository")."""
    text = str(error)
    if workdir is not None:
        text = text.replace(str(workdir), "<checkout>")
    found = failures.explain("clone", text, repo=repo_url, branch=branch)
    quoted = text.encode()[:MAX_GIT_MESSAGE].decode(errors="ignore")
    more = "\n…" if len(text.encode()) > MAX_GIT_MESSAGE else ""
    return GitError(f"{found.summary} {found.fix}\n\ngit said:\n{quoted}{more}")


async def _public_only_config(url: str, public_only: bool) -> list[str]:
    """[] when any host may be fetched; else the git options that hold git to the checked
    public addresses of `url`'s host, or `GitError` before git runs
    (`backend.repositories.hosts`)."""
    if not public_only:
        return []
    try:
        target = await asyncio.to_thread(public_fetch_target, url)
    except RepoAddressError as e:
        raise GitError(e.message) from None
    return list(target.git_config)


def _clone_dir(app_dir: Path) -> Path:
    """A new hidden directory under `app_dir` (made if missing) to clone into."""
    app_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".clone-", dir=app_dir))


async def clone_tree(repo_url: str, branch: str, app_dir: Path, log: LogSink,
                     env: dict[str, str] | None = None, *,
                     public_only: bool = False) -> tuple[str, Path]:
    """Clone `branch` into a new tree `app_dir/src-<commit12>-<rand>`; (commit, tree).
    `public_only` (setting allow_local_repos off): only from a host with public addresses.

    The clone happens in a hidden temporary directory on the same filesystem and is renamed
    into place only when complete, so a tree that exists is always a whole commit."""
    url = f"file://{repo_url}" if repo_url.startswith("/") else repo_url
    pinned = await _public_only_config(url, public_only)
    tmp = await asyncio.to_thread(_clone_dir, app_dir)
    try:
        try:
            await _git([*pinned, "clone", "--quiet", "--depth", "1", "--single-branch", "--branch",
                        branch, "--", url, str(tmp / "src")], log, env=env)
        except GitError as e:
            raise _explain(e, repo_url, branch, tmp) from None
        commit = await _git(["rev-parse", "HEAD"], cwd=tmp / "src")
        tree = new_tree_path(app_dir, commit)
        os.rename(tmp / "src", tree)
        return commit, tree
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def tracked_files(checkout: Path) -> list[str]:
    """Paths git tracks in `checkout` (relative, `/`-separated)."""
    out = await _git(["-c", "core.quotePath=false", "ls-files", "-z"], cwd=checkout)
    return [p for p in out.split("\0") if p]


async def head_commit(checkout: Path) -> str:
    return await _git(["rev-parse", "HEAD"], cwd=checkout)


async def remote_branch_commit(repo_url: str, branch: str,
                               env: dict[str, str] | None = None, *,
                               public_only: bool = False) -> str | None:
    """The commit `branch` points to on the remote, or None when it has no such branch
    (`public_only` as for `clone_tree`)."""
    url = f"file://{repo_url}" if repo_url.startswith("/") else repo_url
    pinned = await _public_only_config(url, public_only)
    out = await _git([*pinned, "ls-remote", "--heads", "--", url, f"refs/heads/{branch}"], env=env)
    return out.split()[0] if out else None
