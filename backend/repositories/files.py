"""Reading files of a repository checkout: the one way platform code does it.

A checkout holds whatever the repository committed: symbolic links to anywhere on the host
(`requirements.txt -> ../../keys/dashboard_cookie`, `.python-version -> /etc/shadow`),
FIFOs that would block a reader forever, files of gigabytes. The supervisor and the
backend read a checkout only through this module, which runs as the platform (with its
rights) and so must never be led outside the checkout:

- A path is walked one component at a time from a directory descriptor of the checkout
  (`os.open(name, O_NOFOLLOW, dir_fd=parent)`), never by the kernel's own path walk: no
  symlink is followed unchecked, and one swapped in meanwhile makes the open fail instead
  of being followed.
- A symlink is followed only when its target stays inside the checkout: a relative target
  whose `..` never climbs above the checkout's root (repositories do use them, e.g.
  `requirements.txt -> requirements/base.txt`). An absolute target, or one that climbs out,
  is refused with `RepoFileError`, for the file itself and for a directory on the way
  (`conf -> /etc`, then `conf/shadow`).
- Only regular files are read: a FIFO, socket, device or directory is refused (the open
  uses O_NONBLOCK, so a FIFO cannot block it), and so is a file over `max_bytes`.
- A `RepoFileError` names the repository path and says what to do; it never names a link's
  target or quotes content. `excerpt()` is the short, printable quote of repository
  content that an error may show.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# Dependency files are small; uv.lock of a large project reaches a few MiB.
MAX_REPO_FILE_BYTES = 4 << 20
MAX_LINKS = 40  # symlinks followed in one path, as Linux's own limit
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RepoFileError(ValueError):
    """A repository file that platform code will not read; `str()` is for a person."""

    def __init__(self, relpath: str, message: str) -> None:
        super().__init__(message)
        self.relpath = relpath
        self.message = message


def excerpt(value: str | bytes, limit: int = 20) -> str:
    """At most `limit` printable characters of repository content, for an error message:
    control characters and newlines become spaces, runs of spaces one, longer text is cut."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    squeezed = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return squeezed if len(squeezed) <= limit else squeezed[:limit] + "…"


def _shown(relpath: str) -> str:
    """A repository path as an error shows it (the repository's own text, kept short)."""
    return excerpt(relpath, 120)


@dataclass
class _Walk:
    """Where a path led: the open directories from the root, and the last component."""

    root: Path
    dirs: list[tuple[int, str]]  # (descriptor, name) from the root (name "") down
    final: str | None = None  # last component's name in dirs[-1]; None: dirs[-1] itself
    final_stat: os.stat_result | None = None
    missing: list[str] = field(default_factory=list)  # components past the first absent one

    @property
    def exists(self) -> bool:
        return not self.missing

    def real_path(self) -> Path:
        names = [n for _, n in self.dirs[1:]] + ([self.final] if self.final else [])
        return self.root.joinpath(*names, *self.missing)


def _outside(relpath: str, link: str) -> RepoFileError:
    if link == relpath:
        return RepoFileError(relpath, f"{_shown(relpath)} is a symbolic link that leads "
                             "outside the repository; commit the file itself instead.")
    if not link:
        return RepoFileError(relpath, f"{_shown(relpath)} is a path outside the repository.")
    return RepoFileError(relpath, f"{_shown(relpath)} goes through the symbolic link "
                         f"{_shown(link)}, which leads outside the repository; commit the "
                         "files themselves instead.")


def _changed(relpath: str) -> RepoFileError:
    return RepoFileError(relpath, f"{_shown(relpath)} changed while it was being read; "
                         "try again.")


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


