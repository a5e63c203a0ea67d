"""Environment builds of the process runtime (`EnvBuilds`): one uv-built venv per
dependency set, made in an `envs/<hash>.building-*` directory and renamed into place when
complete, each step that runs package code sandboxed when the runtime is. Who is building
which directory, and the clean-up after a builder killed mid-build, is `process_builders`.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from backend import app_requirements
from backend.platform.settings import Settings
from supervisor.builds.errors import StepOutput, step_failure_message
from supervisor.builds.plan import write_build_files
from supervisor.runtimes import process_cache, pythons, sandbox, sandbox_commands
from supervisor.runtimes.base import BuildError, EnvRef, EnvSpec, LogSink, uv_binary
from supervisor.runtimes.process_builders import (
    BUILD_MARKER,
    BUILDER_MARKER,
    READY_MARKER,
    builder_identity,
    clean_stale_builds,
    die_with_parent,
    note_build_group,
    write_marker,
)
from supervisor.runtimes.process_packages import PackageBuilds

log = logging.getLogger("supervisor.runtimes.process")
def out_of_space(exc: BaseException) -> bool:
    """Did a build fail because its disk is full (ENOSPC / EDQUOT, in uv's output too)?"""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text \
        or "Disk quota exceeded" in text


def _has_streamlit(venv: Path) -> bool:
    return bool(list(venv.glob("lib/python*/site-packages/streamlit/__init__.py")))


def _has_module(venv: Path, name: str) -> bool:
    return bool(list(venv.glob(f"lib/python*/site-packages/{name}/__init__.py")))


def built_python(venv: Path) -> str:
    """The full Python version a built environment runs (`version_info` of its
    pyvenv.cfg, as uv writes it), "" when unknown."""
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                return ".".join(value.strip().split(".")[:3])
    except OSError:
        pass
    return ""


Step = Callable[[list[str], LogSink], Awaitable[None]]


class EnvBuilds(PackageBuilds):
    """The environment half of ProcessRuntime: one uv-built venv per dependency set, built
    in a temporary directory and renamed into place when complete. Each build step that
    runs package code (`uv venv`, `uv pip install`, `uv export`) runs sandboxed when the
    runtime is (`sandbox_commands.build_command`). A dependency set with Debian packages is built
    over a Debian root filesystem instead of the host's interpreters (`process_packages`)."""

    settings: Settings
    isolation: str
    _tools: sandbox.Tools | None
    _env_locks: dict[str, asyncio.Lock]
    _pythons: dict[str, pythons.Interpreter] | None

    def refuse_unsandboxed(self, what: str) -> str:
        raise NotImplementedError

    def _uv_env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": os.environ.get("HOME", "/root"),
               "UV_CACHE_DIR": str(self.settings.uv_cache_path),
               "UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never",
               # Bytecode compiled at build time: a sandboxed app cannot write it into its
               # read-only environment, and would compile Streamlit at every start.
               "UV_COMPILE_BYTECODE": "1"}
        if self.settings.index_url:
            env["UV_INDEX_URL"] = self.settings.index_url
        ca = self.settings.ca_bundle_path
        if ca:
            env["SSL_CERT_FILE"] = str(ca)
        return env

    def _find_pythons(self) -> dict[str, pythons.Interpreter]:
        """Every usable interpreter of this host, newest patch per minor version
        (`supervisor.runtimes.pythons`), found once per runtime."""
        if self._pythons is None:
            self._pythons = pythons.discover(uv_binary(), self._uv_env(),
                                             self.settings.python_search_paths)
        return self._pythons

    def python_versions(self) -> list[str]:
        return list(self._find_pythons())

    async def existing_env(self, spec: EnvSpec) -> EnvRef | None:
        final = self.settings.envs_path / spec.dep_hash
        async with self._env_locks.setdefault(spec.dep_hash, asyncio.Lock()):
            intact = (final / READY_MARKER).exists() and (final / "bin" / "streamlit").exists()
        if not intact or self.isolation == sandbox.UNAVAILABLE:
            return None
        return EnvRef(spec.dep_hash, built_python(final) or spec.python_version, str(final),
                      reused=True)

    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef:
        dep_hash = spec.dep_hash
        final = self.settings.envs_path / dep_hash
        lock = self._env_locks.setdefault(dep_hash, asyncio.Lock())
        async with lock:
            if self.isolation == sandbox.UNAVAILABLE:
                raise BuildError(self.refuse_unsandboxed("build the environment"))
            if (final / READY_MARKER).exists():
                for note in spec.notes:  # which dependency file, also for a reused env
                    log(note)
                log(f"Reusing the environment {dep_hash[:12]} (same dependencies).")
                return EnvRef(dep_hash, built_python(final) or spec.python_version,
                              str(final), reused=True)
            base: Path | None = None
            if spec.packages:
                interp, base = await self.packages_interpreter(spec, log)
            else:
                found = await asyncio.to_thread(self._find_pythons)
                host = found.get(pythons.minor_of(spec.python_version))
                if host is None:
                    raise BuildError(app_requirements.python_refusal(
                        spec.python_version, list(found), "process"))
                interp = host
            interpreter = interp.path
            if base is None and interp.version != spec.python_version \
                    and spec.python_version.count(".") == 2:
                log(f"Python {spec.python_version} was asked for; this server has "
                    f"{interp.version} of {interp.minor}, which the environment uses.")
            elif base is None:
                log(f"Building with Python {interp.version}.")
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{dep_hash}.building-", dir=final.parent))
            marker_token = BUILD_MARKER.set(tmp / BUILDER_MARKER)
            try:
                write_marker(tmp / BUILDER_MARKER, builder_identity())
                await self._build(spec, interpreter, tmp, log, base)
                (tmp / READY_MARKER).write_text(dep_hash)
                if (final / READY_MARKER).exists():
                    # Another builder sharing envs_dir (another supervisor, or the leader
                    # that took over from us) finished first and apps may run from it.
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    if final.exists():  # left over from an interrupted build: not ready
                        shutil.rmtree(final)
                    os.rename(tmp, final)
                BUILD_MARKER.reset(marker_token)
            except BaseException as exc:
                BUILD_MARKER.reset(marker_token)
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, (BuildError, OSError)) and out_of_space(exc):
                    raise BuildError(self._disk_full_message(dep_hash)) from None
                raise
            return EnvRef(dep_hash, built_python(final) or interp.version, str(final))

    def _disk_full_message(self, dep_hash: str) -> str:
        envs = self.settings.envs_path
        free = shutil.disk_usage(envs).free >> 20
        log.warning("env=%s build failed: no space left envs_dir=%s free_mib=%d",
                    dep_hash[:12], envs, free)
        return (f"Not enough disk space to build the environment: the disk holding {envs} "
                f"is full ({free} MiB free after removing the partial build). Free some "
                "space (or move envs_dir to a bigger disk), then reboot the app or push "
                "again.")

    def clean_stale_builds(self) -> list[str]:
        """Remove build directories whose builder died (`process_build.clean_stale_builds`)."""
        return clean_stale_builds(self.settings.envs_path, self.settings.build_timeout)

    async def _build(self, spec: EnvSpec, interpreter: str, venv: Path, log: LogSink,
                     base: Path | None = None) -> None:
        uv = uv_binary()
        src = venv / ".stcloud-src"
        src.mkdir()
        write_build_files(src, spec.install_plan().build_files(str(src)))
        python = str(venv / "bin" / "python")
        log(f"Creating a Python {spec.python_version} environment.")
        self._prepare_build_dir(venv, spec)
        if base is not None:  # apt first: the venv is made with the tree's python3
            await self.install_packages(spec, venv, base, log)
        step = self._step_runner(spec, interpreter, venv)
        await step([uv, "venv", "--relocatable", "--python", interpreter, str(venv),
                    "--allow-existing"], log)
        wheels = await self._wheels_only(spec, src, python, log, self._step_runner(
            spec, interpreter, venv, compile_bytecode=False))
        async with self._untrusted_cache(spec, log) as cache:
            untrusted = self._step_runner(spec, interpreter, venv, cache)
            if wheels:  # its bytecode, which the wheels-only step must not compile
                site = await asyncio.to_thread(lambda: next(venv.glob("lib/python*/site-packages")))
                try:
                    await untrusted([python, "-c", process_cache.COMPILE_SCRIPT, str(site)],
                                    lambda line: None)
                except BuildError:  # a file that does not compile is compiled never
                    log("Some files of the environment did not compile to bytecode.")
            else:
                await self._install_with_builds(spec, src, python, log, untrusted)
            await self._install_auth_packages(uv, python, venv, log, untrusted)
        if self.isolation == sandbox.BUBBLEWRAP:
            os.chmod(venv, 0o755)

    async def _install_auth_packages(self, uv: str, python: str, venv: Path, log: LogSink,
                                     step: Step) -> None:
        """`app_auth_packages` (Authlib and httpx) for st.login(), unless the app brings
        Authlib itself. Best effort: an app that never signs in works without them."""
        packages = self.settings.app_auth_packages.split()
        if not packages or await asyncio.to_thread(_has_module, venv, "authlib"):
            return
        log(f"Installing {' '.join(packages)} for st.login() with the platform's accounts.")
        try:
            await step([uv, "pip", "install", "--python", python, *packages], log)
        except BuildError:
            log("Those did not install here: st.login() will ask for Authlib "
                "(add Authlib to requirements.txt).")

    async def _install_with_builds(self, spec: EnvSpec, src: Path, python: str,
                                   log: LogSink, step: Step) -> None:
        """The install when package code may run: the dependencies, then Streamlit when
        they bring none."""
        uv = uv_binary()
        await self._install_dependencies(spec, src, python, log, step)
        if not await asyncio.to_thread(_has_streamlit, Path(python).parent.parent):
            log(f"The app pins no streamlit: installing streamlit=={spec.default_streamlit}.")
            try:
                await step([uv, "pip", "install", "--python", python,
                            f"streamlit=={spec.default_streamlit}"], log)
            except BuildError:  # e.g. Python 3.10, which newer releases no longer support
                log("That Streamlit does not install on this Python: installing the newest "
                    "Streamlit that supports it.")
                await step([uv, "pip", "install", "--python", python, "streamlit"], log)

    async def _wheels_only(self, spec: EnvSpec, src: Path, python: str, log: LogSink,
                           step: Step) -> bool:
        """Sandboxed builds: ONE `uv pip install --no-build` into the still-empty venv,
        shared cache writable, `step` compiling no bytecode (`process_cache`: a later uv
        call or uv's compiling would run the `.pth` files of what it installed). A dry run
        first says whether Streamlit and Authlib come with the files, else they join the
        call. True when that made the environment, else False (`_install_with_builds`)."""
        plan = spec.install_plan()
        if self.isolation != sandbox.BUBBLEWRAP or plan.mode == "pyproject-build":
            return False
        uv = uv_binary()
        for note in spec.notes or plan.notes:
            log(note)
        what: list[str] = []
        try:
            if plan.mode == "uv-lock":
                await step([uv, "export", "--project", str(src / plan.folder), "--frozen",
                            "--no-hashes", "--no-dev", "--no-emit-project", "-q", "-o",
                            str(src / "locked.txt")], log)
                what = ["-r", str(src / "locked.txt")]
            elif plan.mode == "requirements":
                what = ["-r", str(src / plan.requirements_path)]
            planned: list[str] = []
            base = [uv, "pip", "install", "--no-build", "--python", python]
            if what:
                await step([*base, "--dry-run", *what], planned.append)
            if not any(process_cache.planned_package("streamlit", line) for line in planned):
                what.append(f"streamlit=={spec.default_streamlit}")
                log(f"The app pins no streamlit: installing streamlit=="
                    f"{spec.default_streamlit} with its dependencies.")
            if not any(process_cache.planned_package("authlib", line) for line in planned):
                what += self.settings.app_auth_packages.split()  # `_install_auth_packages`
            await step([*base, *what], log)
        except BuildError:
            log("==> Some packages are built from source: installing again with a "
                "copy-on-write view of the package cache")
            log("==> phase resolve")  # the oven page's phases start over (`builds.phases`)
            return False
        return await asyncio.to_thread(_has_streamlit, Path(python).parent.parent)

    def _untrusted_cache(self, spec: EnvSpec, log: LogSink) -> Any:
        """The cache of steps that may run package code (`process_cache`); the shared one
        when builds are not sandboxed (single-tenant: no other tenant to protect)."""
        if self.isolation != sandbox.BUBBLEWRAP:
            return contextlib.nullcontext(self._build_cache(spec))
        return process_cache.cache_view(self._build_cache(spec))

    async def _install_dependencies(self, spec: EnvSpec, src: Path, python: str,
                                    log: LogSink, step: Step) -> None:
        """The dependency file discovery chose (`supervisor.builds.plan`, the same plan
        as the Docker engine's), installed with uv from the build's copy of its files."""
        uv, plan = uv_binary(), spec.install_plan()
        for note in spec.notes or plan.notes:
            log(note)
        if plan.mode == "uv-lock":
            locked = src / "locked.txt"
            await step([uv, "export", "--project", str(src / plan.folder), "--frozen",
                        "--no-hashes", "--no-dev", "--no-emit-project", "-q", "-o",
                        str(locked)], log)
            await step([uv, "pip", "install", "--python", python, "-r", str(locked)], log)
        elif plan.mode == "requirements":
            try:
                await step([uv, "pip", "install", "--python", python, "-r",
                            str(src / plan.requirements_path)], log)
            except BuildError as e:
                raise BuildError(plan.failure_message(str(e))) from None
        elif plan.mode == "pyproject-build":
            await step([uv, "pip", "install", "--python", python, "-r",
                        str(src / plan.chosen)], log)

    def _build_cache(self, spec: EnvSpec) -> Path:
        """uv's cache for a build: sandboxed builds (another user) keep their own."""
        cache = self.settings.uv_cache_for(spec.scope)
        return cache / "sandboxed" if self.isolation == sandbox.BUBBLEWRAP else cache

    def _prepare_build_dir(self, venv: Path, spec: EnvSpec) -> None:
        """Hand the build directory (and the cache) to the build user. The directory stays
        root's and sticky (like /tmp), so the build cannot replace the supervisor's marker
        in it; `_build` makes it 0755 when the steps are done."""
        if self.isolation != sandbox.BUBBLEWRAP:
            return
        sandbox.chown_tree(venv, sandbox.BUILDER_UID)
        if sandbox.running_as_root():  # a directory the build may fill but not own
            for path in (venv, venv / BUILDER_MARKER):
                if path.exists():
                    os.chown(path, 0, 0, follow_symlinks=False)
            os.chmod(venv, 0o1777)
        cache = self._build_cache(spec)
        if not cache.is_dir() or (sandbox.running_as_root()
                                  and cache.stat().st_uid != sandbox.BUILDER_UID):
            sandbox.owned_dir(cache, sandbox.BUILDER_UID)
            sandbox.chown_tree(cache, sandbox.BUILDER_UID)

    def _step_runner(self, spec: EnvSpec, interpreter: str, venv: Path,
                     cache: Path | None = None, compile_bytecode: bool = True) -> Step:
        """How this build runs its steps: in the sandbox as the build user with `cache`
        (default: the shared one) writable, or (single-tenant mode) as they are. Without
        `compile_bytecode`, uv does not compile (that starts the venv's Python: the `.pth`
        files of the wheels it just installed)."""
        if self.isolation != sandbox.BUBBLEWRAP:
            return self._run
        assert self._tools is not None
        tools, uv, shared = self._tools, Path(uv_binary()), self._build_cache(spec)
        cache = cache or shared
        readable = [sandbox.python_prefix_of(interpreter), uv]
        if cache != shared:  # a view: the shared cache stays readable as it is now
            readable.append(shared)
        ca = self.settings.ca_bundle_path
        if ca is not None:
            readable.append(ca)

        async def step(cmd: list[str], log: LogSink) -> None:
            prefix, root = self.build_root(venv)  # a Debian root filesystem, if any
            wrapped = prefix + sandbox_commands.build_command(
                tools, venv=venv, writable=[cache], readable=readable,
                run_dir=self.settings.run_path, max_procs=self.settings.process_pids_limit,
                command=cmd, root=root)
            await self._run(wrapped, log, env={
                **self._uv_env(), "HOME": "/tmp", "UV_CACHE_DIR": str(cache),
                "UV_COMPILE_BYTECODE": "1" if compile_bytecode else "0"})
        return step

    async def _run(self, cmd: list[str], log: LogSink, env: dict[str, str] | None = None,
                   explain_as: list[str] | None = None) -> None:
        """Run one build step, its output to `log`; BuildError explains a failure as that
        of `explain_as` (a uv command naming the dependency file), default `cmd`."""
        # Killed with the supervisor: the group noted in the marker lets the next one end
        # what uv started, but a supervisor killed right after the spawn has not noted it
        # yet, and a uv left running would write into the build directory after the next
        # supervisor removed it (seen in the kill -9 loop).
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=env or self._uv_env(), start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL))
        note_build_group(proc.pid)
        output = StepOutput()
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                log(line)
                output.add(line)
            code = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            raise
        if code != 0:
            raise BuildError(step_failure_message(self.settings, explain_as or cmd,
                                                  output.text()))
