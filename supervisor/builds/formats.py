"""Dependency formats other than requirements.txt, turned into a requirements list for uv.

Community Cloud reads Pipfile (with Pipfile.lock), conda's environment.yml and
pyproject.toml (PEP 621 or Poetry) as well as requirements.txt. Our builds install with uv
only, so each format becomes requirement lines here, purely (content in, lines out):

- Pipfile: the exact versions of Pipfile.lock's `default` section when the lock is there,
  else the Pipfile's `[packages]`; `[dev-packages]` are never installed. `[requires]
  python_version` is the Python version the app asks for.
- environment.yml: its `pip:` list as it is, and its conda packages under the same name on
  the Python package index (conda's `=1.2` becomes `==1.2.*`, its meaning in conda). Python,
  pip and packages that exist only in conda (compilers' runtimes, MKL, CUDA) are left out,
  each with a line in the build log. `python=3.11` is the Python version asked for.
- pyproject.toml: PEP 621 `[project].dependencies`, else Poetry's
  `[tool.poetry.dependencies]` with Poetry's constraints (`^1.2`, `~1.2`, `*`) in PEP 440
  terms. Only the dependencies are installed, never the project itself (the app runs from
  its checkout); optional dependencies and dependency groups are not installed.

`FormatError` carries a message for a person naming the file and what to fix.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomlkit
import yaml
from plette import Lockfile, Pipfile

from backend.python_pins import pipfile_python, python_minor
from backend.repositories.files import excerpt

# conda packages that have no counterpart on the Python package index: C/C++ runtimes,
# math libraries and toolkits conda ships for its own builds.
CONDA_ONLY = frozenset({
    "_libgcc_mutex", "_openmp_mutex", "libgcc-ng", "libgcc", "libstdcxx-ng", "libstdcxx",
    "libgomp", "libgfortran-ng", "libgfortran5", "libgfortran", "ld_impl_linux-64",
    "cudatoolkit", "cudnn", "nccl", "mkl", "mkl-service", "mkl_fft", "mkl_random",
    "intel-openmp", "blas", "libblas", "libcblas", "liblapack", "openblas", "libopenblas",
    "ca-certificates", "openssl", "libffi", "ncurses", "readline", "sqlite", "tk", "xz",
    "zlib", "bzip2", "libuuid", "libzlib", "libnsl", "libsqlite", "libxcrypt", "libexpat",
    "libmpdec", "liblzma", "libedit", "krb5", "icu", "libiconv", "pthread-stubs"})
LEFT_OUT = frozenset({"python", "pip"})
# A conda match spec: [channel::]name[ version[ build]] or name=version[=build], name>=x ...
CONDA_SPEC = re.compile(r"^(?:[\w.-]+::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)\s*"
                        r"(?P<version>[^\s=<>!~]*[=<>!~][^\s]*|\s+\S+)?(?:\s+\S+)?\s*$")


class FormatError(Exception):
    """A dependency file that cannot be turned into requirements; the message is for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Converted:
    """Requirement lines for uv, the Python version the file asks for ("" none), log notes,
    and the names that came from conda packages (so a resolution error can name them)."""

    requirements: list[str] = field(default_factory=list)
    python: str = ""
    notes: list[str] = field(default_factory=list)
    conda_names: tuple[str, ...] = ()


# Pipfile -------------------------------------------------------------------------------------
def _pipenv_entry(name: str, entry: Any, where: str) -> str:
    """One Pipfile or Pipfile.lock package entry as a requirement line."""
    if isinstance(entry, str):
        return name if entry.strip() in ("", "*") else f"{name}{entry.strip()}"
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: the entry for '{excerpt(name)}' is neither a version "
                          "string nor a table; fix it (e.g. six = \"==1.16.0\").")
    extras = entry.get("extras") or []
    head = name + (f"[{','.join(map(str, extras))}]" if extras else "")
    markers = str(entry.get("markers") or "").strip()
    tail = f" ; {markers}" if markers else ""
    if entry.get("git"):
        ref = f"@{entry['ref']}" if entry.get("ref") else ""
        return f"{head} @ git+{entry['git']}{ref}{tail}"
    if entry.get("path") or entry.get("file"):
        return f"{entry.get('path') or entry.get('file')}{tail}"
    version = str(entry.get("version") or "").strip()
    return f"{head}{'' if version in ('', '*') else version}{tail}"


