"""The Python version a repository asks for, found as its build finds it.

Community Cloud looks for dependency files in the main file's folder first, then at the
repository root, and uses the first of `uv.lock` (only with a `pyproject.toml` beside it),
`Pipfile`, `environment.yml`, `requirements.txt`, `pyproject.toml`. The version an app gets
is its own setting, else the first `.python-version` found the same way, else the chosen
dependency file's pin: a Pipfile's `[requires] python_version` (or `python_full_version`'s
minor version), an environment.yml's `python=3.x` dependency. The up-front deploy check
(`backend.app_requirements`) and the build (`supervisor.builds.dependencies`,
`supervisor.builds.formats`) share these rules, so a deploy is refused up front for the
same pin the build would use. Everything here is pure: file contents in, a version out.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import yaml

FORMATS = ("uv.lock", "Pipfile", "environment.yml", "requirements.txt", "pyproject.toml")
PYTHON_MINOR = re.compile(r"^(?:==?|~=)?\s*([0-9]+\.[0-9]+)(?:\.[0-9*]+)*\s*$")
CONDA_PYTHON = re.compile(r"^(?:[\w.-]+::)?python(?=$|[\s=<>!~])(?P<version>.*)$", re.I)


def lookup_folders(main_file: str) -> list[str]:
    """The main file's folder (relative, normalised), then the root ("")."""
    folder = posixpath.normpath(posixpath.dirname(main_file.strip().lstrip("/")))
    folder = "" if folder in (".", "") or folder.startswith("..") else folder
    return [folder, ""] if folder else [""]


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def candidate_paths(main_file: str, names: tuple[str, ...] = (*FORMATS, ".python-version")
                    ) -> list[str]:
    """Every path the lookup may read, in lookup order (uv.lock's pyproject.toml is among
    them: it is a format of its own)."""
    return [join(f, n) for f in lookup_folders(main_file) for n in names]


def chosen_dependency_file(present: set[str] | Mapping[str, Any], main_file: str) -> str:
    """The dependency file the build uses among the `present` paths ("" none)."""
    for folder in lookup_folders(main_file):
        for name in FORMATS:
            path = join(folder, name)
            if path not in present:
                continue
            if name == "uv.lock" and join(folder, "pyproject.toml") not in present:
                continue  # a lock without its project is not used
            return path
    return ""


def python_minor(version: str) -> str:
    """'3.10', '==3.10.*', '=3.10.4' -> '3.10'; '' when it is no such version."""
    match = PYTHON_MINOR.match(version.replace("==", "=").replace(".*", ""))
    return match.group(1) if match else ""


def pipfile_python(requires: Mapping[str, Any]) -> str:
    """A Pipfile's `[requires]` pin: python_version, else python_full_version's minor."""
    python = str(requires.get("python_version") or "")
    if not python and requires.get("python_full_version"):
        python = ".".join(str(requires["python_full_version"]).split(".")[:2])
    return python


def conda_python(spec: str) -> str | None:
    """The version an environment.yml dependency pins when it is `python` itself ("" for
    an unpinned `python`), None when the dependency is another package."""
    match = CONDA_PYTHON.match(spec.strip())
    if match is None:
        return None
    return python_minor(match.group("version").strip())


def dependency_file_python(path: str, content: bytes) -> str:
    """The Python pin of the dependency file at `path` ("" none, or a file that does not
    parse: its build says what is wrong with it)."""
    text = content.decode("utf-8", "replace")
    name = posixpath.basename(path)
    try:
        if name == "Pipfile":
            requires = tomllib.loads(text).get("requires")
            return pipfile_python(requires) if isinstance(requires, dict) else ""
        if name == "environment.yml":
            doc = yaml.safe_load(text)
            deps = doc.get("dependencies") if isinstance(doc, dict) else None
            pins = (conda_python(str(d)) for d in deps or [] if not isinstance(d, dict))
            return next((p for p in pins if p), "") if isinstance(deps, list) else ""
    except (tomllib.TOMLDecodeError, yaml.YAMLError):
        return ""
    return ""


def version_file_pin(content: bytes) -> str:
    """The version a .python-version pins: its first line that is not blank or a comment."""
    for line in content.decode(errors="replace").splitlines():
        value = line.strip()
        if value and not value.startswith("#"):
            return value
    return ""


def repository_python(files: Mapping[str, bytes], main_file: str) -> tuple[str, str]:
    """(version, the path that asks for it) of a repository whose files by path are
    `files`, as the build decides it when the app's setting names no version; ("", "")
    when nothing pins one."""
    for folder in lookup_folders(main_file):
        path = join(folder, ".python-version")
        if path in files:
            return version_file_pin(files[path]), path
    chosen = chosen_dependency_file(files, main_file)
    if chosen and chosen in files:
        version = dependency_file_python(chosen, files[chosen])
        if version:
            return version, chosen
    return "", ""
