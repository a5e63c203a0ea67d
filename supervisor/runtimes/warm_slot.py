"""One warm slot of the process runtime's pool (`warm_pool.py`): a sandbox launched like an
app instance (`sandbox_commands.app_command`: same view, the environment read-only, its own
port forward, memory and pids cgroups), as a uid of its own (`WARM_UID_BASE` + a random
number, a range no app's uid is in), whose program is `zygote.py` waiting on its stdin.

Mounts (the supervisor is root): the slot's directory `run/warm/slot-<uid>` holds two
mount points, `checkout` and `home`, each made a *shared* mount before bwrap starts;
bwrap binds them into the sandbox (at CHECKOUT_IN_INSTANCE and HOME), where they are slaves
of the host's. At assignment (`assign`) the app's checkout is bound read-only on a staging
point, remounted read-only and moved onto `checkout`, and the app's home is bound onto
`home`: both mounts propagate into the waiting sandbox, read-only as made. Then both points
are made private: a mount namespace someone else made meanwhile (a copy of the host's is a
peer of every shared mount) would otherwise propagate its unmounts back to the host, and
from there into the sandbox (seen: an app's checkout and home vanishing from it while other
sandboxes came and went). Until then both points are empty directories, so an idle slot
sees no app's files. The `run/warm` tree is a private mount of its own (a mount can be
moved only from under a parent that is not shared).

Then the slot's cgroups take the app's limits, its log writer switches to the app's log
(`logpipe.py --control`), the go line is written and the pipe closed: a slot serves one app.
The instance's state carries `warm_slot` (the directory), which `release` unmounts and
removes once the instance has stopped.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from backend.platform.settings import Settings
from supervisor.runtimes import cgroups, sandbox, sandbox_commands, workdir
from supervisor.runtimes.base import AppSpec, EnvRef, streamlit_command

ZYGOTE = str(Path(__file__).resolve().parent / "zygote.py")
ZYGOTE_IN_INSTANCE = str(Path(workdir.SCRIPT_IN_INSTANCE).parent / "zygote.py")
WARM_UID_BASE = 1_600_000_000  # + up to UID_SPAN: below every app's uid (SANDBOX_UID_BASE)
UID_SPAN = 100_000_000
SLOT_FILE = "slot.json"
SECRETS_TMPFS_BYTES = 1 << 20  # where the zygote writes the app's secrets (0600)
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 1, 32, 4096, 8192, 16384
MS_PRIVATE, MS_SHARED = 1 << 18, 1 << 20
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


class AssignError(Exception):
    """The slot could not become the app's instance (then the app starts cold)."""


@dataclass(frozen=True)
class SlotHost:
    """What the slots need of their process runtime, which makes this (`ProcessRuntime`)."""

    settings: Settings
    tools: sandbox.Tools | None
    isolation: str
    memory_mode: str
    cgroup_parent: str
    logpipe: str  # logpipe.py
    enter_cgroup: str  # the shell line that joins the cgroups, then runs the rest
    free_port: Callable[[], int]
    build_root: Callable[[Path], tuple[list[str], Path | None]]
    secrets_files: Callable[[str], bool]  # whether the venv's Streamlit has secrets.files
    # the instance started: remember the child, write its state file
    adopt: Callable[[int, subprocess.Popen[bytes], dict[str, Any]], None]
    live: Callable[[dict[str, Any]], psutil.Process | None]  # the process a state names