def pipfile_requirements(pipfile: bytes, lock: bytes | None, where: str) -> Converted:
    """Pipfile.lock's exact `default` versions when `lock` is given, else the Pipfile's
    `[packages]`; `[requires] python_version` (or python_full_version's minor) as python."""
    try:
        # What Pipfile.load does, keeping the parsed mapping (plette's models wrap it)
        data: dict[str, Any] = tomlkit.loads(pipfile.decode("utf-8", "replace"))
        Pipfile.validate(data)
    except Exception as e:  # plette raises tomlkit's and its own errors
        raise FormatError(f"{where} is not a valid Pipfile ({excerpt(str(e), 120)}); fix "
                          "its TOML.") from None
    out = Converted(python=pipfile_python(data.get("requires") or {}))
    lock_name = where.rsplit("/", 1)[0] + "/Pipfile.lock" if "/" in where else "Pipfile.lock"
    if lock is not None:
        try:
            locked: dict[str, Any] = json.loads(lock.decode("utf-8", "replace"))
            Lockfile.validate(locked)  # what Lockfile.load does after parsing
        except Exception as e:  # json and plette errors alike
            raise FormatError(f"{lock_name} is not a valid Pipfile.lock "
                              f"({excerpt(str(e), 120)}); run `pipenv lock` again or "
                              "delete it.") from None
        out.notes.append(f"Installing the exact versions of {lock_name} (its default "
                         "packages; develop packages are not installed).")
        packages = locked.get("default") or {}
        source = lock_name
    else:
        out.notes.append(f"Installing the [packages] of {where} ([dev-packages] are not "
                         "installed); commit a Pipfile.lock for exact versions.")
        packages = data.get("packages") or {}
        source = where
    out.requirements = [_pipenv_entry(n, e, source) for n, e in packages.items()]
    return out


# environment.yml ---------------------------------------------------------------------------
def _conda_requirement(spec: str, where: str) -> tuple[str, str]:
    """(name, requirement line) of one conda match spec, versions in PEP 440 terms."""
    match = CONDA_SPEC.match(spec.strip())
    if not match:
        raise FormatError(f"{where}: '{excerpt(spec, 60)}' is not a conda package "
                          "specification; write it as name, name=1.2 or name>=1.2.")
    name = match.group("name")
    version = (match.group("version") or "").strip()
    if not version:
        return name, name
    if version[0].isdigit():  # `name 1.2` (space-separated): conda's fuzzy 1.2.*
        version = "=" + version
    if version.startswith("=") and not version.startswith("=="):
        value = version[1:].split("=", 1)[0]  # `=1.2=py311_0`: the build string goes
        version = f"=={value}" if value.endswith("*") else f"=={value}.*"
    elif version.startswith("=="):
        version = "==" + version[2:].split("=", 1)[0]
    return name, f"{name}{version}"


def conda_requirements(content: bytes, where: str) -> Converted:
    """environment.yml's packages as PyPI requirements (see the module docstring)."""
    try:
        doc = yaml.safe_load(content.decode("utf-8", "replace"))
    except yaml.YAMLError as e:
        raise FormatError(f"{where} is not valid YAML ({excerpt(str(e), 120)}); fix it.") \
            from None
    deps = doc.get("dependencies") if isinstance(doc, dict) else None
    if not isinstance(deps, list):
        raise FormatError(f"{where} has no `dependencies:` list; list the packages under it.")
    out = Converted()
    conda_names: list[str] = []
    left_out: list[str] = []
    for dep in deps:
        if isinstance(dep, dict):
            pip = dep.get("pip")
            if pip is not None and not isinstance(pip, list):
                raise FormatError(f"{where}: `pip:` must be a list of requirements.")
            out.requirements += [str(line) for line in pip or []]
            continue
        name, line = _conda_requirement(str(dep), where)
        lowered = name.lower()
        if lowered == "python":
            out.python = python_minor(line[len(name):]) or out.python
            continue
        if lowered in LEFT_OUT or lowered in CONDA_ONLY:
            left_out.append(name)
            continue
        conda_names.append(name)
        out.requirements.append(line)
    if left_out:
        out.notes.append(f"Leaving out {', '.join(left_out)} from {where}: conda-only "
                         "packages (or Python and pip themselves), which this platform "
                         "provides or does not need.")
    if conda_names:
        out.notes.append(f"Installing the conda packages of {where} from the Python package "
                         f"index under the same names: {', '.join(conda_names)}.")
    out.conda_names = tuple(conda_names)
    return out


