"""Sandboxes whose / is a Debian root filesystem (`rootfs.py`) with an environment's own
layer over it, for apps whose repository has packages.txt.

An environment with Debian packages keeps, beside its venv, the layer apt wrote
(`<env>/.stcloud-rootfs/upper`, root's, mode 0700) and the path of the tree beneath it.
Each sandboxed command over it is started through `mount_prefix`: `unshare --mount` gives
the command a private mount namespace, in which an overlay of the layers is mounted on a
directory of the run dir (nothing is mounted on the host's side, and the mount ends with
the sandbox's last process); bwrap then binds that overlay as the sandbox's / (`root_args`).

- The apt step (`apt_command`) mounts the overlay writable onto the environment's layer:
  apt-get runs as root there, with a reduced capability set, in its own pid, ipc, uts and
  network namespaces (outbound network through slirp4netns), seeing nothing of the host but
  that overlay. The tree beneath is a read-only lower layer: no build changes it.
- Every other command (the uv steps, as the build user, and the app, as its own user)
  mounts the layers read-only beneath a small throw-away tmpfs, which only takes the mount
  points bwrap makes; bwrap remounts / read-only before the command runs.

Overlay options separate paths with ',' and ':', so the paths involved must not contain
them (`OverlayPathError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.runtimes import sandbox

LAYER_DIR = ".stcloud-rootfs"
BASE_FILE = "base"  # in LAYER_DIR: the path of the tree beneath the layer
MOUNT_FS = "stcloud-rootfs"
SCRATCH_SIZE = "4m"  # the throw-away upper of read-only mounts: mount points only
# What dpkg and apt need as root: file ownership and modes, dropping to _apt for downloads.
APT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
            "CAP_FSETID", "CAP_KILL", "CAP_SETUID", "CAP_SETGID", "CAP_SETFCAP")
APT_EXIT = 10  # the same code the Docker build script uses for a failed apt step
APT_SCRIPT = (
    "export DEBIAN_FRONTEND=noninteractive; "
    f"apt-get update -q || exit {APT_EXIT}; "
    f"apt-get install -y -q --no-install-recommends \"$@\" || exit {APT_EXIT}; "
    "apt-get clean; rm -rf /var/lib/apt/lists/*")
WRITABLE_MOUNT = (f'mount -t overlay {MOUNT_FS} -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4" || '
                  '{ echo "stcloud: could not mount the root filesystem" >&2; exit 70; }; '
                  'shift 4; exec "$@"')
READ_ONLY_MOUNT = (
    f'mount -t tmpfs -o mode=0700,size={SCRATCH_SIZE} {MOUNT_FS} "$1" && '
    'mkdir "$1/u" "$1/w" "$1/root" && '
    f'mount -t overlay {MOUNT_FS} -o "lowerdir=$2,upperdir=$1/u,workdir=$1/w" "$1/root" || '
    '{ echo "stcloud: could not mount the root filesystem" >&2; exit 70; }; '
    'shift 2; exec "$@"')


class OverlayPathError(OSError):
    """A path that cannot be named in overlay mount options."""


@dataclass(frozen=True)
class Layers:
    """An environment's layer and the tree beneath it."""

    upper: Path
    base: Path

    @property
    def work(self) -> Path:  # overlayfs's work directory, beside the layer (same disk)
        return self.upper.parent / "work"


def layers_of(env_dir: Path) -> Layers | None:
    """The layers of a built environment, None for one without Debian packages."""
    folder = env_dir / LAYER_DIR
    try:
        base = Path((folder / BASE_FILE).read_text().strip())
    except OSError:
        return None
    return Layers(folder / "upper", base)


def new_layers(env_dir: Path, base: Path) -> Layers:
    """Make the (empty) layer of an environment being built over `base`; root's, 0700."""
    folder = env_dir / LAYER_DIR
    folder.mkdir(mode=0o700)
    for name in ("upper", "work"):
        (folder / name).mkdir(mode=0o755)
    sandbox.write_private_file(folder / BASE_FILE, f"{base}\n".encode(), mode=0o600)
    return Layers(folder / "upper", base)


