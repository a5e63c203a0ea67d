"""Which dependency file an app's environment is built from, as Community Cloud decides it,
and everything of the repository that file needs.

Discovery (`discover`): the folder of the app's main file first, then the repository root;
in each, the first of `uv.lock` (only with a `pyproject.toml` beside it), `Pipfile`,
`environment.yml`, `requirements.txt`, `pyproject.toml`. The first file found wins; every
other one found is ignored, and the build log says so ("Using app/requirements.txt;
ignoring requirements.txt at the root"). `.python-version` and `packages.txt` are looked up
the same way, each on its own.

Gathering (`gather`): the chosen file, its companion (`Pipfile.lock` beside a Pipfile, the
`pyproject.toml` beside uv.lock) and, for requirement lines, the files they name relative
to the requirements file's folder: `-r`/`-c` files (recursively), local wheels and archives,
and local package folders (`.`, `./pkg`, `-e .`, `file:` paths, `--find-links ./wheels`).
Everything is read through `backend.repositories.files` (a link out of the checkout is refused), a
folder is copied file by file within `MAX_TREE_BYTES`/`MAX_TREE_FILES`, and all of it is
part of the dependency hash, so a push that changes any of it builds a new environment.

The build (`install_lines`): the requirement files are written into the build's source
folder at their repository paths, with local paths made absolute there and `-e` dropped (an
environment is built in a temporary directory and renamed, so an editable install's path
would not survive; the package is installed as a regular one from the copy).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from backend.python_pins import FORMATS, lookup_folders
from backend.repositories.files import (
    MAX_REPO_FILE_BYTES,
    RepoFileError,
    excerpt,
    is_repo_file,
    read_repo_file,
    resolve_repo_path,
)
from supervisor.builds.formats import FormatError

COMPANIONS = {"uv.lock": "pyproject.toml", "Pipfile": "Pipfile.lock"}
LOOKED_UP = (".python-version", "packages.txt")
MAX_TREE_BYTES = 64 << 20  # a local package folder copied into the build
MAX_TREE_FILES = 5000
MAX_ARCHIVE_BYTES = 64 << 20  # a local wheel or sdist
SKIPPED_DIRS = frozenset({".git", "__pycache__", ".venv", "venv", "node_modules",
                          ".mypy_cache", ".pytest_cache", ".tox"})
ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
INCLUDE_OPTIONS = {"-r": "r", "--requirement": "r", "-c": "c", "--constraint": "c"}
PATH_OPTIONS = ("-f", "--find-links")
EDITABLE_OPTIONS = ("-e", "--editable")


@dataclass(frozen=True)
class Discovery:
    """The dependency file used ("" none), the ones found and ignored, and the
    `.python-version` and `packages.txt` found ("" none); paths relative to the checkout."""

    chosen: str
    ignored: tuple[str, ...] = ()
    python_version_file: str = ""
    packages_file: str = ""
    skipped_lock: str = ""  # a uv.lock with no pyproject.toml beside it

    @property
    def kind(self) -> str:
        return posixpath.basename(self.chosen)

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.chosen)

    def log_line(self) -> str:
        """What the build log says about the choice."""
        head = f"Using {shown(self.chosen)}" if self.chosen else \
            "No dependency file found (uv.lock, Pipfile, environment.yml, requirements.txt, " \
            "pyproject.toml)"
        if self.ignored:
            head += "; ignoring " + ", ".join(shown(p) for p in self.ignored)
        if self.skipped_lock:
            head += f" ({shown(self.skipped_lock)} is not used: no pyproject.toml beside it)"
        return head + "."


def shown(relpath: str) -> str:
    """A repository path as the log shows it: `requirements.txt at the root`, `app/x.txt`."""
    return f"{relpath} at the root" if "/" not in relpath else relpath


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _present(checkout: Path, relpath: str) -> bool:
    """Is `relpath` a regular file of the checkout? `FormatError` when something else is
    there (a link out, a FIFO, a directory), so that it fails the build, naming the path."""
    try:
        if is_repo_file(checkout, relpath):
            return True
        return read_repo_file(checkout, relpath) is not None
    except RepoFileError as e:
        raise FormatError(e.message) from None


def discover(checkout: Path, main_file: str) -> Discovery:
    """Which dependency file the app's environment is built from (see the module docstring)."""
    folders = lookup_folders(main_file)
    found = [_join(f, n) for f in folders for n in FORMATS if _present(checkout, _join(f, n))]
    chosen, skipped = "", ""
    for relpath in found:
        name = posixpath.basename(relpath)
        if name == "uv.lock" and not _present(checkout, _join(posixpath.dirname(relpath),
                                                              "pyproject.toml")):
            skipped = skipped or relpath
            continue
        chosen = relpath
        break
    companion = _join(posixpath.dirname(chosen), COMPANIONS.get(posixpath.basename(chosen), "")) \
        if chosen else ""
    ignored = tuple(p for p in found if p not in (chosen, companion, skipped))
    extra = {name: next((_join(f, name) for f in folders if _present(checkout, _join(f, name))),
                        "") for name in LOOKED_UP}
    return Discovery(chosen=chosen, ignored=ignored, skipped_lock=skipped,
                     python_version_file=extra[".python-version"],
                     packages_file=extra["packages.txt"])


