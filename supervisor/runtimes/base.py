"""The Runtime contract: one interface, several engines (like JupyterHub's Spawner).

An engine knows how to build an environment for a dependency set and how to run one app
instance in it. It knows nothing of the database, the state machine or timeouts: the
supervisor (`supervisor/control/reconciler.py`) calls it, applies timeouts, retries and health
checks, and stores `Instance.state` on the app row so that a restarted supervisor can find
the instance again (`list()` + `poll()`), like JupyterHub's `get_state()`/`load_state()`.

Contract, for every engine (tests/integration/test_runtime_contract.py runs it against each):
- `ensure_env(spec, log)` builds the environment for `spec.dep_hash` once and returns the
  same `EnvRef` for every later call with that hash (shared by apps). Build output goes to
  `log` line by line. A failure raises `BuildError` with a message for a person.
- `start(app, env)` starts the app and returns at once with an `Instance` whose `address`
  serves Streamlit once healthy. Starting an app that already has an instance replaces it,
  unless `app.alongside` is set: then the new instance runs beside the current one (a
  zero-downtime redeploy), whose `stop(state)` leaves the new one running.
- `poll(app_id, state)` is `Status(kind="running")` while the instance lives, else `exited`
  with its code, `oom` when it was killed for memory, `missing` when nothing is there.
  Polling before start or after stop is allowed and says `missing` or `exited`.
- `stop(app_id, state)` stops and removes the instance; stopping what is gone is a no-op.
- `list()` returns every live instance the engine started, on this host, even ones started
  by an earlier supervisor process (adoption). Instances carry the app id.
- `usage(app_id, state)` returns memory and CPU figures, or None when not running.
- `maintain(app_id, state)` is the housekeeping of a running instance (the Docker engines
  cap the app log there); the reconciler calls it after `poll` found the instance running,
  so `poll` itself only observes.

Start is a template (dockerspawner's `start`), written once in `Runtime.start`: check →
replace what the app runs (unless `alongside`) → create (retried while a step raises
`TryAgain`) → run and read the address. An engine fills in the steps it needs
(`check_start`, `current_instances`, `holding_name`, `remove_instances`, `create_instance`,
`run_instance`); adoption (`list`) is likewise `find_live` → `adopt` each.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import re
import secrets
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from backend.python_pins import FORMATS
from backend.repositories.files import excerpt
from supervisor.builds.dependencies import LOOKED_UP, discover, gather, read_file
from supervisor.builds.formats import FormatError
from supervisor.builds.plan import InstallPlan, install_plan, legacy_choice

LogSink = Callable[[str], None]
T = TypeVar("T")
CREATE_ATTEMPTS = 20  # of `create_instance` while it raises TryAgain

# Files discovery looks for (in the main file's folder, then the root); a change to the
# one used (or to a file it names) means a new environment (`supervisor.builds.dependencies`).
DEPENDENCY_FILES = (*FORMATS, *LOOKED_UP)
# A Python version as `.python-version` or the app's settings give it: 3.12 or 3.12.4.
PYTHON_VERSION = re.compile(r"^[0-9]{1,2}\.[0-9]{1,3}(\.[0-9]{1,3})?\Z")


class BuildError(Exception):
    """An environment could not be built; the message says why, for a person."""


class StartError(Exception):
    """An instance could not be started; the message says why, for a person."""


class TryAgain(Exception):
    """A start step failed in a way the next attempt may not (an old instance still being
    removed): `Runtime.start` retries it after `delay` seconds. The message says what
    failed, for a person: it becomes the StartError when no attempt is left."""

    def __init__(self, message: str, delay: float = 0.25) -> None:
        super().__init__(message)
        self.delay = delay


async def retrying(step: Callable[[], Awaitable[T]], attempts: int = CREATE_ATTEMPTS) -> T:
    """`step()`, again after each `TryAgain` (its delay); StartError with its message when
    the last attempt fails too."""
    for _ in range(attempts - 1):
        try:
            return await step()
        except TryAgain as again:
            await asyncio.sleep(again.delay)
    try:
        return await step()
    except TryAgain as again:
        raise StartError(str(again)) from None


def uv_binary() -> str:
    """The host's uv, which every engine builds environments with: ours (installed by
    requirements.txt next to this interpreter) first, else the one on PATH, else "uv"."""
    ours = Path(sys.executable).parent / "uv"
    return str(ours) if ours.exists() else (shutil.which("uv") or "uv")


def streamlit_command(venv: str, main_file: str, port: int, address: str) -> list[str]:
    """`streamlit run` of `main_file` with the venv at `venv`, as every engine runs it. The
    venv's `streamlit` script rather than `python -m streamlit`: -m would put the app's
    directory first on sys.path, so a file of the app could shadow streamlit itself."""
    return [f"{venv}/bin/streamlit", "run", main_file,
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.runOnSave", "true", "--server.fileWatcherType", "poll"]


@dataclass(frozen=True)
class EnvSpec:
    """A dependency set: what an environment is built from."""

    python_version: str
    files: dict[str, bytes]  # repository path -> content of every file the build needs
    default_streamlit: str  # installed when the files pin no streamlit
    packages: tuple[str, ...] = ()  # Debian packages (packages.txt); Docker engines only
    # Who may share the environment and the package cache of its build ("" everyone,
    # e.g. "workspace-3": one workspace, setting env_sharing); part of the hash.
    scope: str = ""
    # The dependency file used, by repository path ("" none, or a spec made by hand:
    # then the first of the formats among `files`' root names).
    dependency_file: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)  # build log: what was chosen

    @property
    def dep_hash(self) -> str:
        h = hashlib.sha256()
        h.update(f"python={self.python_version}\nstreamlit={self.default_streamlit}\n".encode())
        if self.scope:
            h.update(f"scope={self.scope}\n".encode())
        if self.dependency_file:
            h.update(f"using={self.dependency_file}\n".encode())
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + hashlib.sha256(self.files[name]).digest())
        return h.hexdigest()[:32]

    def install_plan(self) -> InstallPlan:
        """How the engines install this spec's packages (`supervisor.builds.plan`)."""
        try:
            return install_plan(self.files, self.dependency_file or legacy_choice(self.files))
        except FormatError as e:
            raise BuildError(e.message) from None

    @classmethod
    def from_checkout(cls, checkout: Path, python_version: str,
                      default_streamlit: str, main_file: str = "") -> EnvSpec:
        """The dependency set of `checkout` as Community Cloud finds it (the main file's
        folder first, then the root: `supervisor.builds.dependencies`), every file read through
        `backend.repositories.files` (never through a symlink out of it, never a FIFO or an
        oversized file). Python: `python_version` (the app's choice), else the
        `.python-version` pin, else the dependency file's (Pipfile, environment.yml).
        `BuildError` names the file when one cannot be read or converted, or when the
        version is not one like 3.12 or 3.12.4."""
        try:
            found = discover(checkout, main_file)
            files = gather(checkout, found)
            plan = install_plan(files, found.chosen)
            if found.kind in ("Pipfile", "environment.yml", "pyproject.toml"):
                lines = plan.requirements.decode(errors="replace").splitlines()
                files = gather(checkout, found, lines)
                plan = install_plan(files, found.chosen)
            extra = {path: read_file(checkout, path) for path in
                     (found.python_version_file, found.packages_file) if path}
        except FormatError as e:
            raise BuildError(e.message) from None
        version = python_version.strip()
        if version and not PYTHON_VERSION.match(version):
            raise BuildError(f"The app's Python version '{excerpt(version)}' is not a version "
                             "such as 3.12; choose one in the app's settings.")
        pin_file = found.python_version_file
        version = version or pinned_python(extra.get(pin_file, b""), pin_file or
                                           ".python-version") or plan.python
        if version and not PYTHON_VERSION.match(version):
            raise BuildError(f"{found.chosen} asks for Python '{excerpt(version)}', which is "
                             "not a version such as 3.12; fix it, or choose a version in "
                             "the app's settings.")
        packages = tuple(line.strip() for line in
                         extra.get(found.packages_file, b"").decode(errors="replace")
                         .splitlines() if line.strip() and not line.strip().startswith("#"))
        notes = (found.log_line(), *plan.notes)
        return cls(python_version=version, files={**files, **extra},
                   default_streamlit=default_streamlit, packages=packages,
                   dependency_file=found.chosen, notes=notes)


