"""What an app's repository asks of the runtime, and refusing up front what it cannot give.

A repository can ask for things the selected runtime may not offer: Debian packages
(`packages.txt`: the Docker engines install them in the app's image; the process runtime
only where it can make a Debian root filesystem for the app, i.e. sandboxed, as root, with
debootstrap installed or the tree already made, and only for the Python versions of those
trees, as its supervisor reports) and a Python version (the app's setting, else
`.python-version`). A deploy that asks for either is refused before it is
queued, with the reason and what to do instead, rather than built into an app that says
"running" and is broken. `check_requirements` is the rule (one function for every deploy
path: the deploy form, the API and the CLI); `check_repository` reads the files it needs from
the repository's branch first. The process runtime's build applies the same rule
(`packages_refusal`, `python_refusal`) to every push, so a push that adds packages.txt fails
its build with the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from backend import python_pins
from backend.context import Context
from backend.errors import ValidationError
from backend.platform.supervisor_report import read_platform
from backend.repositories.files import excerpt

if TYPE_CHECKING:
    from backend.repositories.checks import BranchSnapshot

REQUIREMENT_FILES = ("packages.txt", ".python-version")
MAX_FILE = 64 * 1024
READ_TIMEOUT = 15.0
ENGINES_WITH_REPORTED_PACKAGES = ("process",)  # the supervisor says what it can install
NO_PACKAGES_REPORTED = ("its supervisor reported no Debian root filesystem and no way to "
                        "make one: an operator must install debootstrap (`apt install "
                        "debootstrap`, as root) and restart the supervisor")


def debian_packages(content: bytes) -> tuple[str, ...]:
    """The package names of a packages.txt (blank lines and # comments skipped)."""
    lines = (line.strip() for line in content.decode(errors="replace").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def _shown(packages: Sequence[str]) -> str:
    return ", ".join(excerpt(p) for p in packages[:5]) + (", ..." if len(packages) > 5 else "")


def packages_refusal(packages: Sequence[str], why: str = NO_PACKAGES_REPORTED) -> str:
    """Why the process runtime refuses an app whose packages.txt names `packages`: `why`
    says what is missing on this server and what the operator must do."""
    return (f"packages.txt asks for Debian packages ({_shown(packages)}), which the process "
            f"runtime of this server cannot install: {why}. Otherwise use the Docker runtime, "
            "or remove packages.txt if the packages are not needed.")


def packages_python_refusal(version: str, offered: Sequence[str], source: str = "") -> str:
    """Why the process runtime refuses packages.txt with Python `version`: its Debian root
    filesystems have only the `offered` versions."""
    where = f" ({source} asks for it)" if source else ""
    return (f"packages.txt needs one of the Debian root filesystems of the process runtime, "
            f"whose Python is {', '.join(offered)}; this app uses Python {excerpt(version)}"
            f"{where}. Choose one of those in the app's settings"
            + (f" or change {source}" if source else "") + ", or use the Docker runtime.")


def python_refusal(version: str, offered: Sequence[str], engine: str,
                   source: str = "") -> str:
    """Why `engine` refuses Python `version` (asked for by `source`, e.g. .python-version)."""
    where = f" ({source} asks for it)" if source else ""
    return (f"Python {excerpt(version)} is not available on the {engine} runtime of this "
            f"server{where}; it offers {', '.join(offered) or 'none'}. Choose one of those in "
            "the app's settings" + (f" or change {source}" if source else "") + ".")


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def check_requirements(ctx: Context, files: dict[str, bytes], python_version: str,
                       pin: tuple[str, str] = ("", "")) -> None:
    """Raise `ValidationError` when the running supervisor's runtime cannot honour what
    `files` (the repository's packages.txt / .python-version, by name), the repository's
    Python `pin` ((version, the file asking for it), `backend.python_pins`) and the chosen
    `python_version` ask for. Nothing is refused while the runtime is unknown (no supervisor
    has reported yet): its build refuses then."""
    info = read_platform(ctx)
    source, version = "", python_version.strip()
    if not version and pin[0]:
        version, source = pin
    elif not version and ".python-version" in files:
        source, version = ".python-version", python_pins.version_file_pin(files[".python-version"])
    packages = debian_packages(files.get("packages.txt", b""))
    if packages and info.engine in ENGINES_WITH_REPORTED_PACKAGES:
        if not info.packages_pythons:
            raise ValidationError("repo_url", packages_refusal(
                packages, info.packages_problem or NO_PACKAGES_REPORTED))
        chosen = version or ctx.settings.default_python
        if _minor(chosen) not in info.packages_pythons:
            raise ValidationError("python_version", packages_python_refusal(
                chosen, info.packages_pythons, source))
        return  # the trees' Pythons are what the build uses, not the host's
    if info.engine == "unknown" or not info.python_versions:
        return
    if version and _minor(version) not in info.python_versions:
        raise ValidationError("python_version", python_refusal(
            version, info.python_versions, info.engine, source))


def check_repository(ctx: Context, repo_url: str, branch: str, python_version: str,
                     main_file: str = "", timeout: float = READ_TIMEOUT,
                     snapshot: BranchSnapshot | None = None) -> None:
    """`check_requirements` on the files of `branch` of `repo_url`, each looked up the way
    the build does: in the main file's folder, then at the root. A repository this server
    cannot read now (private, unreachable) is not refused here: its build applies the same
    rule once it is cloned. `snapshot`: the branch already fetched by the caller's checks
    (`backend.repositories.checks.open_branch`), read instead of fetching it again."""
    if read_platform(ctx).engine == "unknown":
        return
    folder = str(PurePosixPath(main_file).parent) if main_file else "."
    where = {name: ([f"{folder}/{name}"] if folder != "." else []) + [name]
             for name in REQUIREMENT_FILES}
    wanted = [p for paths in where.values() for p in paths]
    wanted += python_pins.candidate_paths(main_file)  # Pipfile / environment.yml pins too
    found = snapshot.read_many(wanted) if snapshot is not None else \
        read_branch_files(ctx, repo_url, branch, list(dict.fromkeys(wanted)), timeout)
    if found is None:
        return
    files = {name: next(found[p] for p in paths if p in found)
             for name, paths in where.items() if any(p in found for p in paths)}
    check_requirements(ctx, files, python_version,
                       pin=python_pins.repository_python(found, main_file))


def read_branch_files(ctx: Context, repo_url: str, branch: str, names: Sequence[str],
                      timeout: float = READ_TIMEOUT) -> dict[str, bytes] | None:
    """The files at the paths `names` on `branch` (those that exist, regular files of at most
    64 KiB), read from one snapshot of the branch (`backend.repositories.checks.open_branch`);
    None when the repository cannot be read."""
    # git helpers; imported here to keep this module light
    from backend.repositories import checks as repos

    try:
        with repos.open_branch(ctx, repo_url, branch, timeout) as snapshot:
            return snapshot.read_many(names)
    except (repos.GitFailed, ValidationError, ValueError):
        return None
