"""SwarmRuntime: apps as Docker Swarm services (dockerspawner's SwarmSpawner to our DockerRuntime).

Same images, same container contents. Environments are DockerRuntime's env images
(`docker_images.ImageBuilder`), and a service's container is made from the very arguments
the Docker runtime gives a container (`docker_spec.container_args`: command, mounts,
environment, labels, limits, security options), translated into a task template
(`swarm_spec.task_template`): nothing about what an app sees is defined twice. This module
fills in the steps of `Runtime.start` and `Runtime.list` for services. What differs:

- One service per app instance, `stcloud-<install>-<name>-<id>[-<token>]` (the container
  name of docker.py), with the same labels on the service (what `list()` adopts by). Task
  containers are labelled `stcloud.component=app-task`, so DockerRuntime never adopts them.
- Replicas: `swarm_replicas` (default 1). Every task's address is in `Instance.state
  ["addresses"]`; `Instance.address` is the first. With more than one replica the proxy
  pins a browser to one address (sticky sessions: supervisor/proxy/sticky.py).
- Restarts belong to the supervisor (crash backoff, `crashed`, `over_limit`): the restart
  policy is `none`, a task that ends stays ended and `poll` reports it. With several
  replicas, one ended task makes `poll` report that task, and the supervisor restarts the
  service as a whole.
- Reaching the app. Swarm cannot publish a port on 127.0.0.1: `mode=host` binds every
  interface (checked here: `0.0.0.0:P` and `[::]:P`), the routing mesh likewise. So nothing
  is published. The service joins `swarm_network`, a swarm-scoped *bridge* network with
  inter-container traffic disabled (created when missing: `swarm_spec.make_network`), its
  tasks are placed on the supervisor's own node (`node.id==…`), and the proxy reaches each
  task at its bridge address, port 8501: reachable from this host only, like the Docker runtime's
  127.0.0.1-published ports (Docker drops traffic from other hosts to bridge addresses).
  With an *overlay* `swarm_network` instead (multi-node), tasks may run on any node and the
  address is the task's overlay address, which only a proxy attached to that overlay can
  reach (the supervisor running in a container on it); `swarm_registry` then distributes
  the env images.
- Images. On one node the service names the local env image by its id (`sha256:…`), which
  makes the node's agent skip any registry lookup. With `swarm_registry` the env image is
  pushed as `<registry>/stcloud-env:<hash>` by `ensure_env` and services name it by digest.
- Over the limit. A task's container that the kernel killed for memory has
  `State.OOMKilled`; `poll` reads it from the container of the failed task (local node).
  Where the container cannot be inspected (another node), exit code 137 counts as `oom`.
- Secrets reach the task as a Swarm secret (`swarm_secrets`); the checkout, workdir script,
  log file and CA bundle are bind mounts of host paths every node must have (one machine,
  or a shared filesystem at the same paths).
- No virtual IP (`dnsrr`): the proxy reaches tasks at their own addresses. On an overlay,
  a global anchor service keeps every node on the network (`swarm_anchor`).
- What swarm cannot apply of the container's arguments: see `swarm_spec`.

`Instance.state` is `{"service_id", "name", "addresses"}` (the reconciler matches a saved
instance to a listed one by "service_id", adoption.same_instance).
"""

from __future__ import annotations

import asyncio
from typing import Any

import docker
import docker.errors
from docker.types import EndpointSpec

from backend.platform.settings import Settings
from supervisor.runtimes import docker_spec, smaps
from supervisor.runtimes.base import (
    AppSpec,
    EnvRef,
    EnvSpec,
    Instance,
    LogSink,
    Runtime,
    StartError,
    Status,
    Usage,
)
from supervisor.runtimes.docker_api import (
    STOP_TIMEOUT,
    DockerAPI,
    DockerEngine,
    appended,
    create_failure,
    file_size,
    usage_from_stats,
)
from supervisor.runtimes.swarm_anchor import ensure_anchor
from supervisor.runtimes.swarm_secrets import attach_secrets, prune_secrets
from supervisor.runtimes.swarm_spec import (  # noqa: F401 - NOT_A_MANAGER: this module's API
    NOT_A_MANAGER,
    api_at_least,
    image_ref,
    make_network,
    push_env,
    swarm_problem,
    task_template,
)

ALIVE = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready",
         "starting", "running"}
