"""Checks on a repository before a deploy is queued: does the branch exist, the main file on
it, and what do its small files say? So the deploy form can say so under the field instead of
a build failing later.

`open_branch` fetches the branch's last commit once: a shallow, single-branch, checkout-less
clone (`git clone --depth 1 --filter=blob:limit=64k --no-checkout`) that brings the commit,
its trees and only the blobs of at most `MAX_FILE` bytes. The dependency files,
`.python-version` and `packages.txt` are small; a repository's data files are not fetched.
The `BranchSnapshot` lists every file of the branch (the main-file check) and reads the small
ones (the dependency and runtime checks of `backend.apps.deploy` and `backend.app_requirements`),
so a deploy's checks share one clone. A server that ignores the filter (a plain `file://`, a
git daemon without `uploadpack.allowFilter`) sends the commit's blobs; reads stay local either
way: a file over the limit reads as absent, never fetched.
Git runs the way the supervisor runs it (supervisor/sources/gitsync.py): no prompts, no `ext::`
transport, no hooks, `--` before user input; the whole check is bounded by `timeout` and
its process group is killed past it. Input is validated by `backend.validation` first;
without `allow_local_repos` the host must resolve to public addresses only, and git is held
to them (`backend.repositories.hosts`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from backend.apps import failures
from backend.context import Context
from backend.errors import ValidationError
from backend.repositories import git_env
from backend.repositories.credentials import GitCredential
from backend.repositories.hosts import public_fetch_target
from backend.validation import validate_branch, validate_main_file, validate_repo_url

GIT_BASE = ["git", "-c", "protocol.ext.allow=never", "-c", "core.hooksPath=/dev/null",
            "-c", "advice.detachedHead=false"]
DEFAULT_TIMEOUT = 20.0
MAX_FILE = 64 * 1024  # the blobs a snapshot fetches and reads
REGULAR = ("100644", "100755")


class GitFailed(Exception):
    """A git command of a repository check failed; its message is git's own words."""


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
            "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "LANG": "C",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"}


def _git(args: list[str], cwd: Path | None, deadline: float, now: float,
         extra_env: dict[str, str] | None = None) -> str:
    remaining = deadline - now
    if remaining <= 0:
        raise TimeoutError
    proc = subprocess.Popen([*GIT_BASE, *args], cwd=cwd, env={**_env(), **(extra_env or {})},
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=remaining)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError from None
    if proc.returncode != 0:
        raise GitFailed(err.decode(errors="replace").strip())
    return out.decode(errors="replace")


@dataclass
class BranchSnapshot:
    """The files of a branch's last commit: `files` maps each path to (mode, size), the
    size -1 for a file too big to have been fetched."""

    repo_url: str
    branch: str
    files: dict[str, tuple[str, int]]
    _dir: Path
    _deadline: float
    _cache: dict[str, bytes | None] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict)  # a credential's, for lazy fetches

    def read(self, path: str) -> bytes | None:
        """The content of `path` when it is a regular file of at most MAX_FILE bytes."""
        if path not in self._cache:
            mode, size = self.files.get(path, ("", 0))
            self._cache[path] = None if mode not in REGULAR or not 0 <= size <= MAX_FILE else \
                _git(["cat-file", "blob", f"HEAD:{path}"], self._dir, self._deadline,
                     time.monotonic(), self._env).encode()
        return self._cache[path]

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """The readable ones of `paths` (see `read`), by path."""
        found = {p: self.read(p) for p in dict.fromkeys(paths)}
        return {p: content for p, content in found.items() if content is not None}


@contextmanager
def open_branch(ctx: Context, repo_url: str, branch: str, timeout: float = DEFAULT_TIMEOUT,
                credential: GitCredential | None = None) -> Iterator[BranchSnapshot]:
    """The snapshot of `branch` of `repo_url`, removed on leaving the block. Raises
    `ValidationError` (field repo_url or branch) when it cannot be fetched, or past
    `timeout` seconds for the fetch and the reads made in the block together.
    `credential`: a private repository's deploy key or token (`git_env`)."""
    repo_url = validate_repo_url(repo_url, ctx.settings.allow_local_repos)
    branch = validate_branch(branch)
    url = f"file://{repo_url}" if repo_url.startswith("/") else repo_url
    pinned = [] if ctx.settings.allow_local_repos else \
        list(public_fetch_target(url).git_config)  # RepoAddressError: a ValidationError
    deadline = time.monotonic() + timeout
    tmp = Path(tempfile.mkdtemp(prefix="stcloud-check-"))
    with git_env.credential_env(ctx, credential, repo_url) as env, \
            _removed(tmp):
        yield from _snapshot(repo_url, branch, url, pinned, tmp, deadline, timeout, env)


