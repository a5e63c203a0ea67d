"""ProcessRuntime: the embedded default engine. One uv-built venv per dependency set, one
`streamlit run` process per app, on 127.0.0.1 and a free port.

Environments live in `settings.envs_path/<dep_hash>/`, built in a temporary directory and
renamed into place when complete, so a half-built venv is never used; a build directory
left by a killed supervisor (`<hash>.building-*`, whose `.stcloud-builder` names a dead
process) is removed at the next start (`list()`, which adoption calls). Apps run in their own
session (process group) so they outlive a supervisor restart; each start writes
`run/app-<id>.json` (pid, process start time, port) and `list()` adopts what is still alive.
The process start time guards against a recycled pid.

Two instances of one app may run at once (a zero-downtime redeploy starts the new one with
`AppSpec.alongside` before stopping the old one): the first instance's state file is
`run/app-<id>.json`, one started alongside is `run/app-<id>-<token>.json`, and `stop(state)`
removes the file of that instance only.

Memory limits (`settings.process_memory_limit`): with a cgroup v1 memory controller each
instance runs in its own memory cgroup (`supervisor/cgroups.py`) and an OOM kill in it makes
`poll` say `oom`; without one, `poll` is an RSS watchdog: a process tree over its limit is
killed and reported as `oom`. The reconciler polls every running app each pass, so the
watchdog's period is `reconcile_interval`.

Logs: each app's stdout and stderr go through `logpipe.py` (a writer process forked by the
app's launcher, in the app's process group) to `app.log`, rotated at `app_log_max_bytes`
with `app_log_backups` old files kept.

Hosted code runs with the supervisor's user: this engine is for single-tenant machines
(docs/operator-guide.md says so). It still passes apps nothing of our environment: they get a
minimal PATH/HOME/LANG plus their own variables.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import errno
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from backend.settings import Settings
from supervisor import cgroups
from supervisor.runtimes.base import (AppSpec, BuildError, EnvRef, EnvSpec, Instance, LogSink,
                                      Runtime, StartError, Status, Usage)

log = logging.getLogger("supervisor.runtimes.process")
READY_MARKER = ".stcloud-ready"
BUILDER_MARKER = ".stcloud-builder"  # pid and start time of the process building the env
LOGPIPE = Path(__file__).resolve().parent / "logpipe.py"
STATE_FILE = re.compile(r"^app-(\d+)(?:-([0-9a-f]+))?\.json$")
# Joins the instance's memory cgroup ($0), then becomes the app ("$@"): never unlimited.
ENTER_CGROUP = ('echo $$ > "$0" || { echo "stcloud: could not enter the memory cgroup $0" '
                '>&2; exit 70; }; exec "$@"')
CANDIDATE_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")


def _builder_identity() -> dict[str, Any]:
    return {"pid": os.getpid(), "create_time": psutil.Process().create_time()}


def _process_alive(owner: dict[str, Any]) -> bool:
    try:
        proc = psutil.Process(int(owner.get("pid", 0)))
        return abs(proc.create_time() - float(owner.get("create_time", 0))) < 0.01 \
            and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def _wait_ended(pid: int, timeout: float) -> str | None:
    """Wait (polling) until `pid` ended: "exited" (gone, or our child and now reaped),
    "zombie" (ended, not reaped by its parent: psutil cannot wait for another process's
    child, and a stopped parent never reaps it), None after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    try:
        proc = psutil.Process(pid)
        while True:
            try:
                proc.wait(min(delay, max(deadline - time.monotonic(), 0)))  # reaps our child
                return "exited"
            except psutil.TimeoutExpired:
                pass
            if proc.status() == psutil.STATUS_ZOMBIE:
                return "zombie"
            if time.monotonic() >= deadline:
                return None
            delay = min(delay * 2, 0.1)
    except psutil.NoSuchProcess:
        return "exited"
    except psutil.Error:
        return None


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `signum` when this process dies (Linux), also when it
    died between the fork and this call (then the child exits at once)."""
    parent = os.getpid()
    try:  # loaded here, not in the child: dlopen after a fork of a threaded process can hang
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signum)
        if os.getppid() != parent:
            os._exit(1)
    return preexec


# The `.stcloud-builder` file of the environment being built by this task (ensure_env).
_BUILD_MARKER: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "stcloud_build_marker", default=None)


def _note_build_group(pid: int) -> None:
    """Record a build subprocess's process group in the build's marker, so that the next
    supervisor can end it if we are killed (it runs in its own session and outlives us)."""
    marker = _BUILD_MARKER.get()
    if marker is None:
        return
    try:
        owner = json.loads(marker.read_text())
        owner.setdefault("groups", []).append(
            {"pgid": pid, "create_time": psutil.Process(pid).create_time()})
        _write_marker(marker, owner)
    except (OSError, ValueError, psutil.Error):
        pass  # the build goes on; only the clean-up after a crash is weaker


def _write_marker(marker: Path, owner: dict[str, Any]) -> None:
    """Replace the marker atomically: a supervisor killed mid-write must not leave an empty
    marker, which would hide a dead builder's directory from the next start's clean-up."""
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(owner))
    os.replace(tmp, marker)


def _kill_group(group: dict[str, Any]) -> None:
    """SIGKILL what is left of a dead supervisor's build process group: members of that
    group started no earlier than its leader (never a later group that reused the id)."""
    pgid, born = int(group.get("pgid", 0)), float(group.get("create_time", 0))
    killed = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            if pgid and os.getpgid(proc.pid) == pgid and proc.info["create_time"] >= born - 0.01:
                proc.kill()
                killed.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    # Wait for them to be gone before the caller deletes their directory: a builder still
    # writing into it would leave a half-deleted directory behind.
    psutil.wait_procs(killed, timeout=5)


def _out_of_space(exc: BaseException) -> bool:
    """Did a build fail because its disk is full (ENOSPC / EDQUOT, in uv's output too)?"""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text \
        or "Disk quota exceeded" in text


def uv_binary() -> str:
    """uv from our own venv (installed by requirements.txt), else from PATH."""
    ours = Path(sys.executable).parent / "uv"
    return str(ours) if ours.exists() else (shutil.which("uv") or "uv")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def streamlit_command(venv: str, main_file: str, port: int, address: str) -> list[str]:
    # The venv's `streamlit` script, not `python -m streamlit`: -m would put the app's
    # directory first on sys.path, and a file of the app could shadow streamlit itself.
    return [f"{venv}/bin/streamlit", "run", main_file,
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.runOnSave", "true", "--server.fileWatcherType", "poll"]


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._env_locks: dict[str, asyncio.Lock] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # pid -> child we started
        self._pythons: dict[str, str] | None = None
        self._oom_pids: set[int] = set()  # instances the RSS watchdog killed
        self.memory_mode = cgroups.choose_mode(settings.process_memory_limit)
        self._cgroup_parent = cgroups.install_prefix(settings.data_dir)

    # Environments ---------------------------------------------------------------------
    def _uv_env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": os.environ.get("HOME", "/root"),
               "UV_CACHE_DIR": str(self.settings.uv_cache_path),
               "UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"}
        if self.settings.index_url:
            env["UV_INDEX_URL"] = self.settings.index_url
        ca = self.settings.ca_bundle_path
        if ca:
            env["SSL_CERT_FILE"] = str(ca)
        return env

    def _find_pythons(self) -> dict[str, str]:
        if self._pythons is None:
            def find(version: str) -> str:
                proc = subprocess.run([uv_binary(), "python", "find", "--system", version],
                                      capture_output=True, text=True, env=self._uv_env())
                return proc.stdout.strip() if proc.returncode == 0 else ""

            with ThreadPoolExecutor(len(CANDIDATE_PYTHONS)) as pool:  # ~1 s instead of ~5 s
                paths = dict(zip(CANDIDATE_PYTHONS, pool.map(find, CANDIDATE_PYTHONS)))
            self._pythons = {v: p for v, p in paths.items() if p}
        return self._pythons

    def python_versions(self) -> list[str]:
        return sorted(self._find_pythons(), key=lambda v: tuple(map(int, v.split("."))))

    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef:
        dep_hash = spec.dep_hash
        final = self.settings.envs_path / dep_hash
        lock = self._env_locks.setdefault(dep_hash, asyncio.Lock())
        async with lock:
            if (final / READY_MARKER).exists():
                log(f"Reusing the environment {dep_hash[:12]} (same dependencies).")
                return EnvRef(dep_hash, spec.python_version, str(final), reused=True)
            pythons = await asyncio.to_thread(self._find_pythons)
            interpreter = pythons.get(spec.python_version)
            if interpreter is None:
                offered = ", ".join(self.python_versions()) or "none"
                raise BuildError(f"Python {spec.python_version} is not installed on this "
                                 f"server (the process runtime offers: {offered}). Choose one "
                                 "of those in the app's advanced settings.")
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{dep_hash}.building-", dir=final.parent))
            marker_token = _BUILD_MARKER.set(tmp / BUILDER_MARKER)
            try:
                _write_marker(tmp / BUILDER_MARKER, _builder_identity())
                await self._build(spec, interpreter, tmp, log)
                (tmp / READY_MARKER).write_text(dep_hash)
                if (final / READY_MARKER).exists():
                    # Another builder sharing envs_dir (another supervisor, or the leader
                    # that took over from us) finished first and apps may run from it.
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    if final.exists():  # left over from an interrupted build: not ready
                        shutil.rmtree(final)
                    os.rename(tmp, final)
                _BUILD_MARKER.reset(marker_token)
            except BaseException as exc:
                _BUILD_MARKER.reset(marker_token)
                shutil.rmtree(tmp, ignore_errors=True)
                if isinstance(exc, (BuildError, OSError)) and _out_of_space(exc):
                    raise BuildError(self._disk_full_message(dep_hash)) from None
                raise
            return EnvRef(dep_hash, spec.python_version, str(final))

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
        """Remove `envs/<hash>.building-*` directories whose builder is gone (a supervisor
        killed mid-build leaves one behind; envs_dir may be shared, so a directory whose
        builder still runs is kept). Returns the names removed."""
        removed = []
        for path in self.settings.envs_path.glob("*.building-*"):
            try:
                owner = json.loads((path / BUILDER_MARKER).read_text())
            except ValueError:  # half-written (markers are replaced atomically now): dead
                owner = {}
            except OSError:
                owner = None
            if owner is None:  # no marker: an older build, or killed before writing it
                try:
                    age = time.time() - path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age < self.settings.build_timeout:
                    continue
            elif _process_alive(owner):
                continue
            else:  # its builder died: so must the uv processes it started (own sessions)
                for group in owner.get("groups", []):
                    _kill_group(group)
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():  # something still wrote into it while it went: once more
                shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        if removed:
            log.info("removed stale env builds count=%d names=%s", len(removed),
                     ",".join(removed))
        return removed

    async def _build(self, spec: EnvSpec, interpreter: str, venv: Path, log: LogSink) -> None:
        uv = uv_binary()
        src = venv / ".stcloud-src"
        src.mkdir()
        for name, content in spec.files.items():
            (src / name).write_bytes(content)
        python = str(venv / "bin" / "python")
        log(f"Creating a Python {spec.python_version} environment.")
        await self._run([uv, "venv", "--relocatable", "--python", interpreter, str(venv),
                         "--allow-existing"], log)
        await self._install_dependencies(spec, src, python, log)
        if not list(venv.glob("lib/python*/site-packages/streamlit/__init__.py")):
            log(f"The app pins no streamlit: installing streamlit=={spec.default_streamlit}.")
            await self._run([uv, "pip", "install", "--python", python,
                             f"streamlit=={spec.default_streamlit}"], log)
        if spec.packages:
            log("packages.txt is ignored by the process runtime (Debian packages need the "
                "Docker runtime): " + ", ".join(spec.packages))

    async def _install_dependencies(self, spec: EnvSpec, src: Path, python: str,
                                    log: LogSink) -> None:
        """Same order as the Docker engine and Community Cloud: uv.lock (with pyproject.toml),
        then requirements.txt, then pyproject.toml."""
        uv, files = uv_binary(), spec.files
        if "uv.lock" in files and "pyproject.toml" in files:
            log("Installing the locked dependencies of uv.lock with uv.")
            locked = src / "locked.txt"
            await self._run([uv, "export", "--project", str(src), "--frozen", "--no-hashes",
                             "--no-dev", "--no-emit-project", "-q", "-o", str(locked)], log)
            await self._run([uv, "pip", "install", "--python", python, "-r", str(locked)], log)
        elif "requirements.txt" in files:
            log("Installing requirements.txt with uv.")
            await self._run([uv, "pip", "install", "--python", python, "-r",
                             str(src / "requirements.txt")], log)
        elif "pyproject.toml" in files:
            log("Installing the dependencies of pyproject.toml with uv.")
            await self._run([uv, "pip", "install", "--python", python, "-r",
                             str(src / "pyproject.toml")], log)

    async def _run(self, cmd: list[str], log: LogSink) -> None:
        # Killed with the supervisor: the group noted in the marker lets the next one end
        # what uv started, but a supervisor killed right after the spawn has not noted it
        # yet, and a uv left running would write into the build directory after the next
        # supervisor removed it (seen in the kill -9 loop).
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=self._uv_env(), start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL))
        _note_build_group(proc.pid)
        tail: list[str] = []
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip()
                log(line)
                tail = (tail + [line])[-15:]
            code = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            raise
        if code != 0:
            raise BuildError("Installing the dependencies failed:\n" + "\n".join(tail))

    # Instances ------------------------------------------------------------------------
    def _state_file(self, app_id: int, token: str = "") -> Path:
        return self.settings.run_path / (f"app-{app_id}-{token}.json" if token
                                         else f"app-{app_id}.json")

    def _state_files(self, app_id: int | None = None) -> list[tuple[int, Path]]:
        out = []
        for path in sorted(self.settings.run_path.glob("app-*.json")):
            match = STATE_FILE.match(path.name)
            if match and (app_id is None or int(match.group(1)) == app_id):
                out.append((int(match.group(1)), path))
        return out

    async def start(self, app: AppSpec, env: EnvRef) -> Instance:
        if not app.alongside:  # replaces every instance the app has
            for _, path in self._state_files(app.app_id):
                old = self._read_path(path)
                if old:
                    await self.stop(app.app_id, old)
        main = app.checkout / app.main_file
        if not main.is_file():
            raise StartError(f"The main file {app.main_file} is not in the repository.")
        port = free_port()
        home = app.checkout.parent / "home"
        home.mkdir(parents=True, exist_ok=True)
        if app.secrets_file:
            target = app.checkout / ".streamlit" / "secrets.toml"
            target.parent.mkdir(exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # secrets: 0600
            os.fchmod(fd, 0o600)  # also when an older copy was made 0644
            with os.fdopen(fd, "wb") as out:
                out.write(app.secrets_file.read_bytes())
        child_env = {"PATH": f"{env.location}/bin:/usr/local/bin:/usr/bin:/bin",
                     "HOME": str(home), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                     "VIRTUAL_ENV": env.location, **app.env_vars}
        app.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-I", str(LOGPIPE), str(app.log_path),
                   str(self.settings.app_log_max_bytes), str(self.settings.app_log_backups),
                   "--", *streamlit_command(env.location, app.main_file, port, "127.0.0.1")]
        group = self._new_cgroup(app)
        if group is not None:
            command = ["/bin/sh", "-c", ENTER_CGROUP, str(group.procs_file), *command]
        with open(app.log_path, "ab") as out:
            child = subprocess.Popen(
                command, cwd=app.checkout, env=child_env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._children[child.pid] = child
        state: dict[str, Any] = {
            "pid": child.pid, "create_time": psutil.Process(child.pid).create_time(),
            "port": port, "generation": app.generation,
            "memory_limit_mb": app.memory_limit_mb}
        if group is not None:
            state["cgroup"] = str(group.path)
        if app.alongside:
            state["instance"] = secrets.token_hex(3)
        self._write_state(app.app_id, state)
        return Instance(app.app_id, ("127.0.0.1", port), state, app.generation)

    def _new_cgroup(self, app: AppSpec) -> cgroups.MemoryCgroup | None:
        if self.memory_mode != "cgroup" or app.memory_limit_mb <= 0:
            return None
        try:
            return cgroups.MemoryCgroup.create(self._cgroup_parent, app.app_id,
                                               app.memory_limit_mb)
        except OSError as exc:
            log.warning("app=%s memory cgroup not created (%s); using the RSS watchdog",
                        app.app_id, exc)
            return None

    @staticmethod
    def _cgroup(state: dict[str, Any]) -> cgroups.MemoryCgroup | None:
        path = state.get("cgroup")
        return cgroups.MemoryCgroup(Path(path)) if path else None

    def _write_state(self, app_id: int, state: dict[str, Any]) -> None:
        path = self._state_file(app_id, state.get("instance", ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    @staticmethod
    def _read_path(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _process(self, state: dict[str, Any]) -> psutil.Process | None:
        """The live process `state` describes, or None (gone, zombie, or pid reused)."""
        pid = state.get("pid")
        if not pid:
            return None
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return None
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - float(state.get("create_time", 0))) > 0.01:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        if not state.get("pid"):
            return Status("missing")
        pid = state["pid"]
        # /proc and cgroup reads in a worker thread: the proxy shares this event loop.
        group, proc, over = await asyncio.to_thread(self._inspect, state)
        if proc is not None:
            if not over:
                return Status("running")
            # The kernel killed a process of the tree (or the watchdog caught it over the
            # limit): the instance is over its limit; end it all, as Docker would.
            self._oom_pids.add(pid)
            log.warning("app=%s pid=%s over its memory limit of %s MiB; killed", app_id, pid,
                        state.get("memory_limit_mb"))
            await asyncio.to_thread(self._terminate_group, pid, 0.0)
        child = self._children.get(pid)
        if child is not None:
            child.poll()
        code = child.returncode if child is not None else None
        if pid in self._oom_pids or state.get("oom") or \
                (group is not None and group.oom_kills() > 0):
            return Status("oom", code)
        return Status("exited", code)

    def _inspect(self, state: dict[str, Any]) -> tuple[Any, psutil.Process | None, bool]:
        """(memory cgroup, the live process or None, whether it is over its limit)."""
        group = self._cgroup(state)
        proc = self._process(state)
        if proc is None:
            return group, None, False
        watchdog = group is None and self.memory_mode == "watchdog"
        over = (group is not None and group.oom_kills() > 0) or \
            (watchdog and self._over_limit(proc, state))
        return group, proc, over

    @staticmethod
    def _over_limit(proc: psutil.Process, state: dict[str, Any]) -> bool:
        limit = int(state.get("memory_limit_mb") or 0) << 20
        if limit <= 0:
            return False
        try:
            rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            return False
        return rss > limit

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        proc = self._process(state) if state else None
        if proc is not None:
            how = await asyncio.to_thread(self._terminate_group, proc.pid)
            log.info("app=%s pid=%s stopped how=%s", app_id, proc.pid, how)
        child = self._children.pop(state.get("pid", -1), None) if state else None
        if child is not None:
            child.poll()
        group = self._cgroup(state) if state else None
        if group is not None:
            await asyncio.to_thread(group.remove)
        for _, path in self._state_files(app_id):
            current = self._read_path(path)
            if current is None or current.get("pid") == (state or {}).get("pid"):
                path.unlink(missing_ok=True)

    @staticmethod
    def _terminate_group(pid: int, grace: float = 5.0) -> str:
        """SIGTERM the group (SIGKILL with no grace), wait up to `grace` s for its leader to
        end, then SIGKILL what is left. Returns how it ended: "exited", "zombie" (it ended
        but its parent has not reaped it: a supervisor that started it and is now frozen,
        SIGSTOP; nothing is left to wait for), "killed" (the grace ran out), "gone"."""
        try:
            os.killpg(pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        except ProcessLookupError:
            return "gone"
        how = _wait_ended(pid, grace or 5.0)
        if how is None:
            how = "killed"
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:  # the group may hold children of the app
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return how

    async def list(self) -> list[Instance]:
        await asyncio.to_thread(self.clean_stale_builds)  # list() runs at adoption
        instances = []
        for app_id, path in self._state_files():
            state = self._read_path(path)
            if state and self._process(state) is not None:
                instances.append(Instance(app_id, ("127.0.0.1", int(state["port"])), state,
                                          int(state.get("generation", 0))))
        if self.memory_mode == "cgroup":  # cgroups of instances that died with a supervisor
            keep = {i.state.get("cgroup", "") for i in instances}
            for path in cgroups.stale_groups(self._cgroup_parent, keep):
                cgroups.MemoryCgroup(path).remove(wait=0)
        return instances

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        proc = self._process(state)
        if proc is None:
            return None
        try:
            procs = [proc, *proc.children(recursive=True)]
            memory = sum(p.memory_info().rss for p in procs)
            cpu = sum(p.cpu_percent(interval=None) for p in procs)
        except psutil.Error:
            return None
        return Usage(memory_bytes=memory, cpu_percent=cpu)