def _option_path(path: Path) -> str:
    text = str(path.resolve())
    if any(c in text for c in ",:\\\n"):
        raise OverlayPathError(f"{text} contains ',', ':' or '\\', which overlay mount "
                               "options cannot hold: choose data_dir, envs_dir and "
                               "process_rootfs_dir paths without them")
    return text


def scratch_dir(run_dir: Path) -> Path:
    """The directory each sandbox mounts its root on, in its own mount namespace."""
    path = run_dir / "rootfs-mount"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def mount_prefix(layers: Layers, run_dir: Path, *, writable: bool) -> tuple[list[str], Path]:
    """The command prefix that mounts the overlay in a private mount namespace and then
    execs the rest of the command line (the launcher, then bwrap), and the path bwrap must
    bind as /. The process keeps its pid through the execs."""
    scratch = scratch_dir(run_dir)
    unshare = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c"]
    if writable:
        return ([*unshare, WRITABLE_MOUNT, "sh", _option_path(layers.base),
                 _option_path(layers.upper), _option_path(layers.work), str(scratch)],
                scratch)
    lowers = f"{_option_path(layers.upper)}:{_option_path(layers.base)}"
    return [*unshare, READ_ONLY_MOUNT, "sh", str(scratch), lowers], scratch / "root"


def root_args(merged: Path, *, own_root_home: bool = False) -> list[str]:
    """bwrap's first arguments: the overlay as /, the host's /etc/hosts over the tree's.
    Unless `own_root_home` (the apt step, as root), the tree's /root (0700) is replaced by
    an empty 0755 tmpfs: paths bound below it (a cache or uv under the host's /root) must
    stay reachable by the sandbox's user, as on the host's view (`with_open_parents`)."""
    args = ["--bind", str(merged), "/"]
    if not own_root_home:
        args += ["--perms", "0755", "--tmpfs", "/root"]
    if Path("/etc/hosts").exists():
        args += ["--ro-bind", "/etc/hosts", "/etc/hosts"]
    return args


def root_step_command(tools: sandbox.Tools, layers: Layers, run_dir: Path,
                      command: list[str]) -> list[str]:
    """`command` as root over the environment's writable layer, with outbound network, in
    its own pid, ipc, uts and network namespaces, with only `APT_CAPS`; it dies with its
    supervisor. What it sees of the host: the overlay, /etc/hosts and a resolv.conf."""
    prefix, merged = mount_prefix(layers, run_dir, writable=True)
    resolv = sandbox.identity_files(run_dir, 0, "/root")["resolv.conf"]
    caps = [arg for cap in APT_CAPS for arg in ("--cap-add", cap)]
    args = [*root_args(merged, own_root_home=True),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--proc", "/proc", "--dev", "/dev",
            # bwrap leaves a fresh /proc's sysctls writable, and uid 0 could write global
            # ones (kernel.core_pattern, kernel.modprobe: programs the host runs as root).
            "--ro-bind", "/proc/sys", "/proc/sys",
            "--perms", "1777", "--tmpfs", "/tmp", "--tmpfs", "/run",  # /tmp: apt's _apt too
            "--ro-bind", str(resolv), "/etc/resolv.conf",
            "--cap-drop", "ALL", *caps, "--chdir", "/", "--die-with-parent",
            "--setenv", "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--setenv", "HOME", "/root"]
    return [*prefix, *sandbox.launcher(tools), "--", tools.bwrap, *args, "--", *command]


def apt_command(tools: sandbox.Tools, layers: Layers, run_dir: Path,
                packages: list[str]) -> list[str]:
    """apt-get install of `packages` (names already validated) into the environment's
    layer (`root_step_command`)."""
    return root_step_command(tools, layers, run_dir,
                             ["/bin/sh", "-c", APT_SCRIPT, "sh", *packages])
