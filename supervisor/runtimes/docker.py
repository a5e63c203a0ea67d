"""DockerRuntime: the production engine. One container per app, one image per dependency set.

Images are made by `docker_images.ImageBuilder` (base images without a registry, env images
`stcloud-env:<dep_hash>`). This module runs app containers, following dockerspawner:
`start()` is a template (find → remove → create → start → read address), the blocking
Docker SDK runs in threads through one helper (`_call`), and 404 on stop/remove means done.

Names and labels. A container is `stcloud-<install>-<app name>-<app id>`, where `<install>`
is a short hash of `settings.data_dir`: two installations on one daemon (parallel test runs)
never see each other's containers. Labels `stcloud.install`, `stcloud.component=app`,
`stcloud.app_id`, `stcloud.generation` are what `list()` adopts by; `Instance.state` is
`{"container_id", "name", "port"}`, and the id is tried first, so renaming never orphans.
A second instance of an app started with `AppSpec.alongside` (zero-downtime redeploy) is
`…-<app id>-<token>`, labelled `stcloud.instance=<token>`, with `"instance": token` in its
state; finding a container by labels only ever matches the same instance token, so
stopping the old instance can never find and stop the new one.

Isolation. An app container gets its checkout read-only at /run/checkout and a writable
/app (a tmpfs of `app_workdir_size_mb` that `workdir.py` fills from it), its secrets read-only at
Streamlit's user-level secrets path (~/.streamlit/secrets.toml, HOME=/tmp), its log file and
the CA bundle, and no other host path; no Docker socket, no host environment, all
capabilities dropped, no-new-privileges, a read-only root filesystem with a tmpfs /tmp,
memory (no swap), CPU and pids limits, tini as PID 1, port 8501 published on 127.0.0.1 only,
and a network where containers cannot reach each other (`docker_network`).

Logs. The container's stdout/stderr are redirected by `sh -c 'exec … >>LOG 2>&1'` into the
app's log file, bind-mounted (that one file) into the container. Output reaches the file
whether or not a supervisor is running, with no follower task to restart on adoption and
no gap or duplicate across supervisor restarts. Log rotation must truncate in place
(copytruncate): a renamed-away file keeps receiving the output; `poll()` (every reconcile
pass) does it once the file passes `app_log_max_bytes` (runtimes/logpipe.py).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
from docker.types import Mount

from backend.logs import app_log_path
from backend.settings import Settings
from supervisor.runtimes import workdir
from supervisor.runtimes.base import (AppSpec, EnvRef, EnvSpec, Instance, LogSink, Runtime,
                                      StartError, Status, Usage)
from supervisor.runtimes.docker_images import ImageBuilder, offered_versions
from supervisor.runtimes.logpipe import copytruncate

log = logging.getLogger("supervisor.runtimes.docker")
T = TypeVar("T")
PORT = "8501/tcp"
LOG_IN_CONTAINER = "/run/stcloud/output.log"
SECRETS_IN_CONTAINER = "/tmp/.streamlit/secrets.toml"
STOP_TIMEOUT = 5


def install_id(settings: Settings) -> str:
    """Short hash of the data dir: the installation's namespace on a shared daemon."""
    return hashlib.sha256(str(Path(settings.data_dir).resolve()).encode()).hexdigest()[:8]


def dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "app"


def container_name(install: str, app_name: str, app_id: int, token: str = "") -> str:
    """`stcloud-<install>-<name>-<id>[-<token>]`, at most 63 characters (one DNS label)."""
    tail = f"{app_id}-{token}" if token else str(app_id)
    room = 63 - len(f"stcloud-{install}--{tail}")
    label = dns_label(app_name)[:max(room, 1)].strip("-") or "app"
    return f"stcloud-{install}-{label}-{tail}"


def streamlit_command(main_file: str) -> list[str]:
    # The venv's `streamlit` script rather than `python -m streamlit`: -m would put /app
    # first on sys.path, so a file of the app could shadow streamlit itself.
    return ["/opt/venv/bin/streamlit", "run", main_file, "--server.port", "8501",
            "--server.address", "0.0.0.0", "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.runOnSave", "true",
            "--server.fileWatcherType", "poll"]


