"""Which CPython interpreters the process runtime can build environments with.

Candidates come from uv's own discovery (`uv python find --system 3.N`) and from the places
interpreters are usually installed: pyenv's versions directory (`$PYENV_ROOT/versions`, else
`~/.pyenv/versions`), `/usr/bin/python3.N`, `/usr/local/bin/python3.N`, plus the directories
of the `python_search_paths` setting. A candidate counts only when running it answers: it must
start, import `venv` (Debian splits it out into python3.N-venv) and say which version it is.
pyenv's shims fail that test for every version but the global one, so they never count. Of
several interpreters of one minor version the newest patch release wins.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("supervisor.runtimes.process")

MINORS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
SYSTEM_BIN_DIRS = (Path("/usr/local/bin"), Path("/usr/bin"))
PROBE = ("import sys, venv; v = sys.version_info; "
         "print(v[0], v[1], v[2], v[3], sys.implementation.name, sys.executable)")
PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Interpreter:
    """One verified interpreter: its full version and the binary that reported it."""

    minor: str  # "3.12"
    version: str  # "3.12.1"
    path: str  # the real binary (sys.executable), never a shim


def minor_of(version: str) -> str:
    """3.12.4 -> 3.12 (a version already minor is returned as it is)."""
    return ".".join(version.split(".")[:2])


def pyenv_versions_dir(env: Mapping[str, str] | None = None) -> Path:
    """pyenv's versions directory: $PYENV_ROOT/versions, else ~/.pyenv/versions."""
    found: Mapping[str, str] = os.environ if env is None else env
    root = found.get("PYENV_ROOT") or str(Path(found.get("HOME") or "~").expanduser() / ".pyenv")
    return Path(root) / "versions"


def search_dirs(extra: str, env: dict[str, str] | None = None) -> list[Path]:
    """Directories to look in: each may hold python3.N itself, a bin/ with it, or prefixes
    (subdirectories with bin/python3.N, like pyenv's versions directory)."""
    dirs = [Path(p).expanduser() for p in extra.split(os.pathsep) if p.strip()]
    return [*dirs, pyenv_versions_dir(env), *SYSTEM_BIN_DIRS]


def candidates_in(directory: Path, minors: Iterable[str] = MINORS) -> list[Path]:
    """Interpreter binaries named python3.N in `directory`, its bin/, or its prefixes' bin/."""
    found = []
    try:
        prefixes = sorted(p for p in directory.iterdir() if p.is_dir()) \
            if directory.is_dir() else []
    except OSError:
        prefixes = []
    for minor in minors:
        for where in (directory, directory / "bin", *(p / "bin" for p in prefixes)):
            binary = where / f"python{minor}"
            if binary.is_file() and os.access(binary, os.X_OK):
                found.append(binary)
    return found


def probe(binary: str, env: dict[str, str] | None = None) -> Interpreter | None:
    """Run `binary` and read what it is; None unless it is a final-release CPython 3 that
    can make venvs."""
    try:
        proc = subprocess.run([binary, "-I", "-c", PROBE], capture_output=True, text=True,
                              check=False, timeout=PROBE_TIMEOUT, env=env,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    parts = proc.stdout.split(maxsplit=5) if proc.returncode == 0 else []
    if len(parts) != 6 or parts[4] != "cpython" or parts[3] != "final":
        return None
    major, minor, micro, executable = parts[0], parts[1], parts[2], parts[5].strip()
    if major != "3" or not executable:
        return None
    return Interpreter(f"3.{minor}", f"3.{minor}.{micro}", executable)


def uv_candidates(uv: str, env: dict[str, str], minors: Iterable[str] = MINORS) -> list[str]:
    """What `uv python find --system` picks for each minor version (may be a shim)."""
    def find(minor: str) -> str:
        try:
            proc = subprocess.run([uv, "python", "find", "--system", minor], check=False,
                                  capture_output=True, text=True, env=env,
                                  timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""
    minors = list(minors)
    with ThreadPoolExecutor(len(minors)) as pool:
        return [p for p in pool.map(find, minors) if p]


def newest_per_minor(found: Iterable[Interpreter]) -> dict[str, Interpreter]:
    """Of the interpreters of each minor version, the one with the newest patch release
    (the first seen on a tie: uv's choice, then the search directories' order)."""
    best: dict[str, Interpreter] = {}
    for interp in found:
        current = best.get(interp.minor)
        if current is None or _patch(interp) > _patch(current):
            best[interp.minor] = interp
    return dict(sorted(best.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))


def _patch(interp: Interpreter) -> int:
    return int(interp.version.rsplit(".", 1)[1])


def discover(uv: str, uv_env: dict[str, str], extra_paths: str = "",
             minors: Iterable[str] = MINORS) -> dict[str, Interpreter]:
    """Every usable CPython of `minors` this host offers, newest patch per minor version."""
    minors = list(minors)
    paths = uv_candidates(uv, uv_env, minors)
    for directory in search_dirs(extra_paths, {**os.environ, **uv_env}):  # + PYENV_ROOT
        paths += [str(p) for p in candidates_in(directory, minors)]
    unique = list(dict.fromkeys(paths))
    probe_env = {"PATH": uv_env.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    with ThreadPoolExecutor(min(8, max(1, len(unique)))) as pool:
        probed = list(pool.map(lambda p: probe(p, probe_env), unique))
    verified = [i for i in probed if i is not None and i.minor in minors]
    chosen = newest_per_minor(verified)
    log.info("python interpreters found=%s",
             ",".join(f"{i.version}={i.path}" for i in chosen.values()) or "none")
    return chosen
