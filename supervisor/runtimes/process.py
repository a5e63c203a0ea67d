"""ProcessRuntime: the embedded default engine. One uv-built venv per dependency set
(`process_build.py`), one `streamlit run` process per app, reached on 127.0.0.1 and a free
port.

Isolation (`process_sandbox`, attribute `isolation`): by default every instance and every
build step runs in a bubblewrap sandbox as an unprivileged user of its own (`sandbox.py`:
own namespaces, read-only checkout and environment, a writable working directory /app
started from the checkout (`workdir.py`), private HOME and /tmp, runtime
secrets bound read-only, network through slirp4netns without the host's loopback, the
app's port forwarded from 127.0.0.1 on the host). When this host cannot sandbox, builds and
starts are refused with an error saying what to install, unless the operator chose
single-tenant mode (`process_sandbox = "off"`), where apps run as the supervisor's user.
An app whose repository has packages.txt gets an environment built over a Debian root
filesystem and runs with that tree (plus its environment's own layer) as its read-only /
instead of the host's /usr (`process_packages.py`, `sandbox_rootfs.py`, `rootfs.py`).

Apps run in their own session (process group) so they outlive a supervisor restart; each
start writes a state file (`process_state.py`) and `list()` adopts what is still alive. A
build directory left by a killed supervisor is removed at the next start (`list()`, which
adoption calls). Two instances of one app may run at once (a zero-downtime redeploy starts
the new one with `AppSpec.alongside` before stopping the old one).

Limits (`process_limits.py`): with a cgroup v1 memory controller each instance runs in its
own memory cgroup (`cgroups.py`), and an OOM kill in it makes `maintain` end the whole
instance; without one, `maintain` is a memory watchdog (PSS of the process tree; the
reconciler maintains every running app each pass after polling it, so its period is
`reconcile_interval`). Either way the next `poll` says `oom`. A pids cgroup
(`process_pids_limit`) caps processes and threads; `stop` kills whatever is left in it.
`usage` reads the memory cgroup (each page once), else the tree's PSS.

Warm pool (`warm_pool.py`, `warm_pool_memory_mb`): as root with the sandbox, an environment
of sleeping apps may have a slot waiting (`zygote.py`: Streamlit already imported); a start
that does not run alongside takes it, and the slot becomes the app's instance, with the same
state file, so poll, stop, adoption and usage work as for a cold start.

Logs: each app's stdout and stderr go through `logpipe.py` (a writer process forked by the
app's launcher, in the app's process group, outside the sandbox) to `app.log`, rotated at
`app_log_max_bytes` with `app_log_backups` old files kept. Apps get nothing of our
environment: a minimal PATH/HOME/LANG plus their own variables.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from backend.platform.settings import Settings
from supervisor.runtimes import (
    cgroups,
    ports,
    pythons,
    sandbox,
    sandbox_commands,
    warm_pool,
    warm_slot,
    workdir,
)
from supervisor.runtimes.base import (
    AppSpec,
    BuildError,
    EnvRef,
    Instance,
    Runtime,
    StartError,
    Status,
)
from supervisor.runtimes.process_build import EnvBuilds
from supervisor.runtimes.process_limits import InstanceLimits
from supervisor.runtimes.process_state import kill_members, terminate_group

log = logging.getLogger("supervisor.runtimes.process")
LOGPIPE = Path(__file__).resolve().parent / "logpipe.py"
# Joins the instance's cgroups ($0: their cgroup.procs files, space-separated), then becomes
# the app ("$@"): never unlimited.
ENTER_CGROUP = ('for f in $0; do echo $$ > "$f" || { echo "stcloud: could not enter the '
                'cgroup $f" >&2; exit 70; }; done; exec "$@"')
__all__ = ["LOGPIPE", "ProcessRuntime", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, picked below the kernel's ephemeral range: that range
    also serves every outgoing connection's local port, so a port picked from it (bind to 0)
    was at times taken again before the app's forwarder could listen on it."""
    low = ports.ephemeral_low()
    for _ in range(64):
        port = random.randrange(ports.FIRST_APP_PORT, low) if low > ports.FIRST_APP_PORT \
            else 0
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            found: int = s.getsockname()[1]
            return found
    with socket.socket() as s:
        s.bind((host, 0))
        fallback: int = s.getsockname()[1]
        return fallback


