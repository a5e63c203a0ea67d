"""How an environment's Python packages are installed, from what discovery chose: the part
every engine shares (the process runtime's uv steps, the Docker engine's build script).

`install_plan(files, chosen)` is pure: the gathered files by repository path and the chosen
file in, an `InstallPlan` out. Its mode is `uv-lock` (uv export of the lock, then install),
`requirements` (one requirements file uv installs: requirements.txt itself, or the lines a
Pipfile, environment.yml or pyproject.toml became), `pyproject-build` (a pyproject.toml whose
dependencies are `dynamic`: uv builds the project's metadata) or `none`.
`build_files(src_root)` is what to write into the build's source folder: the repository's
files at their paths, the requirement files rewritten (`dependencies.rewrite`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from supervisor.builds import formats
from supervisor.builds.dependencies import references, rewrite

GENERATED = ".stcloud-requirements.txt"  # beside the chosen file, so relative paths hold
# uv's words for a package that no index has.
NOT_FOUND = re.compile(r"Because ([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])? was not found "
                       r"in the package registry")


@dataclass(frozen=True)
class InstallPlan:
    mode: str  # none | uv-lock | requirements | pyproject-build
    chosen: str  # repository path of the dependency file ("" none)
    files: dict[str, bytes]  # what the build copies, by repository path
    requirements: bytes = b""  # requirements mode: the lines uv installs
    python: str = ""  # the Python version the file asks for ("" none)
    notes: tuple[str, ...] = ()
    conda_names: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.chosen)

    @property
    def requirements_path(self) -> str:
        """The repository-relative path uv reads the requirements from."""
        if posixpath.basename(self.chosen) == "requirements.txt":
            return self.chosen
        return posixpath.join(self.folder, GENERATED) if self.folder else GENERATED

    def build_files(self, src_root: str) -> dict[str, bytes]:
        """Files to write under `src_root` (the build's copy of the repository)."""
        out = dict(self.files)
        if self.mode != "requirements":
            return out
        out[self.requirements_path] = rewrite(self.requirements, self.requirements_path,
                                              self.folder, src_root)
        for path in _included(self.files, self.chosen):
            out[path] = rewrite(self.files[path], path, self.folder, src_root)
        return out

    def failure_message(self, message: str) -> str:
        """A failed install's message as the deployer reads it: a conda package no index
        has is named (`explain_failure`); the generated requirements file is called by the
        name of the file it came from (the one to fix)."""
        return self.explain_failure(message) or message.replace(GENERATED, self.chosen)

    def explain_failure(self, output: str) -> str | None:
        """A person's message for a failed install of conda packages that no index has."""
        missing = [m for m in NOT_FOUND.findall(output)
                   if m.lower() in {n.lower() for n in self.conda_names}]
        if not missing:
            return None
        names = ", ".join(dict.fromkeys(missing))
        return (f"{names} from {self.chosen} is not on the Python package index, and no "
                "conda channel is reachable on this platform: packages of environment.yml "
                "are installed from the Python package index under the same name. Replace "
                "it with the package's name on PyPI (under `pip:`), or remove it.")


def _included(files: dict[str, bytes], chosen: str) -> list[str]:
    """The -r/-c files reached from the chosen requirements file (all in `files`)."""
    if posixpath.basename(chosen) != "requirements.txt" or chosen not in files:
        return []
    todo, seen = [chosen], [chosen]
    while todo:
        current = todo.pop()
        for ref in references(files[current], current):
            if ref.kind == "include" and ref.relpath not in seen and ref.relpath in files:
                seen.append(ref.relpath)
                todo.append(ref.relpath)
    return seen[1:]


def legacy_choice(files: dict[str, bytes]) -> str:
    """The chosen file of a spec made without discovery (root files only), by the order."""
    for name in ("uv.lock", "Pipfile", "environment.yml", "requirements.txt",
                 "pyproject.toml"):
        if name in files and (name != "uv.lock" or "pyproject.toml" in files):
            return name
    return ""


def install_plan(files: dict[str, bytes], chosen: str) -> InstallPlan:
    """The plan for `chosen` (see the module docstring); `FormatError` for a file that
    cannot be converted."""
    kind = posixpath.basename(chosen)
    folder = posixpath.dirname(chosen)
    lock = files.get(posixpath.join(folder, "Pipfile.lock") if folder else "Pipfile.lock")
    if not chosen or chosen not in files:
        return InstallPlan("none", "", files)
    if kind == "uv.lock":
        return InstallPlan("uv-lock", chosen, files,
                           notes=(f"Installing the locked dependencies of {chosen} with uv.",))
    if kind == "requirements.txt":
        return InstallPlan("requirements", chosen, files, requirements=files[chosen],
                           notes=(f"Installing {chosen} with uv.",))
    if kind == "Pipfile":
        converted = formats.pipfile_requirements(files[chosen], lock, chosen)
    elif kind == "environment.yml":
        converted = formats.conda_requirements(files[chosen], chosen)
    else:
        found = formats.pyproject_requirements(files[chosen], chosen)
        if found is None:
            return InstallPlan("pyproject-build", chosen, files,
                               notes=(f"Installing the dependencies of {chosen} with uv (they "
                                      "are dynamic: uv builds the project to read them).",))
        converted = found
    return InstallPlan("requirements", chosen, files,
                       requirements="\n".join(converted.requirements).encode() + b"\n",
                       python=converted.python, notes=tuple(converted.notes),
                       conda_names=converted.conda_names)


def write_build_files(root: Path, files: dict[str, bytes]) -> None:
    """Write `files` (repository paths, as discovery read them) under the build's `root`."""
    for relpath, content in files.items():
        parts = PurePosixPath(relpath).parts
        if not parts or PurePosixPath(relpath).is_absolute() or ".." in parts:
            raise ValueError(f"not a repository path: {relpath!r}")
        target = root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