# Requirement lines ------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """A path a requirement line names: `include` (an -r/-c file) or `local` (a package
    folder, wheel or archive, or a --find-links folder), relative to the checkout."""

    kind: str
    relpath: str


def logical_lines(text: str) -> list[str]:
    """Requirement lines with comments dropped and `\\` continuations joined."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def _option(line: str, names: tuple[str, ...] | dict[str, str]) -> tuple[str, str] | None:
    """(option, value) when `line` is one of the options `names` (`-r x`, `-rx`, `--x=y`)."""
    for name in names:
        if line == name:
            return None
        if line.startswith((name + " ", name + "=")):
            return name, line[len(name) + 1:].strip()
        if len(name) == 2 and line.startswith(name) and not line.startswith(name + "-"):
            return name, line[2:].strip()
    return None


def local_path(spec: str) -> str | None:
    """The path a requirement names on the local disk ("./pkg", "file:../x.whl",
    "name @ file:./x"), or None when it names a package on an index or a URL."""
    target = spec.split(";", 1)[0].strip()
    if " @ " in target:
        target = target.split(" @ ", 1)[1].strip()
    if target.startswith("file:"):
        rest = target[5:]
        if rest.startswith("//"):
            rest = rest[2:]
            if not rest.startswith("/"):  # file://host/...: not ours
                return None
        return rest or "."
    if "://" in target or target.startswith("git+"):
        return None
    base = target.split("[", 1)[0]
    if base in (".", "..") or base.startswith(("./", "../", "/")) or \
            base.endswith(ARCHIVES) or ("/" in base and not base.startswith("-")):
        return base
    return None


def _inside(folder: str, path: str, where: str) -> str:
    if path.startswith("/"):
        raise FormatError(f"{where} names {excerpt(path, 80)}, a path outside the "
                          "repository; name a path relative to the file instead.")
    joined = posixpath.normpath(_join(folder, path))
    if joined == ".." or joined.startswith("../"):
        raise FormatError(f"{where} names {excerpt(path, 80)}, which is outside the "
                          "repository; keep the files it needs in the repository.")
    return "" if joined == "." else joined


def references(content: bytes, relpath: str) -> list[Reference]:
    """The paths the requirement file `relpath` names, relative to the checkout."""
    folder, out = posixpath.dirname(relpath), []
    for line in logical_lines(content.decode("utf-8", "replace")):
        if (opt := _option(line, INCLUDE_OPTIONS)) is not None:
            out.append(Reference("include", _inside(folder, opt[1], relpath)))
            continue
        if (opt := _option(line, PATH_OPTIONS)) is not None:
            if "://" not in opt[1]:
                out.append(Reference("local", _inside(folder, opt[1], relpath)))
            continue
        if (opt := _option(line, EDITABLE_OPTIONS)) is not None:
            line = opt[1]
        if line.startswith("-"):
            continue
        path = local_path(line)
        if path is not None:
            out.append(Reference("local", _inside(folder, path, relpath)))
    return out


def rewrite(content: bytes, relpath: str, chosen_folder: str, src_root: str) -> bytes:
    """The requirement file as the build reads it: local paths absolute under `src_root`
    (where the repository's files were copied), `-e` dropped (see the module docstring)."""
    folder, out = posixpath.dirname(relpath), []
    for line in logical_lines(content.decode("utf-8", "replace")):
        if (opt := _option(line, PATH_OPTIONS)) is not None and "://" not in opt[1]:
            line = f"{opt[0]} {_absolute(src_root, _inside(folder, opt[1], relpath))}"
        elif _option(line, INCLUDE_OPTIONS) is None:
            if (opt := _option(line, EDITABLE_OPTIONS)) is not None:
                line = opt[1]
            path = None if line.startswith("-") else local_path(line)
            if path is not None:
                spelled = _spelled(line, path)
                target = _absolute(src_root, _inside(folder, path, relpath))
                line = line.replace(spelled, ("file://" if spelled.startswith("file:") else "")
                                    + target, 1)
        out.append(line)
    return ("\n".join(out) + "\n").encode()