def _spawn(command: list[str], cwd: str, env: dict[str, str], fds: tuple[int, ...],
           log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` in a session of its own, its output appended to `log_path`."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, pass_fds=fds)


@functools.lru_cache(maxsize=256)
def reads_secrets_files(venv: str) -> bool:
    """Whether the environment's Streamlit has the `secrets.files` option (older releases
    read only ~/.streamlit/secrets.toml and the working directory's .streamlit/secrets.toml).
    An environment is never changed once built, so the answer is kept per path."""
    for config in Path(venv).glob("lib/python*/site-packages/streamlit/config.py"):
        try:
            return b'"secrets.files"' in config.read_bytes()
        except OSError:
            return True
    return True


def streamlit_command(venv: str, main_file: str, port: int, address: str) -> list[str]:
    # The venv's `streamlit` script, not `python -m streamlit`: -m would put the app's
    # directory first on sys.path, and a file of the app could shadow streamlit itself.
    return [f"{venv}/bin/streamlit", "run", main_file,
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.runOnSave", "true", "--server.fileWatcherType", "poll"]


class ProcessRuntime(EnvBuilds, InstanceLimits, Runtime):
    """`isolation` says how hosted code runs: "bubblewrap" (sandboxed), "single-tenant"
    (the operator set process_sandbox = "off": as the supervisor's user) or "unavailable"
    (sandboxing is wanted but this host cannot: builds and starts are refused, with
    `isolation_problem` saying what to install or enable)."""

    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._env_locks: dict[str, asyncio.Lock] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # pid -> child we started
        self._pythons: dict[str, pythons.Interpreter] | None = None
        self._oom_pids: set[int] = set()  # instances the memory watchdog killed
        self.memory_mode = cgroups.choose_mode(settings.process_memory_limit)
        self._cgroup_parent = cgroups.install_prefix(settings.data_dir)
        found = sandbox.probe() if settings.process_sandbox != "off" else sandbox.Probe(None)
        self._tools = found.tools
        self.isolation = sandbox.choose_isolation(settings.process_sandbox, found)
        self.isolation_problem = found.problem
        if self.isolation == sandbox.UNAVAILABLE:
            log.error("process runtime cannot sandbox apps; refusing to build or start them "
                      "problem=%r", found.problem)
        elif self.isolation == sandbox.SINGLE_TENANT:
            log.warning("process runtime isolation=single-tenant: apps and their builds run "
                        "unsandboxed as uid=%d (process_sandbox = \"off\"); use it only on "
                        "a machine whose apps you all trust", os.geteuid())
        else:
            log.info("process runtime isolation=bubblewrap root=%s pids_limit=%d",
                     sandbox.running_as_root(), settings.process_pids_limit)
        self._slot_host = warm_slot.SlotHost(
            settings, self._tools, self.isolation, self.memory_mode, self._cgroup_parent,
            str(LOGPIPE), ENTER_CGROUP, free_port, self.build_root, reads_secrets_files,
            self._adopt_child, self._process)
        self._warm = warm_pool.make_pool(self._slot_host)

    def _adopt_child(self, app_id: int, child: subprocess.Popen[bytes],
                     state: dict[str, Any]) -> None:
        self._children[child.pid] = child
        self._write_state(app_id, state)

    def refuse_unsandboxed(self, what: str) -> str:
        """The error for a build or start refused because this host cannot sandbox."""
        return (f"Cannot {what}: this server cannot sandbox apps ({self.isolation_problem}). "
                "An operator must install what is missing, or set process_sandbox = \"off\" "
                "for a single-tenant machine.")

    # Instances ------------------------------------------------------------------------
    # Steps of Runtime.start: the process runs from its creation on.
    async def check_start(self, app: AppSpec, env: EnvRef) -> None:
        if self.isolation == sandbox.UNAVAILABLE:
            raise StartError(self.refuse_unsandboxed("start the app"))

    async def current_instances(self, app_id: int) -> list[Any]:
        states = [self._read_path(path) for _, path in self._state_files(app_id)]
        return [state for state in states if state]

    async def remove_instances(self, app: AppSpec, found: list[Any]) -> None:
        for state in found:
            await self.stop(app.app_id, state)

    async def run_instance(self, app: AppSpec, created: Any, token: str) -> Instance:
        assert isinstance(created, Instance)
        return created

    async def create_instance(self, app: AppSpec, env: EnvRef, token: str) -> Any:
        main = app.checkout / app.main_file
        if not main.is_file():
            raise StartError(f"The main file {app.main_file} is not in the repository.")
        woken = await self._warm.wake(app, env) if self._warm and not token else None
        if woken is not None:
            return woken
        port = free_port()
        home = app.checkout.parent / "home"
        app.log_path.parent.mkdir(parents=True, exist_ok=True)
        groups = self._new_cgroups(app)
        if self.isolation == sandbox.BUBBLEWRAP:
            command, child_env, cwd, fds = self._sandboxed(app, env, port, home)
        else:
            command, child_env, cwd, fds = self._unsandboxed(app, env, port, home)
        command = [sys.executable, "-I", str(LOGPIPE), str(app.log_path),
                   str(self.settings.app_log_max_bytes), str(self.settings.app_log_backups),
                   "--", *command]
        if groups:
            command = ["/bin/sh", "-c", ENTER_CGROUP,
                       " ".join(str(g.procs_file) for g in groups.values()), *command]
        try:
            child = await asyncio.to_thread(_spawn, command, cwd, child_env, fds, app.log_path)
        finally:
            for fd in fds:
                os.close(fd)
        self._children[child.pid] = child
        state: dict[str, Any] = {
            "pid": child.pid, "create_time": psutil.Process(child.pid).create_time(),
            "port": port, "generation": app.generation,
            "memory_limit_mb": app.memory_limit_mb, "isolation": self.isolation}
        for kind, group in groups.items():
            state[kind] = str(group.path)
        if token:
            state["instance"] = token
        self._write_state(app.app_id, state)
        return Instance(app.app_id, ("127.0.0.1", port), state, app.generation)

    def _sandboxed(self, app: AppSpec, env: EnvRef, port: int,
                   home: Path) -> tuple[list[str], dict[str, str], str, tuple[int, ...]]:
        """The instance in bubblewrap as its app's user (module `sandbox`). The runtime
        secrets reach it through a memory file bwrap copies to a read-only file inside
        (`secrets_fd`, to be closed once the child is started): no copy on the host's
        disk, nothing written into the checkout."""
        assert self._tools is not None
        uid = sandbox.app_uid(app.app_id)
        sandbox.owned_dir(home, uid)
        secrets_fd = None
        if app.secrets_file is not None:
            secrets_fd = os.memfd_create("stcloud-secrets", 0)  # inherited: bwrap reads it
            os.write(secrets_fd, Path(app.secrets_file).read_bytes())
            os.lseek(secrets_fd, 0, os.SEEK_SET)
        streamlit = streamlit_command(env.location, app.main_file, sandbox.APP_PORT,
                                      sandbox.GUEST_ADDRESS)
        old_secrets = secrets_fd is not None and not reads_secrets_files(env.location)
        if secrets_fd is not None and not old_secrets:
            streamlit += ["--secrets.files", sandbox.SECRETS_IN_SANDBOX]
        in_workdir = [f"{env.location}/bin/python", workdir.SCRIPT_IN_INSTANCE,
                      workdir.CHECKOUT_IN_INSTANCE, app.main_file, "--", *streamlit]
        try:  # an environment with Debian packages: its root filesystem is the app's /
            prefix, root = self.build_root(Path(env.location))
        except BuildError as e:
            if secrets_fd is not None:
                os.close(secrets_fd)
            raise StartError(str(e)) from None
        command = prefix + sandbox_commands.app_command(
            self._tools, uid=uid, venv=env.location, checkout=app.checkout, home=home,
            secrets_fd=secrets_fd, host_port=port, run_dir=self.settings.run_path,
            max_procs=self.settings.process_pids_limit,
            workdir_bytes=workdir.workdir_bytes(self.settings.app_workdir_size_mb),
            command=in_workdir, root=root)
        child_env = {"PATH": f"{env.location}/bin:/usr/local/bin:/usr/bin:/bin",
                     "HOME": sandbox.APP_HOME, "USER": "app", "LOGNAME": "app",
                     "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                     "VIRTUAL_ENV": env.location, **app.env_vars}
        if old_secrets:
            child_env[workdir.SECRETS_COPY_ENV] = sandbox.SECRETS_IN_SANDBOX
        # The launcher runs in the checkout, as an unsandboxed app would: tools that find
        # an app's processes by their directory find its sandbox's outer process.
        fds = (secrets_fd,) if secrets_fd is not None else ()
        return command, child_env, str(app.checkout), fds

    def _unsandboxed(self, app: AppSpec, env: EnvRef, port: int,
                     home: Path) -> tuple[list[str], dict[str, str], str, tuple[int, ...]]:
        """Single-tenant mode: the instance as the supervisor's user, in its checkout. The
        runtime secrets file is read where it is (`secrets.files`): a symlinked
        `.streamlit/secrets.toml` in the repository is neither written through nor read."""
        home.mkdir(parents=True, exist_ok=True)
        streamlit = streamlit_command(env.location, app.main_file, port, "127.0.0.1")
        if app.secrets_file is not None and reads_secrets_files(env.location):
            streamlit += ["--secrets.files", str(Path(app.secrets_file).resolve())]
        elif app.secrets_file is not None:  # an older Streamlit reads ~/.streamlit's
            (home / ".streamlit").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(app.secrets_file, home / ".streamlit" / "secrets.toml")
        child_env = {"PATH": f"{env.location}/bin:/usr/local/bin:/usr/bin:/bin",
                     "HOME": str(home), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                     "VIRTUAL_ENV": env.location, **app.env_vars}
        return streamlit, child_env, str(app.checkout), ()

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        """Observes only: `running` while the instance's process lives (over its memory
        limit too: `maintain` ends it), else `oom` or `exited` as it ended."""
        if not state.get("pid"):
            return Status("missing")
        pid = state["pid"]
        # /proc and cgroup reads in a worker thread: the proxy shares this event loop.
        group, proc, _ = await asyncio.to_thread(self._inspect, state)
        if proc is not None:
            return Status("running")
        child = self._children.get(pid)
        if child is not None:
            child.poll()
        code = child.returncode if child is not None else None
        if pid in self._oom_pids or state.get("oom") or \
                (group is not None and group.oom_kills() > 0):
            return Status("oom", code)
        return Status("exited", code)

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        proc = self._process(state) if state else None
        if proc is not None:
            how = await asyncio.to_thread(terminate_group, proc.pid, 5.0,
                                          self._pids_cgroup(state))
            log.info("app=%s pid=%s stopped how=%s", app_id, proc.pid, how)
        child = self._children.pop(state.get("pid", -1), None) if state else None
        if child is not None:
            child.poll()
        pids = self._pids_cgroup(state) if state else None
        if pids is not None:  # processes that left the group (setsid) are still in it
            await asyncio.to_thread(kill_members, pids)
        for group in (self._cgroup(state) if state else None, pids):
            if group is not None:
                await asyncio.to_thread(group.remove)
        if state and state.get("warm_slot"):  # its mounts, once its processes are gone
            await asyncio.to_thread(warm_slot.release, Path(state["warm_slot"]))
            if self._warm is None:
                await asyncio.to_thread(warm_slot.unmount_tree, self.settings.run_path / "warm")
        for _, path in self._state_files(app_id):
            current = self._read_path(path)
            if current is None or current.get("pid") == (state or {}).get("pid"):
                path.unlink(missing_ok=True)

    async def list(self) -> list[Instance]:
        await asyncio.to_thread(self.clean_stale_builds)  # list() runs at adoption
        instances = []
        for app_id, path in self._state_files():
            state = self._read_path(path)
            if state and self._process(state) is not None:
                instances.append(Instance(app_id, ("127.0.0.1", int(state["port"])), state,
                                          int(state.get("generation", 0))))
        # cgroups of instances that died with a supervisor
        for kind, root in (("cgroup", cgroups.MEMORY_ROOT), ("pids_cgroup", cgroups.PIDS_ROOT)):
            keep = {i.state.get(kind, "") for i in instances}
            for path in cgroups.stale_groups(self._cgroup_parent, keep, root):
                cgroups.Cgroup(path).remove(wait=0)
        if sandbox.running_as_root():
            await asyncio.to_thread(warm_pool.clean_up, self._slot_host, self._warm,
                                    [i.state for i in instances])
        return instances

    def prepare_wakes(self, env_hashes: builtins.list[str]) -> None:
        if self._warm is not None:
            self._warm.want(env_hashes)

    async def close(self) -> None:
        if self._warm is not None:
            await self._warm.close()
