"""Docker client helpers both Docker engines (docker.py, swarm.py) use, and what the two
engines share (`DockerEngine`: the client, the installation's id, the env images, the
app log's size cap, instance names).

The blocking Docker SDK runs in worker threads through one object (`DockerAPI.call`), with
the client passed in (tests substitute it) or made on first use. Errors are idempotent as
in dockerspawner: 404 on stop/remove means done, 409 "removal already in progress" is fine,
and a 409 on create (the old instance of that name is still being removed) is retried by
`Runtime.start` (`create_failure` makes it a TryAgain). Also here: why a container is not
running (`exit_report`), the app network of the Docker runtime (`ensure_bridge_network`,
safe when several supervisors create it at once) and `docker stats` as Usage.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors

from backend.apps.log_files import app_log_path
from backend.platform.settings import Settings
from supervisor.runtimes import docker_spec
from supervisor.runtimes.base import AppSpec, EnvRef, EnvSpec, LogSink, StartError, TryAgain, Usage
from supervisor.runtimes.docker_base import offered_versions
from supervisor.runtimes.docker_images import ImageBuilder
from supervisor.runtimes.logpipe import copytruncate

log = logging.getLogger("supervisor.runtimes.docker")
STOP_TIMEOUT = 5  # seconds an instance has to end on SIGTERM
# What tini prints when the image has no /bin/sh to run the app's command line with.
NO_SHELL = re.compile(r"exec sh failed: No such file or directory")


class DockerAPI:
    """One Docker client (`client`, made on first use unless given) and its calls."""

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        self._own_client = client is None

    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env(timeout=120)
        return self._client

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one blocking Docker SDK call in a worker thread."""
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def remove(self, container: Any) -> None:
        """Remove a container by force; gone already, or being removed, is done."""
        try:
            await self.call(container.remove, force=True)
        except docker.errors.APIError as exc:
            if not gone_or_going(exc):
                raise

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None


class DockerEngine:
    """The part both Docker engines share; each is a `DockerEngine` and a `Runtime`."""

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None, *,
                 api: DockerAPI | None = None) -> None:
        self.settings = settings
        self.api = api or DockerAPI(client)
        self.install_id = docker_spec.install_id(settings)
        self.images = ImageBuilder(settings, self.api, self.install_id)
        self._cpu_samples: dict[str, tuple[int, int]] = {}  # usage's previous CPU figures
        self._network_lock = asyncio.Lock()  # concurrent starts in this process: one creates

    def instance_name(self, app: AppSpec, token: str) -> str:
        """The container's (or service's) name of an instance of `app`."""
        return docker_spec.container_name(self.install_id, app.name, app.app_id, token)

    def python_versions(self) -> list[str]:
        return offered_versions(self.settings)

    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef:
        """The env image of `spec` (`docker_images.ImageBuilder`)."""
        return await self.images.ensure_env(spec, log)

    async def existing_env(self, spec: EnvSpec) -> EnvRef | None:
        return await self.images.existing_env(spec)

    async def maintain(self, app_id: int, state: dict[str, Any]) -> None:
        """Rotate the app's log file once it passes `app_log_max_bytes`, truncating in
        place: the container keeps appending to the same file (a renamed-away file would
        keep receiving its output)."""
        await asyncio.to_thread(copytruncate, str(app_log_path(self.settings, app_id)),
                                self.settings.app_log_max_bytes, self.settings.app_log_backups)

    async def close(self) -> None:
        self.api.close()


def gone_or_going(exc: docker.errors.APIError) -> bool:
    """404 (no such object) or 409 (its removal is already in progress)."""
    return isinstance(exc, docker.errors.NotFound) or exc.status_code == 409


def create_failure(exc: docker.errors.APIError, what: str) -> Exception:
    """The error to raise for a failed create of `what` ("container", "service"): TryAgain
    on 409 (an old one of that name is still being removed), else StartError."""
    message = f"Docker could not create the {what}: {exc.explanation or exc}"
    return TryAgain(message) if exc.status_code == 409 else StartError(message)


def exit_report(container: Any, app_output: str, lines: int = 20) -> str:
    """Blocking. Why `container` is not running: its state, its own output to Docker (what
    bypassed the app log: tini, sh) and `app_output`, what the app log gained since this
    container started, all bounded; never the older lines of the app log, which belong to
    the instance serving alongside."""
    try:
        container.reload()
        state = container.attrs.get("State") or {}
        output = container.logs(tail=lines).decode(errors="replace").strip()
    except docker.errors.APIError as exc:
        return f"Docker could not inspect it ({exc.explanation or exc})"
    status = state.get("Status", "unknown")
    summary = f"status={status} exit_code={state.get('ExitCode')}"
    if state.get("OOMKilled"):
        summary += " (out of memory)"
    if state.get("Error"):
        summary += f" error={str(state['Error'])[:500]}"
    if status == "running":
        summary += " (running, but Docker published no port for it)"
    shown = "\n".join(part for part in (output, app_output) if part)
    shown = "\n".join(shown.splitlines()[-lines:])[-4000:]
    return f"{summary}\n{shown}" if shown else f"{summary} (no output)"


