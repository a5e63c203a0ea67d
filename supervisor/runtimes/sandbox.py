"""The process runtime's sandbox: each app instance and each environment build step runs in
bubblewrap (`bwrap`) namespaces as an unprivileged user, seeing only what it needs.

What a sandboxed process sees:
- read-only: /usr (and the /bin, /lib… links or directories), a few files of /etc (hosts,
  nsswitch.conf, TLS certificates, localtime, ld.so.cache, …; passwd/group, resolv.conf and
  machine-id are generated: only root and the sandbox's own user, DNS through the network
  relay, a machine id of the sandbox's own), the
  Python interpreter's prefix at its own path (e.g. /root/.pyenv/versions/3.11.7; bwrap
  makes the parents 0755 inside, so a 0700 /root on the host does not matter), the
  environment (venv) at its own path, and for an app its checkout at /run/checkout and its
  runtime secrets at /run/secrets/secrets.toml (copied by bwrap from a memory file, so no copy
  lies on the host's disk; Streamlit is pointed at that file);
- writable: a private HOME (/home/app, kept on the host in the app's directory), a private
  /tmp (tmpfs, counted in the memory limit), for an app its working directory /app (a
  tmpfs of `app_workdir_size_mb` started as a copy of the checkout, `workdir.py`), and
  for a build the environment being built and the package cache;
- its own mount, pid, ipc, uts, cgroup and network namespaces: /proc lists only its own
  processes, and the network is slirp4netns (`sandbox_launch.py`): outbound internet, no
  host loopback, one forwarded port for an app.
Nothing else of the data directory exists inside: no keys, database, other apps, logs
(an app's output goes out through a pipe to logpipe.py on the host side). For an
environment with Debian packages (packages.txt) the system part is a Debian root
filesystem with the environment's own layer, mounted as / and remounted read-only
(`sandbox_rootfs.py`), instead of the host's /usr and /etc files.

Users: a supervisor running as root starts bwrap as root *without* a user namespace (a
user namespace made by root would still reach files with root's rights) and the sandbox
drops to a per-app uid and gid (`SANDBOX_UID_BASE + app_id`; builds use `BUILDER_UID`),
with no supplementary groups, no capabilities and no_new_privs, through `setpriv` from
util-linux. A supervisor that is not root runs bwrap with a user namespace as its own
user: the sandbox can reach only what is bound into it. `prlimit` caps the user's
processes (RLIMIT_NPROC) as a second line behind the pids cgroup.

`probe()` tells whether this host can sandbox (bwrap, slirp4netns, setpriv and namespaces);
`choose_isolation` turns the `process_sandbox` setting and the probe into the runtime's
isolation mode.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.runtimes import workdir

log = logging.getLogger("supervisor.runtimes.sandbox")
LAUNCHER = Path(__file__).resolve().parent / "sandbox_launch.py"
SANDBOX_UID_BASE = 1_800_000_000  # per-app uid/gid = base + app id; no passwd entry needed
BUILDER_UID = SANDBOX_UID_BASE
APP_DIR = workdir.APP_DIR
APP_HOME = "/home/app"
SECRETS_IN_SANDBOX = "/run/secrets/secrets.toml"
APP_PORT = 8501  # inside the sandbox's own network namespace
# slirp4netns's address for the sandbox (what its port forward connects to). Streamlit binds
# it rather than 0.0.0.0, which would have it look up "network URLs" at every start.
GUEST_ADDRESS = "10.0.2.100"
DNS_RELAY = "10.0.2.3"  # slirp4netns's resolver relay
ETC_FILES = ("hosts", "host.conf", "nsswitch.conf", "gai.conf", "localtime", "ld.so.cache",
             "mime.types", "protocols", "services", "ssl", "ca-certificates", "alternatives",
             "fonts", "os-release", "debian_version")
TOP_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
INSTALL_HINT = ("install them with `apt-get install bubblewrap slirp4netns` (as root), or set "
                "process_sandbox = \"off\" to run apps unsandboxed on a single-tenant machine")

BUBBLEWRAP = "bubblewrap"
SINGLE_TENANT = "single-tenant"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Tools:
    bwrap: str
    slirp4netns: str
    setpriv: str
    prlimit: str


@dataclass(frozen=True)
class Probe:
    """Whether this host can sandbox; `problem` says what is missing and what to do."""

    tools: Tools | None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.tools is not None and not self.problem


def running_as_root() -> bool:
    return os.geteuid() == 0


def find_tools() -> tuple[Tools | None, list[str]]:
    found = {name: shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin:"
                                + os.environ.get("PATH", ""))
             for name in ("bwrap", "slirp4netns", "setpriv", "prlimit")}
    missing = [name for name, path in found.items() if not path]
    if missing:
        return None, missing
    return Tools(**{k: str(v) for k, v in found.items()}), []


def probe() -> Probe:
    """Run a minimal sandbox once (namespaces, uid drop) to see that this host allows it."""
    tools, missing = find_tools()
    if tools is None:
        packages = {"bwrap": "bubblewrap", "slirp4netns": "slirp4netns",
                    "setpriv": "util-linux", "prlimit": "util-linux"}
        names = " ".join(sorted({packages[m] for m in missing}))
        hint = INSTALL_HINT.replace("bubblewrap slirp4netns", names)
        return Probe(None, f"{', '.join(missing)} not found: {hint}")
    command = [tools.bwrap, *namespace_args(), *system_view(), "--",
               *user_switch(tools, BUILDER_UID), "/bin/true"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe(None, f"bwrap could not run ({exc}); {INSTALL_HINT}")
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return Probe(None, f"bwrap cannot create the sandbox's namespaces here ({why}): run "
                     "the supervisor as root, or allow unprivileged user namespaces "
                     "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces "
                     "> 0); or set process_sandbox = \"off\" on a single-tenant machine")
    return Probe(tools)


def choose_isolation(setting: str, found: Probe) -> str:
    """bubblewrap, single-tenant (the operator chose `off`) or unavailable (sandboxing was
    asked for, or `auto`, and this host cannot: apps are refused)."""
    if setting == "off":
        return SINGLE_TENANT
    if setting not in ("auto", BUBBLEWRAP):
        log.warning("process_sandbox=%r is not auto, bubblewrap or off; treating it as auto",
                    setting)
    return BUBBLEWRAP if found.ok else UNAVAILABLE


def app_uid(app_id: int) -> int:
    return SANDBOX_UID_BASE + int(app_id)


def namespace_args() -> list[str]:
    userns = [] if running_as_root() else ["--unshare-user"]
    return [*userns, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm",
            "--tmpfs", "/tmp",
            "--tmpfs", "/run", "--dir", "/etc"]


def _as_on_host(path: Path, present: Callable[[Path], bool]) -> list[str]:
    """bwrap arguments that show the host's `path` inside as it is: a symlink as the same
    link, else a read-only bind when `present(path)`, else nothing."""
    if path.is_symlink():
        return ["--symlink", os.readlink(path), str(path)]
    return ["--ro-bind", str(path), str(path)] if present(path) else []


def system_view() -> list[str]:
    """Read-only binds of the system's programs and libraries."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in TOP_DIRS:
        args += _as_on_host(Path("/") / name, Path.is_dir)
    for name in ETC_FILES:
        args += _as_on_host(Path("/etc") / name, Path.exists)
    return args