def _mount(source: str | None, target: str, flags: int) -> None:
    if _libc.mount(source.encode() if source else None, target.encode(), None,
                   ctypes.c_ulong(flags), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def detach(target: Path) -> None:
    """Unmount everything stacked on `target` (lazily: a dying sandbox may hold it)."""
    for _ in range(16):
        if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
            return  # EINVAL: nothing (more) mounted there; ENOENT: gone
    raise OSError(errno.EBUSY, f"{target} stays mounted")


def shared_point(path: Path) -> None:
    """`path` a mount of its own whose mounts propagate (to the sandbox's slave copy)."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(str(path), str(path), MS_BIND)
    _mount(None, str(path), MS_SHARED)


def private_tree(path: Path) -> None:
    """`path` a private mount (once): mounts are moved out of it onto the slots' points."""
    path.mkdir(parents=True, exist_ok=True)
    try:  # not recursive: the waiting slots' points must stay shared
        _mount(None, str(path), MS_PRIVATE)
    except OSError:  # not yet a mount point
        _mount(str(path), str(path), MS_BIND)
        _mount(None, str(path), MS_PRIVATE)


def bind_read_only(source: Path, target: Path, staging: Path) -> None:
    """Bind `source` read-only onto the shared `target`: made read-only on `staging`
    first, then moved, so the copies that propagate are read-only too (a remount does not
    propagate)."""
    staging.mkdir(exist_ok=True)
    try:
        _mount(str(source), str(staging), MS_BIND)
        _mount(None, str(staging), MS_REMOUNT | MS_BIND | MS_RDONLY)
        _mount(str(staging), str(target), MS_MOVE)
    except OSError:
        detach(staging)
        raise
    finally:
        try:
            staging.rmdir()
        except OSError:
            pass


def free_uid() -> int:
    """A slot uid no live process has."""
    used = {p.info["uids"].real for p in psutil.process_iter(["uids"]) if p.info.get("uids")}
    while True:
        uid = WARM_UID_BASE + secrets.randbelow(UID_SPAN)
        if uid not in used:
            return uid


@dataclass
class Slot:
    """A launched slot; `ready` once its interpreter has imported everything."""

    location: str  # the environment (venv) it runs
    uid: int
    folder: Path
    port: int
    popen: subprocess.Popen[bytes]
    go_fd: int  # the write end of its stdin
    ready_fd: int
    create_time: float
    groups: dict[str, cgroups.Cgroup] = field(default_factory=dict)
    ready: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the zygote says ready (True), or it ended or `timeout` ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            if select.select([self.ready_fd], [], [], 0.25)[0]:
                self.ready = os.read(self.ready_fd, 16).startswith(b"ready")
                return self.ready
        return False

    def memory_bytes(self) -> int:
        """What the slot costs now: its memory cgroup's usage, else its tree's PSS."""
        group = self.groups.get("cgroup")
        if isinstance(group, cgroups.MemoryCgroup) and group.usage_bytes():
            return group.usage_bytes()
        from supervisor.runtimes.process_state import tree_memory
        try:
            return tree_memory(psutil.Process(self.pid))
        except psutil.Error:
            return 0

    def sandbox_pid(self) -> int | None:
        """The zygote itself (the slot's uid), for checks of what it sees."""
        try:
            for proc in psutil.Process(self.pid).children(recursive=True):
                if proc.uids().real == self.uid:
                    return proc.pid
        except psutil.Error:
            return None
        return None


def launch(host: SlotHost, env: str, memory_mb: int) -> Slot:
    """Start a slot of environment `env` (its memory cgroup limited to `memory_mb`)."""
    settings = host.settings
    uid = free_uid()
    folder = settings.run_path / "warm" / f"slot-{uid}"
    private_tree(folder.parent)
    folder.mkdir(mode=0o700)
    groups: dict[str, cgroups.Cgroup] = {}
    try:
        return _launch(host, env, memory_mb, uid, folder, groups)
    except BaseException:
        for group in groups.values():
            group.remove(wait=0)
        release(folder)
        raise


def _launch(host: SlotHost, env: str, memory_mb: int, uid: int, folder: Path,
            groups: dict[str, cgroups.Cgroup]) -> Slot:
    settings = host.settings
    assert host.tools is not None
    checkout, home = folder / "checkout", folder / "home"
    shared_point(checkout)
    shared_point(home)
    os.chown(home, uid, uid)
    os.chmod(home, 0o700)
    log_path, control = folder / "slot.log", folder / "log.ctl"
    os.mkfifo(control, 0o600)
    port = host.free_port()
    if host.memory_mode == "cgroup":
        groups["cgroup"] = cgroups.MemoryCgroup.create(host.cgroup_parent, 0, memory_mb)
    if settings.process_pids_limit > 0 and cgroups.pids_available():
        groups["pids_cgroup"] = cgroups.PidsCgroup.create(
            host.cgroup_parent, 0, settings.process_pids_limit)
    prefix, root = host.build_root(Path(env))
    command = prefix + sandbox_commands.app_command(
        host.tools, uid=uid, venv=env, checkout=checkout, home=home, secrets_fd=None,
        host_port=port, run_dir=settings.run_path, max_procs=settings.process_pids_limit,
        workdir_bytes=workdir.workdir_bytes(settings.app_workdir_size_mb),
        command=[f"{env}/bin/python", ZYGOTE_IN_INSTANCE], root=root,
        extra=("--ro-bind", ZYGOTE, ZYGOTE_IN_INSTANCE, "--perms", "1777", "--size",
               str(SECRETS_TMPFS_BYTES), "--tmpfs", str(Path(sandbox.SECRETS_IN_SANDBOX).parent)))
    command = [sys.executable, "-I", host.logpipe, str(log_path),
               str(settings.app_log_max_bytes), str(settings.app_log_backups),
               "--control", str(control), "--", *command]
    if groups:
        command = ["/bin/sh", "-c", host.enter_cgroup,
                   " ".join(str(g.procs_file) for g in groups.values()), *command]
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    child_env = {"PATH": f"{env}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": sandbox.APP_HOME,
                 "USER": "app", "LOGNAME": "app", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
                 "VIRTUAL_ENV": env, "STCLOUD_READY_FD": str(ready_w)}
    try:
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(command, cwd=str(folder), env=child_env, stdin=go_r,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, pass_fds=(ready_w,))
    finally:
        os.close(go_r)
        os.close(ready_w)
    created = psutil.Process(popen.pid).create_time()
    slot = Slot(env, uid, folder, port, popen, go_w, ready_r, created, groups)
    (folder / SLOT_FILE).write_text(json.dumps(
        {"pid": popen.pid, "create_time": created, "env": env,
         **{kind: str(g.path) for kind, g in groups.items()}}))
    return slot


def _relimit(groups: dict[str, cgroups.Cgroup], memory_mb: int, pids: int) -> None:
    memory = groups.get("cgroup")
    if memory is not None:
        limit = str(memory_mb << 20) if memory_mb > 0 else "-1"
        names = ["memory.limit_in_bytes"]
        if (memory.path / "memory.memsw.limit_in_bytes").exists():
            # memsw may never be below the plain limit: lower the plain one first
            names = names + ["memory.memsw.limit_in_bytes"] if memory_mb > 0 else \
                ["memory.memsw.limit_in_bytes", *names]
        for name in names:
            (memory.path / name).write_text(limit)
    group = groups.get("pids_cgroup")
    if group is not None and pids > 0:
        (group.path / "pids.max").write_text(str(pids))


def assign(slot: Slot, app: AppSpec, env: EnvRef, secrets_files: bool, pids: int,
           isolation: str) -> dict[str, Any]:
    """Make the slot `app`'s instance and return the instance's state (AssignError, and
    the slot is unusable, when a step fails)."""
    if not slot.ready or slot.popen.poll() is not None:
        raise AssignError("the slot is not waiting any more")
    try:
        home = app.checkout.parent / "home"
        sandbox.owned_dir(home, slot.uid)
        bind_read_only(app.checkout.resolve(), slot.folder / "checkout",
                       slot.folder.parent / f"stage-{slot.uid}")
        _mount(str(home), str(slot.folder / "home"), MS_BIND)
        for point in ("checkout", "home"):  # propagated: now keep them out of other hands
            _mount(None, str(slot.folder / point), MS_PRIVATE | MS_REC)
        _relimit(slot.groups, app.memory_limit_mb, pids)
        app.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(slot.folder / "log.ctl", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, f"{app.log_path}\n".encode())
        finally:
            os.close(fd)
        go = {"main_file": app.main_file, "env": app.env_vars,
              "argv": streamlit_command(env.location, app.main_file, sandbox.APP_PORT,
                                        sandbox.GUEST_ADDRESS),
              "secrets": (Path(app.secrets_file).read_text()
                          if app.secrets_file is not None else None),
              "secrets_files": secrets_files}
        os.write(slot.go_fd, json.dumps(go).encode() + b"\n")
    except OSError as exc:
        raise AssignError(str(exc)) from None
    finally:
        if slot.go_fd >= 0:
            os.close(slot.go_fd)
        slot.go_fd = -1
        slot.ready = False  # never handed out again
    state: dict[str, Any] = {
        "pid": slot.pid, "create_time": slot.create_time, "port": slot.port,
        "generation": app.generation, "memory_limit_mb": app.memory_limit_mb,
        "isolation": isolation, "warm_slot": str(slot.folder)}
    for kind, group in slot.groups.items():
        state[kind] = str(group.path)
    return state


def kill(slot: Slot) -> None:
    """End a slot that serves no app, and remove what it had."""
    from supervisor.runtimes.process_state import kill_members, terminate_group

    for fd in (slot.go_fd, slot.ready_fd):
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
    slot.go_fd = slot.ready_fd = -1
    terminate_group(slot.pid, 0.0)
    slot.popen.poll()
    for group in slot.groups.values():
        kill_members(group)
        group.remove()
    release(slot.folder)


def release(folder: Path) -> None:
    """Unmount and remove a slot's directory once its processes are gone. Only what this
    module made there is removed (rmdir refuses a mount point that still holds files)."""
    for name in ("checkout", "home"):
        detach(folder / name)
        try:
            (folder / name).rmdir()
        except FileNotFoundError:
            pass
    for name in ("slot.log", "log.ctl", SLOT_FILE):
        (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except FileNotFoundError:
        pass
    uid = folder.name.removeprefix("slot-")
    identity = folder.parent.parent / "sandbox" / f"uid-{uid}"
    if uid.isdigit() and identity.is_dir():
        for path in identity.iterdir():
            path.unlink(missing_ok=True)
        identity.rmdir()


def unmount_tree(warm: Path) -> None:
    """Unmount the slots' private tree once no slot directory is left in it."""
    if warm.is_dir() and not any(warm.glob("slot-*")):
        detach(warm)


def leftovers(warm: Path, keep: set[str]) -> list[tuple[Path, dict[str, Any]]]:
    """Slot directories of an earlier supervisor that no live instance's state names."""
    if not warm.is_dir():
        return []
    out = []
    for folder in sorted(warm.glob("slot-*")):
        if str(folder) in keep:
            continue
        try:
            info = json.loads((folder / SLOT_FILE).read_text())
        except (OSError, ValueError):
            info = {}
        out.append((folder, info if isinstance(info, dict) else {}))
    return out