def broken_image_advice(report: str, image: str) -> str:
    """What to do when `exit_report` shows the image cannot run the app's command line at
    all (no /bin/sh: tini exits 127), "" otherwise."""
    if " exit_code=127" not in report.splitlines()[0] or not NO_SHELL.search(report):
        return ""
    return (f"The environment image {image} is broken: it has no /bin/sh to run the app "
            "with. Reboot the app to rebuild its environment.")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def appended(path: Path, offset: int, limit: int = 64 * 1024) -> str:
    """What `path` gained past `offset` (all of it if it was rotated meanwhile), at most the
    last `limit` bytes."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = offset if size >= offset else 0
            f.seek(max(start, size - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _created_order(net: dict[str, Any]) -> tuple[datetime, int, str]:
    """Sort key of a network: creation time (Docker's RFC 3339 with up to 9 fraction
    digits, trailing zeros cut), then id."""
    created = str(net.get("Created", ""))
    match = re.match(r"(.+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", created)
    if not match:
        return (datetime.max.replace(tzinfo=UTC), 0, str(net.get("Id", "")))
    base, fraction, zone = match.groups()
    when = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return (when, int((fraction or "0").ljust(9, "0")[:9]), str(net.get("Id", "")))


def settle_network(client: docker.DockerClient, name: str) -> str | None:
    """Blocking. The id of the network named exactly `name`; of several (concurrent
    creations), the oldest is kept, as every supervisor decides alike, and the others are
    removed unless containers use them (the daemon refuses those: they stay, and their
    containers keep working, since everyone refers to networks by id)."""
    found = sorted((n for n in client.api.networks(names=[name]) if n.get("Name") == name),
                   key=_created_order)
    if not found:
        return None
    for extra in found[1:]:
        try:
            client.api.remove_network(extra["Id"])
            log.info("network=%s removed duplicate id=%s", name, extra["Id"][:12])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # containers attached to it
            log.warning("network=%s duplicate id=%s kept: %s", name, extra["Id"][:12],
                        exc.explanation or exc)
    return str(found[0]["Id"])


def ensure_bridge_network(client: docker.DockerClient, name: str) -> str:
    """Blocking. The id of the app network `name`, created when missing as a bridge with
    inter-container traffic off; safe when several supervisors do it at the same moment."""
    existing = settle_network(client, name)
    if existing:
        return existing
    try:
        client.api.create_network(name, driver="bridge", check_duplicate=True,
                                  labels={"stcloud.component": "network"},
                                  options={"com.docker.network.bridge.enable_icc": "false"})
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # created meanwhile by another supervisor
            raise
    created = settle_network(client, name)
    if created is None:
        raise StartError(f"The Docker network {name} (setting docker_network) vanished "
                         "right after it was created; start the app again.")
    return created


def usage_from_stats(stats: dict[str, Any], samples: dict[str, tuple[int, int]],
                     key: str) -> Usage | None:
    """Usage from one `docker stats` answer. Memory is usage minus inactive file cache, as
    `docker stats` shows it; CPU % is measured since the previous sample kept in
    `samples[key]` (the first uses Docker's own 1 s sample)."""
    mem = stats.get("memory_stats") or {}
    if "usage" not in mem:
        return None
    detail = mem.get("stats") or {}
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    memory = max(int(mem["usage"]) - int(cache), 0)
    cpu = stats.get("cpu_stats") or {}
    total = int((cpu.get("cpu_usage") or {}).get("total_usage", 0))
    system = int(cpu.get("system_cpu_usage") or 0)
    cpus = int(cpu.get("online_cpus") or 1)
    previous = samples.get(key)
    if previous is None:  # first look: Docker's own 1 s sample (precpu_stats)
        pre = stats.get("precpu_stats") or {}
        previous = (int((pre.get("cpu_usage") or {}).get("total_usage", 0)),
                    int(pre.get("system_cpu_usage") or 0))
    percent = 0.0
    if previous[1] and system > previous[1]:
        percent = (total - previous[0]) / (system - previous[1]) * cpus * 100.0
    samples[key] = (total, system)
    return Usage(memory_bytes=memory, cpu_percent=max(percent, 0.0))