POLL_STEP = 0.1  # seconds between looks at a task that is being scheduled or removed
REPORT_LINES = 20  # of the app log, in a StartError
DNS_ROUND_ROBIN = EndpointSpec(mode="dnsrr")


def _state(task: dict[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State"))


def _leaving(task: dict[str, Any]) -> bool:
    """Swarm means the task to end: its node was drained or is down (the supervisor never
    updates a service, and restart policy none replaces nothing). A task on a node that
    is down keeps its last reported state, `running`, while nothing serves it: only its
    desired state says it is lost."""
    return str(task.get("DesiredState") or "running") in ("shutdown", "remove", "orphaned")


def _alive(task: dict[str, Any]) -> bool:
    return _state(task) in ALIVE and not _leaving(task)


def _labels(service: dict[str, Any]) -> dict[str, str]:
    return service["Spec"].get("Labels") or {}


class SwarmRuntime(DockerEngine, Runtime):
    name = "swarm"

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None, *,
                 api: DockerAPI | None = None) -> None:
        super().__init__(settings, client, api=api)
        self._network: tuple[str, str] | None = None  # (name, driver), once ready
        self._anchored = False  # the overlay network's anchor (swarm_anchor) is ensured
        self._node_id = ""

    # Environments ----------------------------------------------------------------------
    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef:
        env = await super().ensure_env(spec, log)
        if self.settings.swarm_registry:
            await push_env(self.api, self.settings.swarm_registry, env, log)
        return env

    # The swarm: node and network ----------------------------------------------------------
    async def _local_node(self) -> str:
        if not self._node_id:
            problem = await self.api.call(swarm_problem, self.api.client())
            if problem:
                raise StartError(problem)
            info = await self.api.call(self.api.client().info)
            self._node_id = info["Swarm"]["NodeID"]
        return self._node_id

    async def ensure_network(self) -> tuple[str, str]:
        """`swarm_network` as (name, driver), made when missing (`swarm_spec.make_network`)."""
        async with self._network_lock:
            if self._network is None:
                self._network = await make_network(self.api, self.settings.swarm_network)
            return self._network

    # Finding services -----------------------------------------------------------------
    async def _find(self, app_id: int, state: dict[str, Any]) -> dict[str, Any] | None:
        """The app's service (the API's dict): by id, else by name, else by labels of the
        same instance token (never the other instance of a zero-downtime redeploy)."""
        api = self.api.client().api
        for key in ("service_id", "name"):
            ref = state.get(key)
            if not ref:
                continue
            try:
                service = await self.api.call(api.inspect_service, ref)
            except docker.errors.NotFound:
                continue
            if docker_spec.is_app_of(_labels(service), self.install_id, app_id):
                return dict(service)
        found = await self.current_instances(app_id)
        found = [s for s in found if docker_spec.has_token(_labels(s), state.get("instance", ""))]
        return found[0] if found else None

    async def _tasks(self, service_id: str) -> list[dict[str, Any]]:
        """The newest task of each slot, in slot order."""
        tasks = await self.api.call(self.api.client().api.tasks,
                                    filters={"service": service_id})
        newest: dict[Any, dict[str, Any]] = {}
        for task in tasks:
            if task.get("ServiceID") != service_id:
                continue
            slot = task.get("Slot", task.get("NodeID"))
            if slot not in newest or task["Version"]["Index"] > newest[slot]["Version"]["Index"]:
                newest[slot] = task
        return [newest[k] for k in sorted(newest, key=str)]

    async def _remove_service(self, service_id: str, wait: bool) -> None:
        """Remove a service (404 is done); with `wait`, until none of its containers runs
        (swarm removes the stopped containers a few seconds later)."""
        client = self.api.client()
        try:
            await self.api.call(client.api.remove_service, service_id)
        except docker.errors.NotFound:
            pass
        if not wait:
            return
        label = {"label": f"com.docker.swarm.service.id={service_id}"}
        # The agent stops a removed service's containers only after ~3 s (its control
        # loop; measured in bench/swarm.py): stop them now, as `docker stop -t 5` would.
        # The service is gone already, so nothing restarts them.
        running = await self.api.call(client.containers.list, filters=label,
                                      ignore_removed=True)  # the agent removes them meanwhile
        await asyncio.gather(*(self._stop_container(c) for c in running))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT + 15
        while True:
            left = [c for c in await self.api.call(client.containers.list, all=True,
                                                    ignore_removed=True, filters=label)
                    if c.status in ("created", "running", "restarting", "paused")]
            if not left:
                return
            if loop.time() > deadline:  # the agent did not clean up: do it ourselves
                for container in left:
                    try:
                        await self.api.call(container.remove, force=True)
                    except docker.errors.APIError:
                        pass
                return
            await asyncio.sleep(POLL_STEP)

    async def _stop_container(self, container: Any) -> None:
        try:
            await self.api.call(container.stop, timeout=STOP_TIMEOUT)
        except docker.errors.APIError:  # gone or being removed by the agent: fine
            pass

    # Steps of Runtime.start ------------------------------------------------------------
    async def check_start(self, app: AppSpec, env: EnvRef) -> None:
        await self._local_node()
        await self.ensure_network()

    async def current_instances(self, app_id: int) -> list[Any]:
        return list(await self.api.call(
            self.api.client().api.services,
            filters=docker_spec.app_filters(self.install_id, f"stcloud.app_id={app_id}")))

    async def holding_name(self, app: AppSpec, token: str) -> list[Any]:
        name = self.instance_name(app, token)
        # The name filter matches prefixes: only this exact name is in the way.
        return [s for s in await self.api.call(self.api.client().api.services,
                                               filters={"name": name})
                if s["Spec"]["Name"] == name]

    async def remove_instances(self, app: AppSpec, found: list[Any]) -> None:
        for service_id in {s["ID"] for s in found}:
            await self._remove_service(service_id, wait=False)
        await prune_secrets(self.api, self.install_id, app.app_id)

    async def create_instance(self, app: AppSpec, env: EnvRef, token: str) -> Any:
        """The service, as (its id, the app log's size when it was made)."""
        args = docker_spec.container_args(self.settings, self.install_id, app, env, token)
        image = await image_ref(self.api, self.settings.swarm_registry, env)
        network, driver = await self.ensure_network()
        if driver == "overlay" and not self._anchored:
            self._anchored = True
            await ensure_anchor(self.api, network, image)
        client = self.api.client()
        template = task_template(self.settings, args, image, self.install_id, app, network,
                                 driver, await self._local_node(),
                                 api_at_least(client, "1.46"))
        await attach_secrets(self.api, template, self.install_id, app, token)
        mode = {"Replicated": {"Replicas": max(1, self.settings.swarm_replicas)}}
        log_offset = file_size(app.log_path)
        try:
            created = await self.api.call(
                client.api.create_service, template, labels=dict(args["labels"]), mode=mode,
                name=self.instance_name(app, token), endpoint_spec=DNS_ROUND_ROBIN)
        except docker.errors.APIError as exc:
            raise create_failure(exc, "service") from None
        return (created["ID"], log_offset)

    async def run_instance(self, app: AppSpec, created: Any, token: str) -> Instance:
        service_id, log_offset = created
        try:
            addresses = await self._wait_addresses(service_id)
        except StartError as exc:
            await self._remove_service(service_id, wait=True)
            await prune_secrets(self.api, self.install_id, app.app_id)
            output = appended(app.log_path, log_offset).splitlines()[-REPORT_LINES:]
            raise StartError("\n".join([str(exc), *output])) from None
        state: dict[str, Any] = {
            "service_id": service_id, "addresses": addresses,
            "name": self.instance_name(app, token)}
        if token:
            state["instance"] = token
        return Instance(app.app_id, (addresses[0][0], addresses[0][1]), state,
                        app.generation)

    async def _wait_addresses(self, service_id: str) -> list[list[Any]]:
        """Each task's address once all of them run; StartError when one ends first or
        none is placed within `health_timeout` (e.g. no node has the reserved memory)."""
        replicas = max(1, self.settings.swarm_replicas)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.health_timeout
        last = ""
        while True:
            tasks = await self._tasks(service_id)
            for task in tasks:
                status = task.get("Status") or {}
                if status.get("State") not in ALIVE:
                    raise StartError(f"The app's task ended while starting: "
                                     f"{status.get('Err') or status.get('State')}")
                last = status.get("Err") or status.get("Message") or last
            running = [t for t in tasks if _state(t) == "running"]
            if len(running) >= replicas:
                addresses = [await self._task_address(t) for t in running]
                if all(addresses):
                    return [[a[0], a[1]] for a in addresses if a]
            if loop.time() > deadline:
                raise StartError(f"Swarm did not run the app's {replicas} task(s) within "
                                 f"{self.settings.health_timeout:g} s ({last or 'pending'}).")
            await asyncio.sleep(POLL_STEP)

    async def _task_address(self, task: dict[str, Any]) -> tuple[str, int] | None:
        network, driver = await self.ensure_network()
        if driver == "overlay":
            for att in task.get("NetworksAttachments") or []:
                if att["Network"]["Spec"]["Name"] == network and att.get("Addresses"):
                    return (att["Addresses"][0].split("/")[0], docker_spec.APP_PORT)
            return None
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            return None
        try:
            container = await self.api.call(self.api.client().containers.get, cid)
        except docker.errors.NotFound:
            return None
        nets = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        ip = (nets.get(network) or {}).get("IPAddress")
        return (ip, docker_spec.APP_PORT) if ip else None

    # The rest of the contract -------------------------------------------------------------
    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        service = await self._find(app_id, state)
        if service is None:
            return
        await self._remove_service(service["ID"], wait=True)
        await prune_secrets(self.api, self.install_id, app_id)
        for key in [k for k in self._cpu_samples if k.startswith(service["ID"] + "/")]:
            del self._cpu_samples[key]

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        service = await self._find(app_id, state)
        if service is None:
            return Status("missing")
        ended = [t for t in await self._tasks(service["ID"]) if not _alive(t)]
        if not ended:
            return Status("running")
        statuses = [await self._task_status(t) for t in ended]
        return next((s for s in statuses if s.kind == "oom"), statuses[0])

    async def _task_status(self, task: dict[str, Any]) -> Status:
        status = task.get("Status") or {}
        if status.get("State") == "remove":
            return Status("missing")
        if status.get("State") in ALIVE:  # still reported alive, but _leaving: node lost
            return Status("missing")
        cstatus = status.get("ContainerStatus") or {}
        code = cstatus.get("ExitCode")
        code = int(code) if code is not None and cstatus.get("ContainerID") else None
        if status.get("State") == "rejected" or not cstatus.get("ContainerID"):
            return Status("exited", code)  # never ran (e.g. a mount source is missing)
        try:
            container = await self.api.call(self.api.client().containers.get,
                                            cstatus["ContainerID"])
            if container.attrs.get("State", {}).get("OOMKilled"):
                return Status("oom", code)
            return Status("exited", code)
        except docker.errors.NotFound:
            pass
        # Not inspectable here (another node, or already reaped): a SIGKILL exit is taken
        # for the kernel's OOM kill, the only SIGKILL a task sees besides `docker kill`.
        return Status("oom" if code == 137 else "exited", code)

    async def find_live(self) -> list[Any]:
        return list(await self.api.call(self.api.client().api.services,
                                        filters=docker_spec.app_filters(self.install_id)))

    async def adopt(self, found: Any) -> Instance | None:
        tasks = await self._tasks(found["ID"])
        if not tasks or any(_state(t) != "running" or _leaving(t) for t in tasks):
            return None
        addresses = [await self._task_address(t) for t in tasks]
        if not all(addresses):
            return None
        known = [a for a in addresses if a]
        return docker_spec.adopted_instance(_labels(found), known[0], {
            "service_id": found["ID"], "name": found["Spec"]["Name"],
            "addresses": [list(a) for a in known]})

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        """Summed over the service's running tasks (their containers on this node)."""
        service = await self._find(app_id, state)
        if service is None:
            return None
        parts: list[Usage] = []
        for task in await self._tasks(service["ID"]):
            cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
            if _state(task) != "running" or not cid:
                continue
            key = f"{service['ID']}/{cid}"
            try:
                container = await self.api.call(self.api.client().containers.get, cid)
                stats = await self.api.call(container.stats, stream=False,
                                            one_shot=key in self._cpu_samples)
            except docker.errors.NotFound:
                continue
            pid = int((container.attrs.get("State") or {}).get("Pid") or 0)
            one = await asyncio.to_thread(smaps.container_usage, cid, pid, usage_from_stats(
                stats, self._cpu_samples, key))
            if one is not None:
                parts.append(one)
        return smaps.combined(parts)