@contextmanager
def _removed(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _snapshot(repo_url: str, branch: str, url: str, pinned: list[str], tmp: Path,
              deadline: float, timeout: float,
              env: dict[str, str]) -> Iterator[BranchSnapshot]:
    try:
        try:
            _git([*pinned, "clone", "--quiet", "--depth", "1", f"--filter=blob:limit={MAX_FILE}",
                  "--no-checkout", "--no-tags", "--single-branch", "--branch", branch, "--",
                  url, str(tmp / "r")], None, deadline, time.monotonic(), env)
        except GitFailed as e:
            raise _explain(str(e), repo_url, branch) from None
        # Sizes from the objects present only: `ls-tree -l` would fetch each blob the
        # filter left out just to tell its size.
        listing = _git(["ls-tree", "-r", "-z", "HEAD"], tmp / "r", deadline, time.monotonic())
        present = _git(["cat-file", "--batch-all-objects", "--batch-check="
                        "%(objectname) %(objecttype) %(objectsize)"], tmp / "r", deadline,
                       time.monotonic())
        yield BranchSnapshot(repo_url, branch, _blobs(listing, present), tmp / "r", deadline,
                             _env=env)
    except TimeoutError:
        raise ValidationError("repo_url", f"The repository {repo_url} did not answer within "
                              f"{timeout:.0f} s. Check the URL and that this server can "
                              "reach it.") from None


def _blobs(listing: str, present: str) -> dict[str, tuple[str, int]]:
    """{path: (mode, size)} of the blobs in `git ls-tree -r -z` output; the size is -1 for
    a blob not fetched (`present`: `git cat-file --batch-check` lines of the objects here)."""
    sizes = {}
    for line in present.splitlines():
        oid, kind, size = line.split()
        if kind == "blob":
            sizes[oid] = int(size)
    files: dict[str, tuple[str, int]] = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, kind, oid = meta.split()
        if kind == "blob":
            files[path] = (mode, sizes.get(oid, -1))
    return files


def check_main_file(ctx: Context, repo_url: str, branch: str, main_file: str,
                    timeout: float = DEFAULT_TIMEOUT) -> None:
    """Raise `ValidationError` (field repo_url, branch or main_file) unless `main_file`
    is a file on `branch` of `repo_url`. Returns None when it is."""
    main_file = validate_main_file(main_file)
    with open_branch(ctx, repo_url, branch, timeout) as snapshot:
        check_main_file_in(snapshot, main_file)


def check_main_file_in(snapshot: BranchSnapshot, main_file: str) -> None:
    """`check_main_file` on a snapshot already fetched."""
    main_file = validate_main_file(main_file)
    if main_file in snapshot.files:
        return
    parent = str(PurePosixPath(main_file).parent)
    parent = "" if parent == "." else parent + "/"
    nearby = sorted(f for f in snapshot.files if f.endswith(".py") and f.startswith(parent)
                    and "/" not in f[len(parent):])[:8]
    hint = f" Python files in {'/' + parent if parent else 'the top level'}: " \
        f"{', '.join(nearby)}." if nearby else ""
    raise ValidationError("main_file", f"There is no file '{main_file}' on branch "
                          f"'{snapshot.branch}'.{hint}")


MAX_GIT_MESSAGE = 2048


def _explain(stderr: str, repo_url: str, branch: str) -> ValidationError:
    """The explanation of a failed check clone (`backend.apps.failures`, as a deploy's clone
    says it) with git's whole message, bounded, under the field at fault."""
    if repo_url.startswith("/") and not _is_repository(Path(repo_url)):
        return ValidationError("repo_url", f"There is no git repository at {repo_url}. Check "
                               "the path for a typo, or make one there (git init, then commit "
                               "the app) and deploy again.")
    found = failures.explain("clone", stderr, repo=repo_url, branch=branch)
    lowered = stderr.lower()
    field = "branch" if "remote branch" in lowered and "not found" in lowered else "repo_url"
    quoted = stderr.encode()[:MAX_GIT_MESSAGE].decode(errors="ignore").strip()
    said = f"\n\ngit said:\n{quoted}" if quoted else ""
    return ValidationError(field, f"{found.summary} {found.fix}{said}")


def _is_repository(path: Path) -> bool:
    """Whether `path` on this server looks like a git repository (bare or with a work tree)."""
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


def run_git(args: list[str], deadline: float) -> str:
    """Git `args` run as the checks run it (bounded by the monotonic `deadline`); raises
    `GitFailed` with git's words, or `TimeoutError`."""
    return _git(args, None, deadline, time.monotonic())


def explain_failure(stderr: str, repo_url: str, branch: str = "") -> ValidationError:
    """The `ValidationError` a failed fetch of `repo_url` is shown as (see `_explain`)."""
    return _explain(stderr, repo_url, branch)