def pinned_python(content: bytes, where: str = ".python-version") -> str:
    """The version `.python-version` pins (its first line that is not blank or a comment,
    as uv reads it), "" when none; `BuildError` when that line is not a version like 3.12
    or 3.12.4 (the error quotes at most a short, printable excerpt of it)."""
    for line in content.decode(errors="replace").splitlines():
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if not PYTHON_VERSION.match(value):
            raise BuildError(f"{where} holds '{excerpt(value)}', which is not a "
                             "Python version; write one such as 3.12 or 3.12.4 in it, or "
                             "delete the file.")
        return value
    return ""


@dataclass(frozen=True)
class EnvRef:
    """A built environment: a venv path or an image name, by engine."""

    dep_hash: str
    python_version: str
    location: str
    reused: bool = False  # True when an existing environment served this call


@dataclass(frozen=True)
class AppSpec:
    """Everything an engine needs to run one app instance."""

    app_id: int
    name: str  # the subdomain: DNS-safe, used in instance names
    checkout: Path  # the app's source tree (mounted or used as cwd)
    main_file: str  # relative to checkout
    log_path: Path  # stdout and stderr of the instance are appended here
    memory_limit_mb: int
    secrets_file: Path | None = None  # .streamlit/secrets.toml content, read-only
    env_vars: dict[str, str] = field(default_factory=dict)
    generation: int = 0  # the reboot counter the instance was started for
    alongside: bool = False  # start beside the app's current instance instead of replacing it