@contextmanager
def _walked(checkout: Path, relpath: str) -> Iterator[_Walk]:
    """Walk `relpath` inside `checkout` (see the module docstring); descriptors close after."""
    if "\0" in relpath or PurePosixPath(relpath).is_absolute():
        raise RepoFileError(relpath, f"{_shown(relpath)} is a path outside the repository.")
    root = checkout.resolve()  # the checkout itself (`src` is our own pointer to it)
    try:
        walk = _Walk(root, [(os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW), "")])
    except (FileNotFoundError, NotADirectoryError):  # no checkout: no file in it either
        yield _Walk(root, [], missing=_parts(relpath) or ["."])
        return
    try:
        # Each pending component remembers the link it came from ("" for relpath's own).
        todo = deque((p, "") for p in _parts(relpath))
        links = 0
        while todo:
            part, origin = todo.popleft()
            if part == "..":
                if len(walk.dirs) == 1:
                    raise _outside(relpath, origin)
                os.close(walk.dirs.pop()[0])
                continue
            dir_fd = walk.dirs[-1][0]
            try:
                st = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                walk.missing = _lexical_rest(relpath, walk, part, todo)
                break
            here = "/".join([n for _, n in walk.dirs[1:]] + [part])
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise RepoFileError(relpath, f"{_shown(relpath)} goes through too many "
                                        "symbolic links (a loop?); commit the file itself.")
                target = os.readlink(part, dir_fd=dir_fd)
                if target.startswith("/"):
                    raise _outside(relpath, here)
                todo.extendleft((p, here) for p in reversed(_parts(target)))
                continue
            if not todo:
                walk.final, walk.final_stat = part, st
                break
            if not stat.S_ISDIR(st.st_mode):
                walk.missing = _lexical_rest(relpath, walk, part, todo)
                break
            try:
                walk.dirs.append((os.open(part, _DIR_FLAGS, dir_fd=dir_fd), part))
            except (OSError, ValueError):
                raise _changed(relpath) from None
        yield walk
    finally:
        for fd, _ in walk.dirs:
            os.close(fd)


def _lexical_rest(relpath: str, walk: _Walk, part: str,
                  todo: deque[tuple[str, str]]) -> list[str]:
    """Components from an absent one on, as a path names them (nothing there to follow);
    a `..` past them climbs out of the open directories, never above the root."""
    rest: list[str] = []
    for name, origin in [(part, ""), *todo]:
        if name != "..":
            rest.append(name)
        elif rest:
            rest.pop()
        elif len(walk.dirs) == 1:
            raise _outside(relpath, origin)
        else:
            os.close(walk.dirs.pop()[0])
    return rest or ["."]  # "absent/..": still absent, as the kernel's walk would say


def resolve_repo_path(checkout: Path, relpath: str) -> Path:
    """The real path `relpath` names in `checkout`, symlinks inside it followed (the file
    need not exist); `RepoFileError` when it, or a directory on the way, leads outside."""
    with _walked(checkout, relpath) as walk:
        return walk.real_path()


def is_repo_file(checkout: Path, relpath: str) -> bool:
    """True when `relpath` is a regular file of the checkout (through symlinks that stay
    inside); False when absent or not a regular file; `RepoFileError` when it leads out."""
    with _walked(checkout, relpath) as walk:
        return walk.exists and walk.final_stat is not None and \
            stat.S_ISREG(walk.final_stat.st_mode)


def read_repo_file(checkout: Path, relpath: str,
                   max_bytes: int = MAX_REPO_FILE_BYTES) -> bytes | None:
    """The content of the repository file `relpath`, or None when the checkout has none.

    Raises `RepoFileError` when it is a symlink leading outside the checkout (or under a
    directory that does), a directory, a FIFO, socket or device, or larger than `max_bytes`.
    """
    with _walked(checkout, relpath) as walk:
        if not walk.exists:
            return None
        st = walk.final_stat
        if walk.final is None or st is None or stat.S_ISDIR(st.st_mode):
            raise RepoFileError(relpath, f"{_shown(relpath)} is a directory in the "
                                "repository, not a file; commit a file of that name.")
        if not stat.S_ISREG(st.st_mode):
            raise RepoFileError(relpath, f"{_shown(relpath)} is a special file (a FIFO, "
                                "socket or device), not a regular file; commit a regular "
                                "file instead.")
        try:
            fd = os.open(walk.final, _FILE_FLAGS, dir_fd=walk.dirs[-1][0])
        except OSError:
            raise _changed(relpath) from None
        with os.fdopen(fd, "rb") as fh:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or \
                    not stat.S_ISREG(opened.st_mode):
                raise _changed(relpath)
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise RepoFileError(relpath, f"{_shown(relpath)} is larger than "
                                f"{_size(max_bytes)}, the most the platform reads of a "
                                "repository file; make it smaller.")
        return data


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"

