"""The sandboxed commands themselves: an app instance (`app_command`) and an environment
build step (`build_command`), each bubblewrap behind the network launcher, assembled from
the pieces in `sandbox.py` (namespaces, the system view, identity files, the user switch)
and, for an environment with Debian packages, the root filesystem of `sandbox_rootfs.py`.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.runtimes import sandbox_rootfs, workdir
from supervisor.runtimes.sandbox import (
    APP_DIR,
    APP_HOME,
    APP_PORT,
    BUILDER_UID,
    SECRETS_IN_SANDBOX,
    Tools,
    identity_binds,
    identity_files,
    interpreter_prefix,
    launcher,
    namespace_args,
    prefix_binds,
    privileged_args,
    system_view,
    user_switch,
    with_open_parents,
)


def view_args(root: Path | None) -> list[str]:
    """What the sandbox sees as its system: the host's /usr and a few /etc files after its
    namespaces (`namespace_args`), or with `root` (a mounted Debian root filesystem,
    `sandbox_rootfs.py`) that tree as /, before them (bwrap mounts in order)."""
    if root is None:
        return [*namespace_args(), *system_view()]
    return [*sandbox_rootfs.root_args(root), *namespace_args()]


def read_only_root(root: Path | None) -> list[str]:
    """Last of bwrap's arguments: a root filesystem is remounted read-only once bwrap has
    made its mount points in it."""
    return ["--remount-ro", "/"] if root is not None else []


def app_command(tools: Tools, *, uid: int, venv: str, checkout: Path, home: Path,
                secrets_fd: int | None, host_port: int, run_dir: Path, max_procs: int,
                workdir_bytes: int, command: list[str], root: Path | None = None,
                extra: tuple[str, ...] = ()) -> list[str]:
    """The sandboxed command of an app instance: `command` (Streamlit on
    GUEST_ADDRESS:APP_PORT inside, run by `workdir.py`) runs in /app as `uid`, reachable
    on the host at 127.0.0.1:host_port. /app is a tmpfs of `workdir_bytes` that
    `workdir.py` fills from the checkout, bound read-only at CHECKOUT_IN_INSTANCE.

    No --die-with-parent: the instance must outlive a supervisor restart and be adopted.
    With `root`, that tree is its / (read-only) instead of the host's /usr. `extra`: more
    bwrap arguments after the checkout's (a warm slot's program and secrets directory)."""
    args = [*view_args(root),
            *identity_binds(identity_files(run_dir, uid, APP_HOME)),
            *prefix_binds(interpreter_prefix(Path(venv))),
            "--ro-bind", venv, venv,
            "--ro-bind", str(checkout.resolve()), workdir.CHECKOUT_IN_INSTANCE,
            "--ro-bind", workdir.SCRIPT, workdir.SCRIPT_IN_INSTANCE,
            *extra,
            "--bind", str(home), APP_HOME,
            "--perms", f"{workdir.TMPFS_MODE:o}", "--size", str(workdir_bytes),
            "--tmpfs", APP_DIR]
    args += ["--chdir", APP_DIR, *privileged_args()]
    args = with_open_parents(args)
    if secrets_fd is not None:  # bwrap copies the fd's content to a read-only file
        args += ["--dir", str(Path(SECRETS_IN_SANDBOX).parent), "--perms", "0444",
                 "--ro-bind-data", str(secrets_fd), SECRETS_IN_SANDBOX]
    args += read_only_root(root)
    return [*launcher(tools), f"{host_port}:{APP_PORT}", "--", tools.bwrap, *args, "--",
            *user_switch(tools, uid, max_procs), *command]


def build_command(tools: Tools, *, venv: Path, writable: list[Path], readable: list[Path],
                  run_dir: Path, max_procs: int, command: list[str],
                  root: Path | None = None) -> list[str]:
    """A sandboxed build step (uv) as BUILDER_UID: the environment being built and the
    package cache writable, uv, the interpreter's prefix and the CA bundle read-only,
    outbound network for the package index. It dies with its supervisor. With `root`,
    that tree is its / (read-only)."""
    args = [*view_args(root),
            *identity_binds(identity_files(run_dir, BUILDER_UID, "/tmp"))]
    for path in readable:
        args += prefix_binds(path) if path.is_dir() else ["--ro-bind", str(path), str(path)]
    for path in [venv, *writable]:
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", "/tmp", "--die-with-parent", *privileged_args()]
    return [*launcher(tools), "--", tools.bwrap,
            *with_open_parents(args), *read_only_root(root), "--",
            *user_switch(tools, BUILDER_UID, max_procs),
            *command]