@dataclass(frozen=True)
class Instance:
    app_id: int
    address: tuple[str, int]  # where the proxy reaches Streamlit
    state: dict[str, Any]  # JSON-able; stored on the app row, handed back to poll/stop
    generation: int = 0


@dataclass(frozen=True)
class Status:
    kind: Literal["running", "exited", "oom", "missing"]
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.kind == "running"


@dataclass(frozen=True)
class InstanceUsage:
    """One instance (a process tree, a container, a Swarm task) of an app."""

    name: str  # stable while the instance lives: a pid, a container or task id
    memory_bytes: int  # PSS summed over its processes (shared pages split, not repeated)
    uss_bytes: int | None  # private memory: what ending it frees at least
    cpu_percent: float


@dataclass(frozen=True)
class Usage:
    """An app's figures: memory is PSS summed over every instance's processes (each shared
    page counted once in total) where /proc is readable, else the engine's own figure;
    `instances` has one entry per instance when they are known."""

    memory_bytes: int
    cpu_percent: float
    uss_bytes: int | None = None
    instances: tuple[InstanceUsage, ...] = ()


# The steps of `Runtime.start` and `Runtime.list`: an engine that keeps either template
# must fill in all of that template's steps.
START_STEPS = ("current_instances", "remove_instances", "create_instance", "run_instance")
LIST_STEPS = ("find_live", "adopt")