def user_switch(tools: Tools, uid: int, max_procs: int = 0) -> list[str]:
    """The command prefix, run inside the sandbox, that drops to `uid` (as root) and caps
    its processes."""
    limit = [tools.prlimit, f"--nproc={max_procs}:{max_procs}", "--"] if max_procs > 0 else []
    if not running_as_root():
        return limit
    return [*limit, tools.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]


def privileged_args() -> list[str]:
    """bwrap as root drops every capability; setpriv needs these two to change user."""
    return ["--cap-add", "CAP_SETUID,CAP_SETGID"] if running_as_root() else []


def interpreter_prefix(venv: Path) -> Path | None:
    """The prefix of the interpreter a venv was made from (`home` of pyvenv.cfg, minus bin)."""
    try:
        for line in (venv / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip()).parent
    except OSError:
        return None
    return None


def python_prefix_of(interpreter: str) -> Path:
    """The prefix of an interpreter binary (…/bin/python3.11 -> …)."""
    return Path(interpreter).resolve().parent.parent


def prefix_binds(prefix: Path | None) -> list[str]:
    """A read-only bind of the interpreter's prefix at its own path, unless /usr has it."""
    if prefix is None or str(prefix).startswith(("/usr/", "/bin", "/lib")) \
            or str(prefix) == "/usr":
        return []
    return ["--ro-bind", str(prefix), str(prefix)]


