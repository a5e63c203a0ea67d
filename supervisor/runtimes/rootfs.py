"""The process runtime's Debian root filesystems, for apps whose repository has packages.txt.

They are the trees the Docker base images are made from (`scripts/build-base-image.sh
--tree`: debootstrap --variant=minbase of the suite whose python3 is the Python asked for,
see `docker_base.DEBIAN_SUITES`), kept as directories `<process_rootfs_dir>/<suite>` and
built once, the first time an environment needs one, when debootstrap is installed. A tree
is never written to after it is built: each environment with Debian packages gets its own
overlay over it (`sandbox_rootfs.py`), so apt in one build cannot change another's root.

`support()` says which Python versions such an app can use on this server, or why none
(what the operator must install or enable); the supervisor reports it with its platform
info, so a deploy is refused up front rather than built into a broken app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from backend.platform.settings import Settings
from supervisor.runtimes import sandbox
from supervisor.runtimes.base import BuildError, LogSink
from supervisor.runtimes.docker_base import BASE_SCRIPT, DEBIAN_SUITES

log = logging.getLogger("supervisor.runtimes.process")
TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_IN_TREE = "/usr/bin/python3"
DEBOOTSTRAP_HINT = ("install debootstrap on this server (`apt install debootstrap`, as "
                    "root), or use the Docker runtime")

NO_DEBOOTSTRAP = ("debootstrap is not installed, so no Debian root filesystem can be made: "
                  "an operator must install it (`apt install debootstrap`, as root)")

STALE_BUILD_AGE = 3600.0  # a debootstrap takes minutes: an older half-built tree was abandoned

Run = Callable[[list[str], LogSink], Awaitable[None]]


def suite_for(version: str) -> str:
    """The Debian suite whose python3 is `version` (3.11 or 3.11.4), "" when none is."""
    return DEBIAN_SUITES.get(".".join(version.split(".")[:2]), "")


def debootstrap_available() -> bool:
    return shutil.which("debootstrap", path=TOOL_PATH + ":" + os.environ.get("PATH", "")) \
        is not None


def tree_path(settings: Settings, suite: str) -> Path:
    return settings.rootfs_path / suite


def is_complete(tree: Path) -> bool:
    """A tree the build script finished (it renames the tree into place when complete)."""
    return (tree / PYTHON_IN_TREE.lstrip("/")).exists() and (tree / "etc/apt").is_dir()


def mounted_below(path: Path) -> bool:
    """Is anything mounted at or below `path` (a killed debootstrap leaves its /proc)?"""
    prefix = str(path.resolve())
    try:
        with open("/proc/self/mountinfo") as fh:
            points = [line.split()[4] for line in fh]
    except OSError:
        return True  # cannot tell: keep it
    return any(p == prefix or p.startswith(prefix + "/") for p in points)


def remove_stale_builds(settings: Settings, suite: str, now: float | None = None) -> list[Path]:
    """Remove half-built trees of `suite` (the build script's `.<suite>.building.*`
    directories) left by a build killed more than STALE_BUILD_AGE ago; one with something
    still mounted in it is left (and logged) for the operator. Returns those removed."""
    now = time.time() if now is None else now
    removed = []
    for path in settings.rootfs_path.glob(f".{suite}.building.*"):
        try:
            if now - path.stat().st_mtime < STALE_BUILD_AGE:
                continue
        except FileNotFoundError:
            continue
        if mounted_below(path):
            log.warning("rootfs half-built tree has mounts; not removed path=%s", path)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed half-built rootfs trees suite=%s count=%d", suite, len(removed))
    return removed


def support(settings: Settings, isolation: str) -> tuple[list[str], str]:
    """The Python versions an app with packages.txt can use on this server, and "" — or no
    versions and why not, saying what the operator must do."""
    if isolation != sandbox.BUBBLEWRAP:
        return [], ("Debian packages are installed only inside the process runtime's sandbox, "
                    "which is off or unavailable on this server: an operator must enable it "
                    "(process_sandbox, with bubblewrap and slirp4netns installed)")
    if not sandbox.running_as_root():
        return [], ("installing Debian packages needs the supervisor to run as root (each "
                    "environment's root filesystem is an overlay it mounts): an operator must "
                    "run it as root")
    missing = [tool for tool in ("unshare", "mount")
               if shutil.which(tool, path=TOOL_PATH) is None]
    if missing:
        return [], (f"{' and '.join(missing)} not found: an operator must install them "
                    "(`apt install util-linux mount`)")
    if debootstrap_available():
        return list(DEBIAN_SUITES), ""
    present = [v for v, suite in DEBIAN_SUITES.items()
               if is_complete(tree_path(settings, suite))]
    if present:
        return present, ""
    return [], NO_DEBOOTSTRAP


class RootFilesystems:
    """The trees of one runtime: `ensure` builds a missing one once (one build per suite at
    a time; a second supervisor building the same suite finishes or fails on its own, and
    the tree it left counts)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, suite: str, log_line: LogSink, run: Run) -> Path:
        """The tree of `suite`, built with the build script (through `run`, which streams
        its output to the build log) when it is not there yet."""
        tree = tree_path(self.settings, suite)
        async with self._locks.setdefault(suite, asyncio.Lock()):
            await asyncio.to_thread(remove_stale_builds, self.settings, suite)
            if is_complete(tree):
                return tree
            if not debootstrap_available():
                raise BuildError(f"This app's packages.txt needs a Debian {suite} root "
                                 f"filesystem, which this server does not have and cannot "
                                 f"make: an operator must {DEBOOTSTRAP_HINT}.")
            log_line(f"==> Building the Debian {suite} root filesystem for the process "
                     "runtime (once; debootstrap takes a few minutes).")
            started = time.monotonic()
            try:
                await run(["bash", str(BASE_SCRIPT), "--tree", suite, str(tree)], log_line)
            except BuildError:
                if not is_complete(tree):  # not another builder's tree finished meanwhile
                    raise
            seconds = time.monotonic() - started
            log.info("rootfs built suite=%s path=%s seconds=%.1f", suite, tree, seconds)
            log_line(f"The Debian {suite} root filesystem was built in {seconds:.0f} s.")
            return tree