def workdir_command(main_file: str) -> list[str]:
    """Streamlit run by workdir.py in the writable /app it fills from the checkout."""
    return ["/opt/venv/bin/python", workdir.SCRIPT_IN_INSTANCE, workdir.CHECKOUT_IN_INSTANCE,
            main_file, "--", *streamlit_command(main_file)]


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


class DockerRuntime(Runtime):
    name = "docker"

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self._client_obj = client
        self._own_client = client is None
        self.install_id = install_id(settings)
        self.images = ImageBuilder(settings, self._client, self._call, self.install_id)
        self._cpu_samples: dict[str, tuple[int, int]] = {}
        self._network_id: str | None = None  # of docker_network, once ensured
        self._network_lock = asyncio.Lock()

    def _client(self) -> docker.DockerClient:
        if self._client_obj is None:
            self._client_obj = docker.from_env(timeout=120)
        return self._client_obj

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one blocking Docker SDK call in a worker thread."""
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    def python_versions(self) -> list[str]:
        return offered_versions(self.settings)

    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef:
        return await self.images.ensure_env(spec, log)

    # Finding containers -------------------------------------------------------------
    def _labels(self, *extra: str) -> dict[str, list[str]]:
        return {"label": [f"stcloud.install={self.install_id}", "stcloud.component=app",
                          *extra]}

    async def _find(self, app_id: int, state: dict[str, Any]) -> Any | None:
        """The app's container: by the id in state, else by name, else by labels (of the
        same instance token: never the other instance of a zero-downtime redeploy)."""
        client = self._client()
        token = state.get("instance", "")
        for key in ("container_id", "name"):
            ref = state.get(key)
            if not ref:
                continue
            try:
                container = await self._call(client.containers.get, ref)
            except docker.errors.NotFound:
                continue
            labels = container.labels
            if (labels.get("stcloud.install"), labels.get("stcloud.component"),
                    labels.get("stcloud.app_id")) == (self.install_id, "app", str(app_id)):
                return container
        found = await self._call(client.containers.list, all=True, ignore_removed=True,
                                 filters=self._labels(f"stcloud.app_id={app_id}"))
        found = [c for c in found if c.labels.get("stcloud.instance", "") == token]
        return found[0] if found else None

    async def _remove(self, container: Any) -> None:
        try:
            await self._call(container.remove, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # removal already in progress
                raise

    async def _ensure_network(self) -> str | None:
        """The id of `docker_network`, created when missing; containers join it by id, so a
        duplicate another supervisor made at the same moment never makes names ambiguous."""
        name = self.settings.docker_network
        if not name:
            return None
        async with self._network_lock:  # concurrent starts in this process: one creates
            if self._network_id is None:
                self._network_id = await self._call(ensure_bridge_network, self._client(),
                                                    name)
            return self._network_id

    # Lifecycle ---------------------------------------------------------------------
    async def start(self, app: AppSpec, env: EnvRef) -> Instance:
        client = self._client()
        token = secrets.token_hex(3) if app.alongside else ""
        name = container_name(self.install_id, app.name, app.app_id, token)
        # get → remove: whatever this app runs now (by name or by labels) is replaced;
        # an instance started alongside leaves the current one running.
        old = [] if app.alongside else await self._call(
            client.containers.list, all=True, ignore_removed=True,
            filters=self._labels(f"stcloud.app_id={app.app_id}"))
        try:
            old.append(await self._call(client.containers.get, name))
        except docker.errors.NotFound:
            pass
        for container in old:
            await self._remove(container)
        # create
        kwargs = await self._create_args(app, env)
        if token:
            kwargs["labels"]["stcloud.instance"] = token
        for attempt in range(20):
            try:
                container = await self._call(client.containers.create, env.location,
                                             name=name, **kwargs)
                break
            except docker.errors.ImageNotFound:
                raise StartError(f"The environment image {env.location} is missing; "
                                 "rebuild the environment.") from None
            except docker.errors.NotFound as exc:
                if "network" not in str(exc).lower() or attempt == 19:
                    raise StartError(f"Docker could not create the container: "
                                     f"{exc.explanation or exc}") from None
                self._network_id = None  # removed as a duplicate: settle on the kept one
                kwargs["network"] = await self._ensure_network()
                continue
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and attempt < 19:  # old one still being removed
                    await asyncio.sleep(0.25)
                    continue
                raise StartError(f"Docker could not create the container: "
                                 f"{exc.explanation or exc}") from None
        # start → read address
        log_offset = _size(app.log_path)
        try:
            await self._call(container.start)
            await self._call(container.reload)
            port = int(container.attrs["NetworkSettings"]["Ports"][PORT][0]["HostPort"])
        except (docker.errors.APIError, KeyError, IndexError, TypeError) as exc:
            detail = getattr(exc, "explanation", None) or await self._call(
                _exit_report, container, _appended(app.log_path, log_offset))
            await self._remove(container)
            raise StartError(f"The app container did not start: {detail}") from None
        state = {"container_id": container.id, "name": name, "port": port}
        if token:
            state["instance"] = token
        return Instance(app.app_id, ("127.0.0.1", port), state, app.generation)

    async def _create_args(self, app: AppSpec, env: EnvRef) -> dict[str, Any]:
        settings = self.settings
        app.log_path.parent.mkdir(parents=True, exist_ok=True)
        app.log_path.touch(exist_ok=True)
        # The checkout read-only beside /app, a tmpfs that workdir.py fills from it.
        mounts = [Mount(workdir.CHECKOUT_IN_INSTANCE, str(app.checkout.resolve()),
                        type="bind", read_only=True),
                  Mount(workdir.SCRIPT_IN_INSTANCE, workdir.SCRIPT, type="bind",
                        read_only=True),
                  Mount(LOG_IN_CONTAINER, str(app.log_path.resolve()), type="bind")]
        environment = {**app.env_vars, "PYTHONUNBUFFERED": "1", "HOME": "/tmp",
                       "PYTHONDONTWRITEBYTECODE": "1"}
        if app.secrets_file is not None:
            secrets = str(Path(app.secrets_file).resolve())
            mounts.append(Mount(SECRETS_IN_CONTAINER, secrets, type="bind", read_only=True))
            repo_copy = app.checkout / ".streamlit" / "secrets.toml"
            if repo_copy.is_file() and not repo_copy.is_symlink():
                # A secrets file committed to the repo is hidden by the dashboard's one.
                mounts.append(Mount("/app/.streamlit/secrets.toml", secrets, type="bind",
                                    read_only=True))
        ca = settings.ca_bundle_path
        if ca is not None:
            mounts.append(Mount("/etc/ssl/certs/ca-certificates.crt", str(ca), type="bind",
                                read_only=True))
            environment.update(SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt",
                               REQUESTS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
        command = " ".join(_quote(w) for w in workdir_command(app.main_file))
        memory = f"{int(app.memory_limit_mb)}m"
        workdir_mb = max(1, int(settings.app_workdir_size_mb))
        kwargs: dict[str, Any] = dict(
            command=["sh", "-c", f"exec {command} >>{LOG_IN_CONTAINER} 2>&1"],
            working_dir="/app", environment=environment, mounts=mounts,
            labels={"stcloud.install": self.install_id, "stcloud.component": "app",
                    "stcloud.app_id": str(app.app_id), "stcloud.app": app.name,
                    "stcloud.generation": str(app.generation),
                    "stcloud.dep_hash": env.dep_hash},
            ports={PORT: ("127.0.0.1", None)},
            mem_limit=memory, memswap_limit=memory,
            read_only=True, tmpfs={
                "/tmp": f"rw,nosuid,nodev,size={int(app.memory_limit_mb)}m",
                workdir.APP_DIR: f"rw,exec,nosuid,nodev,size={workdir_mb}m,"
                                 f"mode={workdir.TMPFS_MODE:o}"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], privileged=False,
            init=True, restart_policy={"Name": "no"},
            log_config=_log_config(settings))
        if settings.docker_cpus > 0:
            kwargs["nano_cpus"] = int(settings.docker_cpus * 1e9)
        if settings.docker_pids_limit > 0:
            kwargs["pids_limit"] = settings.docker_pids_limit
        network = await self._ensure_network()
        if network:
            kwargs["network"] = network
        return kwargs

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        container = await self._find(app_id, state)
        if container is None:
            return
        try:
            await self._call(container.stop, timeout=STOP_TIMEOUT)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
        await self._remove(container)
        self._cpu_samples.pop(container.id, None)

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        container = await self._find(app_id, state)
        if container is None:
            return Status("missing")
        cstate = container.attrs.get("State", {})
        status = cstate.get("Status")
        if status in ("running", "restarting", "paused"):
            await asyncio.to_thread(copytruncate, str(app_log_path(self.settings, app_id)),
                                    self.settings.app_log_max_bytes,
                                    self.settings.app_log_backups)  # the log's size cap
            return Status("running")
        if status == "created":  # never started: nothing is running
            return Status("missing")
        code = int(cstate.get("ExitCode") or 0)
        # Only Docker's own OOM flag: exit 137 alone is any SIGKILL (`docker kill`, the
        # stop timeout), which is a crash, not a memory incident.
        if cstate.get("OOMKilled"):
            return Status("oom", code)
        return Status("exited", code)

    async def list(self) -> list[Instance]:
        found = await self._call(self._client().containers.list,
                                 filters={**self._labels(), "status": "running"},
                                 ignore_removed=True)
        out = []
        for container in found:
            ports = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
            try:
                port = int(ports[PORT][0]["HostPort"])
                app_id = int(container.labels["stcloud.app_id"])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            state = {"container_id": container.id, "name": container.name, "port": port}
            if container.labels.get("stcloud.instance"):
                state["instance"] = container.labels["stcloud.instance"]
            out.append(Instance(app_id, ("127.0.0.1", port), state,
                                int(container.labels.get("stcloud.generation", 0))))
        return out

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        container = await self._find(app_id, state)
        if container is None or container.status != "running":
            return None
        try:
            first = container.id not in self._cpu_samples
            stats = await self._call(container.stats, stream=False, one_shot=not first)
        except docker.errors.NotFound:
            return None
        return usage_from_stats(stats, self._cpu_samples, container.id)

    async def close(self) -> None:
        if self._own_client and self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None


def _created_order(net: dict[str, Any]) -> tuple[datetime, int, str]:
    """Sort key of a network: creation time (Docker's RFC 3339 with up to 9 fraction
    digits, trailing zeros cut), then id."""
    created = str(net.get("Created", ""))
    match = re.match(r"(.+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", created)
    if not match:
        return (datetime.max.replace(tzinfo=timezone.utc), 0, str(net.get("Id", "")))
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
    """Usage from one `docker stats` answer (also used by the swarm runtime). Memory is
    usage minus inactive file cache, as `docker stats` shows it; CPU % is measured since
    the previous sample kept in `samples[key]` (the first uses Docker's own 1 s sample)."""
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


def _log_config(settings: Settings) -> dict[str, Any]:
    """Docker's json-file driver capped like app.log (app_log_max_bytes, app_log_backups):
    it only holds what bypasses the redirect into the log file (tini, sh errors)."""
    size = settings.app_log_max_bytes or 1 << 20
    return {"Type": "json-file", "Config": {"max-size": str(size),
                                            "max-file": str(settings.app_log_backups + 1)}}


def _exit_report(container: Any, app_output: str, lines: int = 20) -> str:
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _appended(path: Path, offset: int, limit: int = 64 * 1024) -> str:
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


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"