# Generated files -------------------------------------------------------------------------
def write_private_file(path: Path, data: bytes, mode: int = 0o644,
                       base: Path | None = None) -> None:
    """Write `path` atomically, refusing symlinks: the temporary file is created with
    O_EXCL|O_NOFOLLOW and renamed over the target (a rename replaces a symlink itself,
    never what it points to); no directory between `base` (default: the file's parent)
    and the file may be a symlink either."""
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    refuse_symlinks_below(base or parent, path)
    tmp = parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def refuse_symlinks_below(base: Path, path: Path) -> None:
    """Raise OSError if a component of `path` below `base` is a symbolic link."""
    try:
        rest = path.relative_to(base).parts
    except ValueError:
        rest = path.parts[1:]
        base = Path(path.anchor)
    current = base
    for part in rest[:-1]:
        current = current / part
        if current.is_symlink():
            raise OSError(f"refusing to write under a symbolic link: {current}")


def identity_files(run_dir: Path, uid: int, home: str) -> dict[str, Path]:
    """passwd, group, resolv.conf and machine-id for a sandbox of `uid` (generated once per
    uid). The machine id is the sandbox's own, never the host's: programs expect one (Streamlit
    before 1.x runs `sudo dbus-uuidgen` without it, which fails and ends its script thread)."""
    folder = run_dir / "sandbox" / f"uid-{uid}"
    machine_id = hashlib.sha256(f"stcloud-sandbox:{run_dir}:{uid}".encode()).hexdigest()[:32]
    files = {"passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                       f"app:x:{uid}:{uid}:app:{home}:/bin/sh\n",
             "group": f"root:x:0:\napp:x:{uid}:\n",
             "resolv.conf": f"nameserver {DNS_RELAY}\n",
             "machine-id": f"{machine_id}\n"}
    out = {}
    for name, text in files.items():
        path = folder / name
        try:
            current = path.read_text() if not path.is_symlink() else None
        except OSError:
            current = None
        if current != text:
            write_private_file(path, text.encode(), base=run_dir)
        out[name] = path
    return out


def identity_binds(files: dict[str, Path]) -> list[str]:
    return [arg for name, path in files.items()
            for arg in ("--ro-bind", str(path), f"/etc/{name}")]


def owned_dir(path: Path, uid: int) -> None:
    """Make `path` a directory (not a symlink) owned by `uid`, mode 0700; what it holds
    from before (e.g. an unsandboxed run's HOME) is handed over too."""
    path.mkdir(parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{path} is not a directory")
    if running_as_root() and (st.st_uid != uid or st.st_gid != uid):
        chown_tree(path, uid)
    os.chmod(path, 0o700)


def chown_tree(path: Path, uid: int) -> None:
    """chown -R without following symlinks (for a build directory and its cache)."""
    if not running_as_root():
        return
    os.chown(path, uid, uid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


# Commands --------------------------------------------------------------------------------
def with_open_parents(args: list[str]) -> list[str]:
    """Insert `--dir` for each missing parent of a bind's destination. bwrap would make
    them with the host parents' modes (a 0700 /root would hide a bound interpreter or
    cache from the sandbox's user); `--dir` makes them 0755."""
    out: list[str] = []
    made = {"/", "/tmp", "/run", "/etc"}
    read_only = ("/usr/", "/proc/", "/dev/")
    i = 0
    while i < len(args):
        arg = args[i]
        width = {"--ro-bind": 3, "--bind": 3, "--symlink": 3, "--ro-bind-try": 3}.get(arg)
        if width:
            dest = Path(args[i + 2])
            for parent in reversed(dest.parents):
                text = str(parent)
                if text not in made and not (text + "/").startswith(read_only):
                    out += ["--dir", text]
                    made.add(text)
            out += args[i:i + width]
            i += width
            continue
        out.append(arg)
        i += 1
    return out


def launcher(tools: Tools) -> list[str]:
    """The network launcher's command (`sandbox_launch.py`), before its port and `--`."""
    return [sys.executable, "-I", "-S", str(LAUNCHER), tools.slirp4netns]
