"""DockerRuntime: the production engine. One container per app, one image per dependency set.

Images are made by `docker_images.ImageBuilder` (base images without a registry, env images
`stcloud-env:<dep_hash>`). What a container is (its name, labels, mounts, limits, command)
is `docker_spec`'s; the Docker client helpers are `docker_api`'s. This module fills in the
steps of `Runtime.start` (find → remove → create → start → read address) and of
`Runtime.list` for containers. `Instance.state` is `{"container_id", "name", "port"}`, and
the id is tried first, so renaming never orphans; port 8501 is published on 127.0.0.1 only,
and the container joins a network where containers cannot reach each other
(`docker_network`, created when missing).

Log rotation must truncate in place (copytruncate): the container appends to its bind-
mounted log file, and a renamed-away file keeps receiving the output; `maintain()` (every
reconcile pass, for each running app) does it once the file passes `app_log_max_bytes`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import docker
import docker.errors

from backend.platform.settings import Settings
from supervisor.runtimes import docker_spec, smaps
from supervisor.runtimes.base import (
    AppSpec,
    EnvRef,
    Instance,
    Runtime,
    StartError,
    Status,
    TryAgain,
    Usage,
)
from supervisor.runtimes.docker_api import (
    STOP_TIMEOUT,
    DockerAPI,
    DockerEngine,
    appended,
    broken_image_advice,
    create_failure,
    ensure_bridge_network,
    exit_report,
    file_size,
    usage_from_stats,
)

log = logging.getLogger("supervisor.runtimes.docker")
PORT = f"{docker_spec.APP_PORT}/tcp"
# Instance names, also this module's: the names of the containers it runs.
container_name, install_id = docker_spec.container_name, docker_spec.install_id
# The daemon's answer (a 500 in swarm mode) when a start attaches to a network removed since.
NETWORK_GONE = re.compile(r"attach to network \S+: .*not found", re.IGNORECASE)


class DockerRuntime(DockerEngine, Runtime):
    name = "docker"

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None, *,
                 api: DockerAPI | None = None) -> None:
        super().__init__(settings, client, api=api)
        self._network_id: str | None = None  # of docker_network, once ensured
        # (app, image id) -> whether a check container of the image ran sh after a
        # container of it for the app could not (`_image_verdict`)
        self._rechecked: dict[tuple[int, str], bool] = {}

    async def ensure_network(self) -> str | None:
        """The id of `docker_network`, created when missing; containers join it by id, so a
        duplicate another supervisor made at the same moment never makes names ambiguous."""
        name = self.settings.docker_network
        if not name:
            return None
        async with self._network_lock:
            if self._network_id is None:
                self._network_id = await self.api.call(ensure_bridge_network,
                                                       self.api.client(), name)
            return self._network_id

    async def _find(self, app_id: int, state: dict[str, Any]) -> Any | None:
        """The app's container: by the id in state, else by name, else by labels (of the
        same instance token: never the other instance of a zero-downtime redeploy)."""
        client = self.api.client()
        for key in ("container_id", "name"):
            ref = state.get(key)
            if not ref:
                continue
            try:
                container = await self.api.call(client.containers.get, ref)
            except docker.errors.NotFound:
                continue
            if docker_spec.is_app_of(container.labels, self.install_id, app_id):
                return container
        found = await self.current_instances(app_id)
        found = [c for c in found if docker_spec.has_token(c.labels, state.get("instance", ""))]
        return found[0] if found else None

    # Steps of Runtime.start ---------------------------------------------------------
    async def current_instances(self, app_id: int) -> list[Any]:
        return list(await self.api.call(
            self.api.client().containers.list, all=True, ignore_removed=True,
            filters=docker_spec.app_filters(self.install_id, f"stcloud.app_id={app_id}")))

    async def holding_name(self, app: AppSpec, token: str) -> list[Any]:
        name = self.instance_name(app, token)
        try:
            return [await self.api.call(self.api.client().containers.get, name)]
        except docker.errors.NotFound:
            return []

    async def remove_instances(self, app: AppSpec, found: list[Any]) -> None:
        for container in found:
            await self.api.remove(container)

    async def create_instance(self, app: AppSpec, env: EnvRef, token: str) -> Any:
        kwargs = docker_spec.container_args(self.settings, self.install_id, app, env, token)
        network = await self.ensure_network()
        if network:
            kwargs["network"] = network
        name = self.instance_name(app, token)
        try:
            return await self.api.call(self.api.client().containers.create, env.location,
                                       name=name, **kwargs)
        except docker.errors.ImageNotFound:
            raise StartError(f"The environment image {env.location} is missing; "
                             "rebuild the environment.") from None
        except docker.errors.NotFound as exc:
            if "network" not in str(exc).lower():
                raise create_failure(exc, "container") from None
            self._network_id = None  # removed as a duplicate: settle on the kept one
            raise TryAgain(f"Docker could not create the container: "
                           f"{exc.explanation or exc}", delay=0) from None
        except docker.errors.APIError as exc:
            raise create_failure(exc, "container") from None

    async def _image_verdict(self, app: AppSpec, image_id: str) -> str:
        """After tini could not exec sh in the app's container of `image_id`: "again" the
        first time a check container of the image runs sh (start once more), "container"
        when it ran sh before (the app's container, not the image, is at fault), "broken"
        when the check cannot run sh either (untag: the next start builds it again)."""
        key = (app.app_id, image_id)
        if key in self._rechecked:
            return "container" if self._rechecked[key] else "broken"
        runs = bool(await self.images.runs_sh(image_id))
        self._rechecked[key] = runs
        log.warning("app=%s container of env image %s could not exec sh; a check container "
                    "of it %s", app.app_id, image_id[:19],
                    "runs sh: starting again" if runs else "does not either")
        return "again" if runs else "broken"

    async def _forget_broken_image(self, app: AppSpec, image: str, image_id: str) -> None:
        """Untag an env image that cannot run the app's command line (no sh), so the next
        deploy or reboot builds it instead of reusing it; not when the tag names another
        image by now (one built again since)."""
        try:
            await self.images.untag(image, only=image_id)
        except docker.errors.APIError as exc:
            log.warning("app=%s env image %s cannot run sh; untagging failed: %s",
                        app.app_id, image, exc.explanation or exc)
            return
        log.warning("app=%s env image %s cannot run sh; untagged", app.app_id, image)

    async def _exec_sh(self, container: Any) -> bool | None:
        """Whether `sh` runs in the started container (what its command line needs); None
        when it cannot be asked (the container already ended: the caller's health check
        reports that). On this daemon a container has at times started on an empty root
        filesystem (its overlay not mounted: tini's "exec sh failed", exit 127, either at
        once or a moment later), its image being fine."""
        try:
            result = await self.api.call(container.exec_run, ["sh", "-c", ":"])
        except docker.errors.APIError:
            return None
        if result.exit_code == 0:
            return True
        output = (result.output or b"").decode(errors="replace")
        return False if result.exit_code in (126, 127) and "not found" in output else None

    async def run_instance(self, app: AppSpec, created: Any, token: str) -> Instance:
        container = created
        log_offset = file_size(app.log_path)
        try:
            await self.api.call(container.start)
            await self.api.call(container.reload)
            port = int(container.attrs["NetworkSettings"]["Ports"][PORT][0]["HostPort"])
        except (docker.errors.APIError, KeyError, IndexError, TypeError) as exc:
            detail = getattr(exc, "explanation", None) or await self.api.call(
                exit_report, container, appended(app.log_path, log_offset))
            await self.api.remove(container)
            if isinstance(exc, docker.errors.APIError) and \
                    NETWORK_GONE.search(str(exc.explanation or "")):
                # Attaching found the network gone: another supervisor removed it as a
                # duplicate after this one settled on it. Settle again and recreate.
                self._network_id = None
                raise TryAgain(f"The app container did not start: {detail}", delay=0) from None
            image = (container.attrs.get("Config") or {}).get("Image") or ""
            image_id = str(container.attrs.get("Image") or "")
            advice = broken_image_advice(detail, image or "of this app")
            verdict = await self._image_verdict(app, image_id) if advice and image_id \
                else "broken"
            if verdict == "again":
                raise TryAgain(f"The app container did not start: {detail}", delay=0) from None
            if verdict == "container":
                advice = ""
            elif advice and image:
                await self._forget_broken_image(app, image, image_id)
            message = f"The app container did not start: {detail}"
            raise StartError(f"{advice}\n{message}" if advice else message) from None
        if await self._exec_sh(container) is False:
            await self.api.remove(container)
            message = ("The app container started without its root filesystem (sh is not "
                       "there, although its image has it)")
            key = (app.app_id, "rootfs")
            if key in self._rechecked:
                raise StartError(f"{message}. Reboot the app to try again.")
            self._rechecked[key] = True
            log.warning("app=%s %s; starting it again", app.app_id, message)
            raise TryAgain(message, delay=0)
        name = self.instance_name(app, token)
        state: dict[str, Any] = {"container_id": container.id, "name": name, "port": port}
        if token:
            state["instance"] = token
        return Instance(app.app_id, ("127.0.0.1", port), state, app.generation)

    # The rest of the contract -------------------------------------------------------
    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        container = await self._find(app_id, state)
        if container is None:
            return
        try:
            await self.api.call(container.stop, timeout=STOP_TIMEOUT)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
        await self.api.remove(container)
        self._cpu_samples.pop(container.id, None)

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        container = await self._find(app_id, state)
        if container is None:
            return Status("missing")
        cstate = container.attrs.get("State", {})
        status = cstate.get("Status")
        if status in ("running", "restarting", "paused"):
            return Status("running")
        if status == "created":  # never started: nothing is running
            return Status("missing")
        code = int(cstate.get("ExitCode") or 0)
        # Only Docker's own OOM flag: exit 137 alone is any SIGKILL (`docker kill`, the
        # stop timeout), which is a crash, not a memory incident.
        if cstate.get("OOMKilled"):
            return Status("oom", code)
        return Status("exited", code)

    async def find_live(self) -> list[Any]:
        return list(await self.api.call(
            self.api.client().containers.list, ignore_removed=True,
            filters={**docker_spec.app_filters(self.install_id), "status": "running"}))

    async def adopt(self, found: Any) -> Instance | None:
        ports = found.attrs.get("NetworkSettings", {}).get("Ports") or {}
        try:
            port = int(ports[PORT][0]["HostPort"])
        except (KeyError, IndexError, TypeError, ValueError):
            return None
        return docker_spec.adopted_instance(found.labels, ("127.0.0.1", port),
                                {"container_id": found.id, "name": found.name, "port": port})

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        container = await self._find(app_id, state)
        if container is None or container.status != "running":
            return None
        try:
            first = container.id not in self._cpu_samples
            stats = await self.api.call(container.stats, stream=False, one_shot=not first)
        except docker.errors.NotFound:
            return None
        pid = int((container.attrs.get("State") or {}).get("Pid") or 0)
        return await asyncio.to_thread(smaps.container_usage, container.id, pid,
                                       usage_from_stats(stats, self._cpu_samples,
                                                        container.id))