# pyproject.toml ------------------------------------------------------------------------------
def _poetry_version(constraint: str, name: str, where: str) -> str:
    """A Poetry version constraint in PEP 440 terms: `^1.2` -> `>=1.2,<2.0`, `~1.2` ->
    `>=1.2,<1.3`, `*` -> "", `1.2` -> `==1.2`; comparison operators pass through."""
    parts = []
    for piece in constraint.split(","):
        piece = piece.strip()
        if "||" in piece:
            raise FormatError(f"{where}: the constraint '{excerpt(constraint, 40)}' of "
                              f"'{excerpt(name)}' uses `||`, which cannot be written as one "
                              "requirement; pin one range.")
        if piece in ("", "*"):
            continue
        if piece.startswith("^"):
            parts.append(_caret(piece[1:].strip(), name, where))
        elif piece.startswith("~") and not piece.startswith("~="):
            parts.append(_tilde(piece[1:].strip(), name, where))
        elif piece[0].isdigit():
            parts.append(f"=={piece}")
        else:
            parts.append(piece)
    return ",".join(parts)


def _numbers(version: str, name: str, where: str) -> list[int]:
    try:
        return [int(p) for p in version.split(".")]
    except ValueError:
        raise FormatError(f"{where}: '{excerpt(version, 40)}' in the constraint of "
                          f"'{excerpt(name)}' is not a version such as 1.2.3.") from None


def _caret(version: str, name: str, where: str) -> str:
    nums = _numbers(version, name, where)
    first = next((i for i, n in enumerate(nums) if n != 0), len(nums) - 1)
    upper = nums[:first] + [nums[first] + 1]
    return f">={version},<{'.'.join(map(str, upper + [0] * max(0, len(nums) - len(upper))))}"


def _tilde(version: str, name: str, where: str) -> str:
    nums = _numbers(version, name, where)
    upper = [nums[0] + 1] if len(nums) == 1 else [nums[0], nums[1] + 1]
    return f">={version},<{'.'.join(map(str, upper + [0] * max(0, len(nums) - len(upper))))}"


def _poetry_entry(name: str, entry: Any, where: str) -> str:
    if isinstance(entry, str):
        return name + _poetry_version(entry, name, where)
    if isinstance(entry, list):
        raise FormatError(f"{where}: '{excerpt(name)}' has several constraints (a list); "
                          "this platform installs one, so keep one entry.")
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: the entry for '{excerpt(name)}' is not a constraint.")
    extras = entry.get("extras") or []
    head = name + (f"[{','.join(map(str, extras))}]" if extras else "")
    markers = str(entry.get("markers") or "").strip()
    tail = f" ; {markers}" if markers else ""
    if entry.get("git"):
        ref = entry.get("rev") or entry.get("tag") or entry.get("branch")
        return f"{head} @ git+{entry['git']}{'@' + str(ref) if ref else ''}{tail}"
    if entry.get("path"):
        return f"{entry['path']}{tail}"
    if entry.get("url"):
        return f"{head} @ {entry['url']}{tail}"
    return head + _poetry_version(str(entry.get("version") or "*"), name, where) + tail


def pyproject_requirements(content: bytes, where: str) -> Converted | None:
    """The dependencies of a pyproject.toml as requirement lines, or None when they are not
    written in it (`dynamic` dependencies: only building the project can tell them)."""
    try:
        doc = tomllib.loads(content.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as e:
        raise FormatError(f"{where} is not valid TOML ({excerpt(str(e), 120)}); fix it.") \
            from None
    project = doc.get("project")
    poetry = doc.get("tool", {}).get("poetry", {})
    if isinstance(project, dict) and "dependencies" in project:
        deps = project["dependencies"]
        if not isinstance(deps, list):
            raise FormatError(f"{where}: [project].dependencies must be a list of "
                              "requirements.")
        return Converted(requirements=[str(d) for d in deps],
                         notes=[f"Installing [project].dependencies of {where} (not the "
                                "project itself, nor optional dependencies or groups)."])
    if isinstance(project, dict) and "dependencies" in project.get("dynamic", []):
        return None
    deps = poetry.get("dependencies") if isinstance(poetry, dict) else None
    if isinstance(deps, dict):
        lines = [_poetry_entry(n, e, where) for n, e in deps.items() if n.lower() != "python"]
        return Converted(requirements=lines,
                         notes=[f"Installing [tool.poetry.dependencies] of {where} (not the "
                                "project itself, nor dependency groups)."])
    return Converted(notes=[f"{where} lists no dependencies."])

