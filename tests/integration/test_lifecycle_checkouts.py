"""Checkouts without a supervisor process: the in-place file swap on real git checkouts
(atomic, never through a symlink) and environments shared by workspace."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import threading
from pathlib import Path

from backend.apps import service as apps
from supervisor.sources import checkouts, gitsync
from tests.support.lifecycle_support import (
    FakeRuntime,
)
from tests.support.supervisor_harness import load_app


# In-place file swap -----------------------------------------------------------------------
def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})


def test_sync_in_place_flips_files_atomically(make_repo, tmp_path: Path) -> None:
    big_a, big_b = b"A" * 4_000_000, b"B" * 4_000_000
    repo = make_repo("swap", {"app.py": "v = 1\n", "lib/helper.py": "h = 1\n",
                              "old.txt": "gone soon\n", "big.bin": big_a,
                              "same.txt": "unchanged\n"})
    app_dir = tmp_path / "apps" / "1"

    async def clone() -> tuple[str, Path]:
        return await gitsync.clone_tree(repo.url, "main", app_dir, lambda line: None)

    first, live = asyncio.run(clone())
    checkouts.point_current(app_dir, live)
    (live / "output.csv").write_text("the app's own file\n")  # untracked: kept
    same_inode = (live / "same.txt").stat().st_ino
    second = repo.commit({"app.py": "v = 2\n", "lib/helper.py": None, "lib/new.py": "n = 2\n",
                          "old.txt": None, "big.bin": big_b}, "second")
    _, fresh = asyncio.run(clone())
    old_files = asyncio.run(gitsync.tracked_files(live))
    new_files = asyncio.run(gitsync.tracked_files(fresh))
    torn: list[int] = []
    stop = threading.Event()

    def reader() -> None:  # a reader never sees a half-written file
        while not stop.is_set():
            data = (live / "big.bin").read_bytes()
            if data not in (big_a, big_b):
                torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        changed, removed = checkouts.sync_in_place(live, fresh, old_files, new_files,
                                                   last="app.py")
    finally:
        stop.set()
        thread.join()
    assert torn == []
    assert (changed, removed) == (3, 2)
    assert (live / "app.py").read_text() == "v = 2\n" and (live / "big.bin").read_bytes() == big_b
    assert not (live / "old.txt").exists() and not (live / "lib" / "helper.py").exists()
    assert (live / "lib" / "new.py").exists() and (live / "output.csv").exists()
    assert (live / "same.txt").stat().st_ino == same_inode  # untouched when unchanged
    assert asyncio.run(gitsync.head_commit(live)) == second != first
    assert checkouts.current_tree(app_dir) == live.resolve()
    checkouts.remove_unused(app_dir)
    assert [p.name for p in app_dir.iterdir() if p.name != "src"] == [live.name]


def test_sync_in_place_never_writes_through_a_symlink(make_repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = make_repo("evil", {"app.py": "x\n"})
    os.symlink(str(outside), repo.work / "d")
    git("add", "d", cwd=repo.work)
    repo.commit({}, "a link")
    app_dir = tmp_path / "apps" / "2"
    _, live = asyncio.run(gitsync.clone_tree(repo.url, "main", app_dir, lambda line: None))
    (repo.work / "d").unlink()
    repo.commit({"d/passwd": "pwned\n"}, "a directory where the link was")
    _, fresh = asyncio.run(gitsync.clone_tree(repo.url, "main", app_dir, lambda line: None))
    checkouts.sync_in_place(live, fresh, asyncio.run(gitsync.tracked_files(live)),
                            asyncio.run(gitsync.tracked_files(fresh)))
    assert list(outside.iterdir()) == []
    assert (live / "d").is_dir() and not (live / "d").is_symlink()
    assert (live / "d" / "passwd").read_text() == "pwned\n"


def test_env_sharing_by_workspace_scopes_each_environment(ctx, admin, tmp_path) -> None:
    """Same dependencies in two workspaces: one environment for the installation by
    default, one per workspace with env_sharing = workspace."""
    from supervisor.control.lifecycle import Lifecycle
    one = apps.deploy_app(ctx, admin, repo_url="https://github.com/acme/a", subdomain="a")
    two = apps.deploy_app(ctx, admin, repo_url="https://github.com/other/b", subdomain="b")
    assert one.workspace_id != two.workspace_id
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("pandas==3.1.1\n")
    shared = Lifecycle(ctx, FakeRuntime())  # type: ignore[arg-type]  # only its name is read
    a, b = (shared.env_spec(load_app(ctx, i), src) for i in (one.id, two.id))
    assert a.scope == b.scope == "" and a.dep_hash == b.dep_hash
    scoped_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, env_sharing="workspace"))
    scoped = Lifecycle(scoped_ctx, FakeRuntime())  # type: ignore[arg-type]  # likewise
    x, y = (scoped.env_spec(load_app(ctx, i), src) for i in (one.id, two.id))
    assert (x.scope, y.scope) == (f"workspace-{one.workspace_id}",
                                  f"workspace-{two.workspace_id}")
    assert len({x.dep_hash, y.dep_hash, a.dep_hash}) == 3
    assert scoped.env_spec(load_app(ctx, one.id), src).dep_hash == x.dep_hash  # stable
