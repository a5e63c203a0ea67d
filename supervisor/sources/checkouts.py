"""Source trees of an app on disk, and updating a live tree in place.

Layout: `apps/<id>/src-<commit12>-<rand>/` are checkouts (each a shallow clone of one
commit); `apps/<id>/src` is a symlink to the current one, which is what
`Lifecycle.checkout_dir` names (an older installation's real `src/` directory still works).
A zero-downtime redeploy clones into a new tree and starts the new instance there while the
old instance keeps running in its own tree; the symlink moves when the route does.

The symlink is only our bookkeeping pointer; it is never how a running app sees new code.
A running process's cwd and a Docker bind mount resolve the symlink once, at start: after
a symlink swap the app would still read the old directory. So a code-only push updates the
files *inside* the tree the instance runs in (`sync_in_place`): the new commit is cloned
into a temporary tree on the same filesystem, and each changed file is moved over the old
one with `os.replace` (an atomic rename: a reader sees the old file or the new one, never a
half-written one), then files the new commit no longer has are deleted. The whole swap is a
few renames: milliseconds. Streamlit's file watcher (poll, 0.2 s) then reruns the sessions.
"""

from __future__ import annotations

import filecmp
import os
import secrets
import shutil
import stat
from pathlib import Path

CURRENT = "src"


def current_tree(app_dir: Path) -> Path | None:
    """The directory `src` points to (or `src` itself in the old layout), if any."""
    link = app_dir / CURRENT
    if link.is_symlink():
        target = link.resolve()
        return target if target.is_dir() else None
    return link if link.is_dir() else None


def new_tree_path(app_dir: Path, commit: str) -> Path:
    return app_dir / f"{CURRENT}-{commit[:12]}-{secrets.token_hex(2)}"


def point_current(app_dir: Path, tree: Path) -> None:
    """Make `src` name `tree` (atomically replaces the symlink)."""
    link = app_dir / CURRENT
    if link.is_dir() and not link.is_symlink():  # old layout: keep it as a plain tree
        os.rename(link, app_dir / f"{CURRENT}-old-{secrets.token_hex(3)}")
    tmp = app_dir / f".{CURRENT}.{secrets.token_hex(4)}"
    os.symlink(tree.name, tmp)
    os.replace(tmp, link)


def remove_unused(app_dir: Path, keep: set[Path] | None = None) -> None:
    """Delete trees that are neither current nor in `keep` (e.g. a running instance's)."""
    keep_names = {p.name for p in (keep or set())}
    current = current_tree(app_dir)
    if current is not None:
        keep_names.add(current.name)
    if not app_dir.is_dir():
        return
    for path in app_dir.iterdir():
        if path.name.startswith(f"{CURRENT}-") and path.name not in keep_names \
                and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith((f".{CURRENT}.", ".clone-")):
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path, ignore_errors=True)


def _same(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(sa.st_mode) or stat.S_ISLNK(sb.st_mode):
        return stat.S_ISLNK(sa.st_mode) and stat.S_ISLNK(sb.st_mode) and \
            os.readlink(a) == os.readlink(b)
    if not (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)):
        return False
    return (sa.st_mode & 0o777) == (sb.st_mode & 0o777) and \
        filecmp.cmp(a, b, shallow=False)


def sync_in_place(live: Path, new: Path, old_files: list[str], new_files: list[str],
                  protect: frozenset[str] = frozenset(), last: str = "") -> tuple[int, int]:
    """Make the tracked files of `live` those of `new`; returns (changed, removed).

    `old_files`/`new_files` are the tracked paths of each commit (`git ls-files`); files
    nobody tracked (the app's own output, `__pycache__`, a copied secrets file) are left
    alone, and `protect` is never touched. No path is read or moved through a symlink of
    either tree (whose target could be any host file): a path under one in `new` is
    skipped, and one under a symlinked directory of `live` gets a real directory. Changed files
    move from `new` (it is consumed).
    `last` (the main file) is replaced after every other file, so when its change makes
    Streamlit rerun, the modules it imports are already new. Finally `live/.git` becomes
    the new commit's, so `git` in `live` reports the new commit.
    """
    live_root = live.resolve()
    changed: list[str] = []
    for rel in new_files:
        if rel in protect or not _inside(live_root, rel) or _through_link(new, rel):
            continue  # under a symlink of the new tree: not a file of it (could be anywhere)
        src, dst = new / rel, live / rel
        if not os.path.lexists(src) or (src.is_dir() and not src.is_symlink()):
            continue  # a submodule entry: nothing to copy
        if _through_link(live, rel) or not _same(src, dst):
            changed.append(rel)  # under a live symlink: _make_parents replaces the link
    changed.sort(key=lambda rel: rel == last)
    for rel in changed:
        dst = live / rel
        _make_parents(live, rel)
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)  # a directory became a file
        os.replace(new / rel, dst)
    keep = set(new_files)
    removed = 0
    for rel in old_files:
        if rel in keep or rel in protect or not _inside(live_root, rel):
            continue
        path = live / rel
        if _through_link(live, rel):
            continue  # under a symlink: the symlink itself is what changed
        if path.is_symlink() or path.is_file():
            path.unlink()
            removed += 1
            _prune_empty(path.parent, live)
    if (new / ".git").is_dir():
        old_git = live / f".git.old-{secrets.token_hex(3)}"
        if (live / ".git").exists():
            os.rename(live / ".git", old_git)
        os.rename(new / ".git", live / ".git")
        shutil.rmtree(old_git, ignore_errors=True)
    return len(changed), removed


def _inside(root: Path, rel: str) -> bool:
    return not rel.startswith("/") and ".." not in Path(rel).parts and \
        not rel.startswith(".git/")


def _make_parents(live: Path, rel: str) -> None:
    """Create the directories above `rel`, never following a symlink: a path that was a
    symlink or a file in the old commit and is a directory in the new one is replaced (so
    a repository cannot make us write outside its tree through a link)."""
    path = live
    for part in Path(rel).parts[:-1]:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        if not path.exists():
            path.mkdir()


def _through_link(live: Path, rel: str) -> bool:
    path = live
    for part in Path(rel).parts[:-1]:
        path = path / part
        if path.is_symlink():
            return True
    return False


def _prune_empty(directory: Path, stop: Path) -> None:
    while directory != stop and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