def _spelled(line: str, path: str) -> str:
    """How `line` writes the local path `path` (with its `file:` prefix, if any)."""
    for prefix in ("file://", "file:", ""):
        if prefix + path in line:
            return prefix + path
    return path


def _absolute(src_root: str, relpath: str) -> str:
    return posixpath.join(src_root, relpath) if relpath else src_root


# Gathering ----------------------------------------------------------------------------------
def read_file(checkout: Path, relpath: str, max_bytes: int | None = None) -> bytes:
    """A repository file that must be there; `FormatError` names it otherwise."""
    try:
        content = read_repo_file(checkout, relpath,
                                 max_bytes or MAX_REPO_FILE_BYTES)
    except RepoFileError as e:
        raise FormatError(e.message) from None
    if content is None:
        raise FormatError(f"A dependency file names {relpath}, which is not in the "
                          "repository; commit it or remove the line.")
    return content


def read_tree(checkout: Path, relpath: str) -> dict[str, bytes]:
    """Every file under the repository folder `relpath`, read through repo_files (links
    to folders are not followed; a link to a file out of the checkout is refused)."""
    try:
        real = resolve_repo_path(checkout, relpath)
    except RepoFileError as e:
        raise FormatError(e.message) from None
    if not real.is_dir() or real.is_symlink():
        raise FormatError(f"A dependency file names {relpath or '.'}, which is not a file or "
                          "folder of the repository; commit it or remove the line.")
    files: dict[str, bytes] = {}
    total = 0
    for top, dirs, names in os.walk(real, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        rel_top = os.path.relpath(top, real).replace(os.sep, "/")
        for name in sorted(names):
            rel = posixpath.normpath(_join(relpath, _join("" if rel_top == "." else rel_top,
                                                          name)))
            try:
                if not is_repo_file(checkout, rel):
                    continue  # a FIFO, socket or dangling link in a package folder
            except RepoFileError as e:
                raise FormatError(e.message) from None
            files[rel] = read_file(checkout, rel, MAX_TREE_BYTES)
            total += len(files[rel])
            if total > MAX_TREE_BYTES or len(files) > MAX_TREE_FILES:
                raise FormatError(f"The local package folder {shown(relpath or '.')} holds "
                                  f"more than {MAX_TREE_FILES} files or {MAX_TREE_BYTES >> 20} "
                                  "MiB, the most a build copies; install it from a wheel "
                                  "or an index instead.")
    return files


def gather(checkout: Path, discovery: Discovery,
           local_lines: list[str] | None = None) -> dict[str, bytes]:
    """The files the build needs (see the module docstring), by repository path.
    `local_lines`: converted requirement lines (Pipfile, Poetry) that may name local paths."""
    files: dict[str, bytes] = {}
    if not discovery.chosen:
        return files
    files[discovery.chosen] = read_file(checkout, discovery.chosen)
    companion = COMPANIONS.get(discovery.kind)
    if companion:
        rel = _join(discovery.folder, companion)
        if _present(checkout, rel):
            files[rel] = read_file(checkout, rel)
    locals_: list[str] = []
    if discovery.kind == "requirements.txt":
        todo, seen = [discovery.chosen], {discovery.chosen}
        while todo:
            current = todo.pop()
            for ref in references(files[current], current):
                if ref.kind == "local":
                    locals_.append(ref.relpath)
                elif ref.relpath not in seen:
                    seen.add(ref.relpath)
                    files[ref.relpath] = read_file(checkout, ref.relpath)
                    todo.append(ref.relpath)
    for line in local_lines or []:
        path = local_path(line)
        if path is not None:
            locals_.append(_inside(discovery.folder, path, discovery.chosen))
    for rel in locals_:
        try:
            is_file = bool(rel) and is_repo_file(checkout, rel)
        except RepoFileError as e:
            raise FormatError(e.message) from None
        if is_file:
            files.setdefault(rel, read_file(checkout, rel, MAX_ARCHIVE_BYTES))
        else:
            files.update(read_tree(checkout, rel))
    return files