class Runtime(ABC):
    """Base of every engine. Subclasses must implement every abstract method, and the steps
    of each template (`start`, `list`) they do not override."""

    name: ClassVar[str] = "abstract"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name == "abstract":
            raise TypeError(f"{cls.__name__} must set a class attribute `name`.")
        for template, steps in (("start", START_STEPS), ("list", LIST_STEPS)):
            if getattr(cls, template) is getattr(Runtime, template):
                missing = [s for s in steps if getattr(cls, s) is getattr(Runtime, s)]
                if missing:
                    raise TypeError(f"{cls.__name__} keeps Runtime.{template} but does not "
                                    f"implement its steps {', '.join(missing)}.")

    @abstractmethod
    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef: ...

    async def existing_env(self, spec: EnvSpec) -> EnvRef | None:
        """The environment built for `spec` when it is there and intact, without building
        anything (starting an app again from what is on disk); None when it is missing or
        unusable, or when the engine cannot tell (then the caller deploys afresh)."""
        return None

    async def start(self, app: AppSpec, env: EnvRef) -> Instance:
        """Check → replace (unless `app.alongside`) → create → run (the pair retried on
        TryAgain from either).
        A second instance started alongside gets a token of its own (`instance` in its
        state) that tells it from the app's current one."""
        await self.check_start(app, env)
        token = secrets.token_hex(3) if app.alongside else ""
        in_the_way = [] if app.alongside else await self.current_instances(app.app_id)
        await self.remove_instances(app, [*in_the_way, *await self.holding_name(app, token)])

        async def create_and_run() -> Instance:
            created = await self.create_instance(app, env, token)
            return await self.run_instance(app, created, token)
        return await retrying(create_and_run)

    async def check_start(self, app: AppSpec, env: EnvRef) -> None:
        """Step of `start`: raise StartError when the app cannot start at all, before its
        current instance is replaced."""
        return None

    async def current_instances(self, app_id: int) -> list[Any]:
        """Step of `start`: what the app runs now (the engine's own objects)."""
        raise NotImplementedError

    async def holding_name(self, app: AppSpec, token: str) -> list[Any]:
        """Step of `start`: what holds the new instance's name, even alongside."""
        return []

    async def remove_instances(self, app: AppSpec, found: list[Any]) -> None:
        """Step of `start`: remove what `current_instances`/`holding_name` found (each of
        them may be listed twice, and may be gone already)."""
        raise NotImplementedError

    async def create_instance(self, app: AppSpec, env: EnvRef, token: str) -> Any:
        """Step of `start`: create the instance (not yet running); raise TryAgain when a
        moment later may succeed, StartError when it cannot."""
        raise NotImplementedError

    async def run_instance(self, app: AppSpec, created: Any, token: str) -> Instance:
        """Step of `start`: run what `create_instance` made and return its Instance; on
        failure remove it and raise StartError saying why (TryAgain when creating it
        afresh a moment later may succeed)."""
        raise NotImplementedError

    @abstractmethod
    async def stop(self, app_id: int, state: dict[str, Any]) -> None: ...

    @abstractmethod
    async def poll(self, app_id: int, state: dict[str, Any]) -> Status: ...

    async def maintain(self, app_id: int, state: dict[str, Any]) -> None:
        """Housekeeping of a running instance, called after `poll` said it runs (nothing
        by default)."""
        return None

    async def list(self) -> list[Instance]:
        """Every live instance, adopted: `find_live` → `adopt` each (None: not one of
        ours, or not serving)."""
        adopted = [await self.adopt(found) for found in await self.find_live()]
        return [instance for instance in adopted if instance is not None]

    async def find_live(self) -> builtins.list[Any]:
        """Step of `list`: the engine's objects that may be live instances of ours."""
        raise NotImplementedError

    async def adopt(self, found: Any) -> Instance | None:
        """Step of `list`: the Instance `found` is, or None."""
        raise NotImplementedError

    @abstractmethod
    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None: ...

    def prepare_wakes(self, env_hashes: builtins.list[str]) -> None:
        """The environments (dependency hashes, one per app) of the apps asleep now that
        wake on a visit: an engine may prepare their wake (the process runtime's warm
        pool). Returns at once; nothing by default."""
        return None

    def python_versions(self) -> builtins.list[str]:
        """Python versions this engine can build environments for (the deploy form's list)."""
        return []

    async def close(self) -> None:
        """Release clients and background tasks; instances keep running."""
        return None
