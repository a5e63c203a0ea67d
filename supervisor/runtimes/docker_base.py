"""Base images of the Docker runtime: one per Python version, made on this host on first use.

There is no container registry to pull from. A Debian release's own python3 gives 3.9
(bullseye), 3.11 (bookworm) and 3.13 (trixie): `scripts/build-base-image.sh` debootstraps the
suite and imports it. The versions no Debian release ships (3.10, 3.12, 3.14) come from a
CPython installed on this host (pyenv's, found by `supervisor.runtimes.pythons`):
`scripts/build-host-python-image.sh` copies its prefix into the Debian base image of the
host's own release (the one it was built on, so its libc matches). Either way the image is
built once, under a lock per image, and named `<repo>:py<version>` (`stcloud-base` unless
told otherwise); `docker_base_images` can name any image for a version instead.

The host-interpreter build's output names host paths, so it goes to the supervisor's log;
the build log a deployer reads says only which Python version it is and that it happens once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from backend.platform.host_paths import sanitize
from backend.platform.settings import PROJECT_ROOT, Settings
from backend.repositories.files import excerpt
from supervisor.runtimes import pythons
from supervisor.runtimes.base import BuildError, LogSink

log = logging.getLogger("supervisor.runtimes.docker")

# Python version -> Debian suite whose python3 it is.
DEBIAN_SUITES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
BASE_SCRIPT = PROJECT_ROOT / "scripts" / "build-base-image.sh"
HOST_PYTHON_SCRIPT = PROJECT_ROOT / "scripts" / "build-host-python-image.sh"
BASE_REPO = "stcloud-base"
TAIL_LINES = 25
OS_RELEASE = Path("/etc/os-release")


def python_minor(version: str) -> str:
    """'3.11.4' -> '3.11'; '' stays ''."""
    return ".".join(version.strip().split(".")[:2])


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def base_image_overrides(settings: Settings) -> dict[str, str]:
    out = {}
    for item in settings.docker_base_images.split(","):
        if "=" in item:
            version, image = item.split("=", 1)
            out[python_minor(version)] = image.strip()
    return out


def host_release(os_release: Path = OS_RELEASE) -> str:
    """The Debian codename this host runs ('bookworm'), '' when it says none."""
    try:
        text = os_release.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def host_suite_version() -> str | None:
    """The Python version whose Debian base image is of the host's release (3.11 on
    bookworm): host interpreters, built on this release, run on that image only."""
    release = host_release()
    return next((v for v, suite in DEBIAN_SUITES.items() if suite == release), None)


@functools.lru_cache(maxsize=8)
def host_pythons(search_paths: str) -> dict[str, pythons.Interpreter]:
    """Host interpreters of the versions no Debian release ships, newest patch per minor
    version; none when the host is not a Debian release we have a base image of. Found
    once per process (probing runs every candidate)."""
    if host_suite_version() is None:
        return {}
    minors = [m for m in pythons.MINORS if m not in DEBIAN_SUITES]
    ours = Path(sys.executable).parent / "uv"
    uv = str(ours if ours.exists() else shutil.which("uv") or ours)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root"), "UV_PYTHON_DOWNLOADS": "never"}
    return pythons.discover(uv, env, search_paths, minors)


def offered_versions(settings: Settings, host_minors: Iterable[str] | None = None) -> list[str]:
    """The Python versions an environment may ask for: Debian's, the configured images' and
    those a host interpreter provides (`host_minors`; discovered on this host when None)."""
    if host_minors is None:
        host_minors = host_pythons(settings.python_search_paths)
    versions = set(DEBIAN_SUITES) | set(base_image_overrides(settings)) | set(host_minors)
    return sorted(versions, key=_version_key)


class BaseImages:
    """Finds or builds the base image of a Python version; `image_exists` asks the daemon."""

    def __init__(self, settings: Settings, image_exists: Callable[[str], Awaitable[bool]],
                 repo: str = BASE_REPO) -> None:
        self.settings = settings
        self._exists = image_exists
        self.repo = repo  # the name of the images built here: <repo>:py<version>
        self._locks: dict[str, asyncio.Lock] = {}

    async def image(self, version: str, build_log: LogSink) -> str:
        """The base image for a Python version, built on first use."""
        overrides = base_image_overrides(self.settings)
        if version in overrides:
            image = overrides[version]
            if not await self._exists(image):
                raise BuildError(f"The base image {image} configured for Python {version} "
                                 f"(setting docker_base_images) is not on this Docker host.")
            return image
        if version in DEBIAN_SUITES:
            return await self._debian(version, build_log)
        interp = (await asyncio.to_thread(host_pythons, self.settings.python_search_paths)
                  ).get(version)
        if interp is None:
            raise BuildError(f"Python {excerpt(version)} is not offered; choose one of "
                             f"{', '.join(offered_versions(self.settings))}.")
        return await self._from_host(version, interp, build_log)

    async def _debian(self, version: str, build_log: LogSink) -> str:
        image = f"{self.repo}:py{version}"
        async with self._locks.setdefault(image, asyncio.Lock()):
            if await self._exists(image):
                return image
            if not shutil.which("debootstrap"):
                raise BuildError(f"The base image {image} is missing and debootstrap is not "
                                 "installed to build it (run scripts/ci-docker.sh).")
            build_log(f"==> Building the base image {image} (Debian {DEBIAN_SUITES[version]}); "
                      "this happens once per Python version")
            code, tail = await _run_script([str(BASE_SCRIPT), DEBIAN_SUITES[version], image],
                                           build_log)
            if code != 0:
                raise BuildError(f"Building the base image {image} failed:\n" + "\n".join(tail))
            return image

    async def _from_host(self, version: str, interp: pythons.Interpreter,
                         build_log: LogSink) -> str:
        image = f"{self.repo}:py{version}"
        async with self._locks.setdefault(image, asyncio.Lock()):
            if await self._exists(image):
                return image
            suite_version = host_suite_version()
            assert suite_version is not None  # host_pythons finds none otherwise
            debian = await self.image(suite_version, build_log)
            build_log(f"==> Building the base image {image} from this server's CPython "
                      f"{interp.version} on Debian {DEBIAN_SUITES[suite_version]}; this "
                      "happens once per Python version")
            log.info("docker base image build image=%s python=%s interpreter=%s base=%s",
                     image, interp.version, interp.path, debian)
            code, tail = await _run_script([str(HOST_PYTHON_SCRIPT), interp.path, debian, image],
                                           lambda line: log.info("docker base image %s: %s",
                                                                 image, line))
            if code != 0:
                detail = sanitize(self.settings, "\n".join(tail))
                raise BuildError(f"Building the base image {image} from this server's Python "
                                 f"{interp.version} failed:\n{detail}")
            log.info("docker base image built image=%s", image)
            return image


async def _run_script(args: list[str], line_sink: LogSink) -> tuple[int, list[str]]:
    """Run a bash script, passing each output line to `line_sink`; (exit code, last lines).
    Cancelling kills the script."""
    proc = await asyncio.create_subprocess_exec(
        "bash", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            tail = (tail + [line])[-TAIL_LINES:]
            line_sink(line)
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, tail
