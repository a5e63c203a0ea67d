"""What the deploy form checks while a person types: the repository's branches and the files
of the chosen branch, subfolders included.

Each answer is cached for `TTL` seconds per repository (the branch list: one
`git ls-remote --heads`) and per repository and branch (the file list: one snapshot of
`checks.open_branch`, whose clone is removed at once), so a rerun per keystroke runs git
once per repository and branch rather than once per key. Failures are cached too (a
mistyped URL is not fetched again on the next key) and raised again as the same
`ValidationError`. Git runs as `checks` runs it: bounded, no prompts, held to the
repository's public addresses unless `allow_local_repos`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from backend.context import Context
from backend.errors import ValidationError
from backend.repositories import checks
from backend.repositories.hosts import public_fetch_target
from backend.validation import validate_branch, validate_repo_url

TTL = 30.0  # seconds an answer is reused
TIMEOUT = 10.0  # seconds one lookup may take
MAX_ENTRIES = 256
T = TypeVar("T")

_lock = threading.Lock()
_cache: dict[tuple[str, ...], tuple[float, object]] = {}


def _cached(key: tuple[str, ...], compute: Callable[[], T]) -> T:
    """`compute()` (or the error it raised) reused for TTL seconds."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < TTL:
        if isinstance(hit[1], ValidationError):
            raise hit[1]
        return hit[1]  # type: ignore[return-value]
    try:
        value: object = compute()
    except ValidationError as e:
        value = e
    with _lock:
        if len(_cache) >= MAX_ENTRIES:
            _cache.clear()
        _cache[key] = (time.monotonic(), value)
    if isinstance(value, ValidationError):
        raise value
    return value  # type: ignore[return-value]


def forget() -> None:
    """Drop every cached answer (tests, and after a push the form should see at once)."""
    with _lock:
        _cache.clear()


def branches(ctx: Context, repo_url: str) -> list[str]:
    """The repository's branch names, sorted; `ValidationError` (field repo_url) when it
    cannot be read, with the words of `checks.open_branch`."""
    repo_url = validate_repo_url(repo_url, ctx.settings.allow_local_repos)
    return _cached(("branches", repo_url), lambda: _ls_remote(ctx, repo_url))


def _ls_remote(ctx: Context, repo_url: str) -> list[str]:
    url = f"file://{repo_url}" if repo_url.startswith("/") else repo_url
    pinned = [] if ctx.settings.allow_local_repos else \
        list(public_fetch_target(url).git_config)
    try:
        out = checks.run_git([*pinned, "ls-remote", "--heads", "--", url],
                             time.monotonic() + TIMEOUT)
    except checks.GitFailed as e:
        raise checks.explain_failure(str(e), repo_url) from None
    except TimeoutError:
        raise ValidationError("repo_url", f"The repository {repo_url} did not answer within "
                              f"{TIMEOUT:.0f} s. Check the URL and that this server can "
                              "reach it.") from None
    names = [line.split("\t", 1)[1].removeprefix("refs/heads/")
             for line in out.splitlines() if "\trefs/heads/" in line]
    return sorted(names)


def files(ctx: Context, repo_url: str, branch: str) -> list[str]:
    """Every file path on `branch`, sorted; `ValidationError` (repo_url or branch) as
    `checks.open_branch` raises it."""
    repo_url = validate_repo_url(repo_url, ctx.settings.allow_local_repos)
    branch = validate_branch(branch)

    def listing() -> list[str]:
        with checks.open_branch(ctx, repo_url, branch, TIMEOUT) as snapshot:
            return sorted(snapshot.files)
    return _cached(("files", repo_url, branch), listing)


def python_files(paths: list[str]) -> list[str]:
    """The .py files of `paths`, top level first, then by path."""
    return sorted((p for p in paths if p.endswith(".py")), key=lambda p: (p.count("/"), p))


def branch_problem(ctx: Context, repo_url: str, branch: str) -> str:
    """What is wrong with `branch` ('' when it exists), naming the branches there are."""
    names = branches(ctx, repo_url)
    if branch.strip() in names:
        return ""
    listed = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
    return (f"There is no branch '{branch.strip()}' in this repository. Branches: {listed}."
            if names else "This repository has no branch yet: push one first.")


def main_file_problem(ctx: Context, repo_url: str, branch: str, main_file: str) -> str:
    """What is wrong with `main_file` on `branch` ('' when it is a file there)."""
    try:
        paths = files(ctx, repo_url, branch)
    except ValidationError as e:
        return str(e)
    if main_file.strip() in paths:
        return ""
    found = python_files(paths)
    listed = ", ".join(found[:8]) + (" …" if len(found) > 8 else "")
    hint = f" Python files there: {listed}." if found else " It has no Python file."
    return f"There is no file '{main_file.strip()}' on branch '{branch.strip()}'.{hint}"
