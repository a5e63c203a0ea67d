"""SwarmRuntime: apps as Docker Swarm services (dockerspawner's SwarmSpawner to our DockerRuntime).

Same images, same container contents. Environments are DockerRuntime's env images
(`docker_images.ImageBuilder`), and a service's container is made from the very arguments
`DockerRuntime._create_args` gives a container (command, mounts, environment, labels,
limits, security options), translated into a task template: nothing about what an app sees
is defined twice. What differs:

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
  inter-container traffic disabled (created when missing, see `_ensure_network`), its
  tasks are placed on the
  supervisor's own node (`node.id==…`), and the proxy reaches each task at its bridge
  address, port 8501: reachable from this host only, like the Docker runtime's
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
- What swarm (API 1.41, Docker 20.10) cannot apply: `no-new-privileges` (services accept it
  from API 1.46; set when the daemon speaks it), a swap limit (memory+swap = 2× the limit
  when the host has swap), tmpfs mount flags (Docker's tmpfs defaults are used with the
  size, else the memory limit, and the mode given: /app, the writable working directory).

`Instance.state` is `{"service_id", "name", "addresses"}` (the reconciler matches a saved
instance to a listed one by "service_id", reconciler.same_instance).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import Any

import docker
import docker.errors

from backend.logs import app_log_path
from backend.settings import Settings
from supervisor.runtimes.base import (AppSpec, BuildError, EnvRef, EnvSpec, Instance,
                                      LogSink, Runtime, StartError, Status, Usage)
from supervisor.runtimes.docker import (STOP_TIMEOUT, DockerRuntime, _tail, container_name,
                                        install_id, settle_network, usage_from_stats)
from supervisor.runtimes.docker_images import ENV_REPO
from supervisor.runtimes.logpipe import copytruncate

APP_PORT = 8501
NOT_A_MANAGER = ("The swarm runtime needs a Docker daemon that is a swarm manager; make a "
                 "single-node swarm with `docker swarm init --advertise-addr 127.0.0.1` "
                 "(or `bash scripts/ci-swarm.sh init`), or set runtime = \"docker\".")
ALIVE = {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready",
         "starting", "running"}
POLL_STEP = 0.1  # seconds between looks at a task that is being scheduled or removed


def swarm_problem(client: Any | None = None) -> str:
    """'' when the daemon answers and is a swarm manager, else what to do, for a person."""
    own = client is None
    try:
        if client is None:
            client = docker.from_env(timeout=5)
        info = (client.info() or {}).get("Swarm") or {}
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"No Docker daemon answers ({exc}). " + NOT_A_MANAGER
    finally:
        if own and client is not None:
            client.close()
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        return NOT_A_MANAGER
    return ""


def _api_at_least(client: Any, version: str) -> bool:
    have = tuple(int(p) for p in str(client.api._version).split("."))
    return have >= tuple(int(p) for p in version.split("."))


class SwarmRuntime(Runtime):
    name = "swarm"

    def __init__(self, settings: Settings, client: docker.DockerClient | None = None) -> None:
        self.settings = settings
        self.install_id = install_id(settings)
        # The container engine with no network of its own: its images, its container
        # arguments and its client (the service joins `swarm_network` instead).
        self._docker = DockerRuntime(dataclasses.replace(settings, docker_network=""), client)
        self._cpu_samples: dict[str, tuple[int, int]] = {}
        self._network: tuple[str, str] | None = None  # (name, driver), once ready
        self._network_lock = asyncio.Lock()
        self._node_id = ""

    def _client(self) -> docker.DockerClient:
        return self._docker._client()

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._docker._call(fn, *args, **kwargs)

    def python_versions(self) -> list[str]:
        return self._docker.python_versions()

    # Environments ----------------------------------------------------------------------
    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef:
        env = await self._docker.ensure_env(spec, log)
        if self.settings.swarm_registry:
            await self._push(env, log)
        return env

    def _registry_repo(self) -> str:
        return f"{self.settings.swarm_registry.rstrip('/')}/{ENV_REPO}"

    async def _push(self, env: EnvRef, log: LogSink) -> None:
        """Make the env image pullable by every node: tag and push it to `swarm_registry`."""
        client = self._client()
        image = await self._call(client.images.get, env.location)
        repo = self._registry_repo()
        if any(d.startswith(repo + "@") for d in image.attrs.get("RepoDigests") or []):
            return
        await self._call(image.tag, repo, env.dep_hash)
        log(f"==> Pushing {repo}:{env.dep_hash} for the swarm's nodes")
        def failed(why: object) -> BuildError:
            return BuildError(f"Pushing the environment to {self.settings.swarm_registry} "
                              f"failed: {why}; check the registry setting and that the "
                              "registry answers.")
        try:
            events = await self._call(lambda: list(client.images.push(
                repo, env.dep_hash, stream=True, decode=True)))
        except docker.errors.APIError as exc:
            raise failed(exc.explanation or exc) from None
        for event in events:
            if "error" in event:
                raise failed(event["error"])

    async def _image_ref(self, env: EnvRef) -> str:
        """The image a task runs: the local image id on one node (no registry lookup),
        else the pushed image by digest."""
        try:
            image = await self._call(self._client().images.get, env.location)
        except docker.errors.ImageNotFound:
            raise StartError(f"The environment image {env.location} is missing; rebuild "
                             "the environment.") from None
        if not self.settings.swarm_registry:
            return str(image.id)
        repo = self._registry_repo()
        for digest in image.attrs.get("RepoDigests") or []:
            if digest.startswith(repo + "@"):
                return str(digest)
        raise StartError(f"The environment image {env.location} was not pushed to "
                         f"{self.settings.swarm_registry}; rebuild the environment.")

    # The swarm: node and network ----------------------------------------------------------
    async def _local_node(self) -> str:
        if not self._node_id:
            problem = await self._call(swarm_problem, self._client())
            if problem:
                raise StartError(problem)
            info = await self._call(self._client().info)
            self._node_id = info["Swarm"]["NodeID"]
        return self._node_id

    async def _ensure_network(self) -> tuple[str, str]:
        """`swarm_network` as (name, driver); created when missing as a swarm-scoped bridge
        whose local options come from a config-only network `<name>-config` with
        inter-container traffic disabled: a swarm-scoped bridge ignores options given
        directly (seen here: `-o com.docker.network.bridge.enable_icc=false` on it left
        containers reaching each other), but applies those of `--config-from`.
        Supervisors starting at once: the manager refuses a second swarm network of one
        name (409), but the config-only network is local, so duplicates of it are settled
        (the oldest kept) before the swarm network names it."""
        async with self._network_lock:
            if self._network is None:
                self._network = await self._make_network()
            return self._network

    async def _make_network(self) -> tuple[str, str]:
        name = self.settings.swarm_network
        client = self._client()
        try:
            net = await self._call(client.networks.get, name)
        except docker.errors.NotFound:
            labels = {"stcloud.component": "network"}
            await self._create_network({
                "Name": f"{name}-config", "Driver": "bridge", "ConfigOnly": True,
                "Labels": labels,
                "Options": {"com.docker.network.bridge.enable_icc": "false"}})
            await self._call(settle_network, client, f"{name}-config")
            await self._create_network({  # no labels: refused beside ConfigFrom
                "Name": name, "Driver": "bridge", "Scope": "swarm",
                "ConfigFrom": {"Network": f"{name}-config"}})
            net = await self._call(client.networks.get, name)
        if net.attrs.get("Scope") != "swarm":
            raise StartError(f"The network {name} (setting swarm_network) is not "
                             "swarm-scoped; services cannot join it.")
        return (name, str(net.attrs.get("Driver")))

    async def _create_network(self, body: dict[str, Any]) -> None:
        """POST /networks/create (the SDK has no ConfigOnly/ConfigFrom); 409 is fine:
        another installation made it meanwhile."""
        api = self._client().api
        try:
            await self._call(lambda: api._result(
                api._post_json(api._url("/networks/create"), data=body), True))
        except docker.errors.APIError as exc:
            text = str(exc)  # the manager says 500 "name conflicts" when two create at once
            if exc.status_code != 409 and "already exists" not in text \
                    and "name conflicts" not in text:
                raise

    # Finding services -----------------------------------------------------------------
    def _labels(self, *extra: str) -> dict[str, list[str]]:
        return {"label": [f"stcloud.install={self.install_id}", "stcloud.component=app",
                          *extra]}

    def _ours(self, labels: dict[str, str], app_id: int) -> bool:
        return (labels.get("stcloud.install"), labels.get("stcloud.component"),
                labels.get("stcloud.app_id")) == (self.install_id, "app", str(app_id))

    async def _find(self, app_id: int, state: dict[str, Any]) -> dict[str, Any] | None:
        """The app's service (the API's dict): by id, else by name, else by labels of the
        same instance token (never the other instance of a zero-downtime redeploy)."""
        api = self._client().api
        for key in ("service_id", "name"):
            ref = state.get(key)
            if not ref:
                continue
            try:
                service = await self._call(api.inspect_service, ref)
            except docker.errors.NotFound:
                continue
            if self._ours(service["Spec"].get("Labels") or {}, app_id):
                return service
        found = await self._call(api.services,
                                 filters=self._labels(f"stcloud.app_id={app_id}"))
        token = state.get("instance", "")
        found = [s for s in found
                 if (s["Spec"].get("Labels") or {}).get("stcloud.instance", "") == token]
        return found[0] if found else None

    async def _tasks(self, service_id: str) -> list[dict[str, Any]]:
        """The newest task of each slot, in slot order."""
        tasks = await self._call(self._client().api.tasks, filters={"service": service_id})
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
        client = self._client()
        try:
            await self._call(client.api.remove_service, service_id)
        except docker.errors.NotFound:
            pass
        if not wait:
            return
        label = {"label": f"com.docker.swarm.service.id={service_id}"}
        # The agent stops a removed service's containers only after ~3 s (its control
        # loop; measured in bench/swarm.py): stop them now, as `docker stop -t 5` would.
        # The service is gone already, so nothing restarts them.
        running = await self._call(client.containers.list, filters=label,
                                   ignore_removed=True)  # the agent removes them meanwhile
        await asyncio.gather(*(self._stop_container(c) for c in running))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_TIMEOUT + 15
        while True:
            left = [c for c in await self._call(client.containers.list, all=True,
                                                 ignore_removed=True,
                                                 filters=label)
                    if c.status in ("created", "running", "restarting", "paused")]
            if not left:
                return
            if loop.time() > deadline:  # the agent did not clean up: do it ourselves
                for container in left:
                    try:
                        await self._call(container.remove, force=True)
                    except docker.errors.APIError:
                        pass
                return
            await asyncio.sleep(POLL_STEP)

    async def _stop_container(self, container: Any) -> None:
        try:
            await self._call(container.stop, timeout=STOP_TIMEOUT)
        except docker.errors.APIError:  # gone or being removed by the agent: fine
            pass

    # Lifecycle ---------------------------------------------------------------------------
    async def start(self, app: AppSpec, env: EnvRef) -> Instance:
        client = self._client()
        node = await self._local_node()
        network, driver = await self._ensure_network()
        token = secrets.token_hex(3) if app.alongside else ""
        name = container_name(self.install_id, app.name, app.app_id, token)
        # Whatever this app runs now is replaced; an instance started alongside leaves the
        # current one running.
        old = [] if app.alongside else await self._call(
            client.api.services, filters=self._labels(f"stcloud.app_id={app.app_id}"))
        # The name filter matches prefixes: only this exact name is in the way.
        old += [s for s in await self._call(client.api.services, filters={"name": name})
                if s["Spec"]["Name"] == name]
        for service_id in {s["ID"] for s in old}:
            await self._remove_service(service_id, wait=False)
        args = await self._docker._create_args(app, env)
        image = await self._image_ref(env)
        labels = dict(args["labels"])
        if token:
            labels["stcloud.instance"] = token
        template = self._task_template(args, image, app, network, driver, node)
        replicas = max(1, self.settings.swarm_replicas)
        mode = {"Replicated": {"Replicas": replicas}}
        for attempt in range(20):
            try:
                created = await self._call(client.api.create_service, template, name=name,
                                           labels=labels, mode=mode)
                break
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and attempt < 19:  # old one still being removed
                    await asyncio.sleep(0.25)
                    continue
                raise StartError(f"Docker could not create the service: "
                                 f"{exc.explanation or exc}") from None
        service_id = created["ID"]
        try:
            addresses = await self._wait_addresses(service_id, replicas, network, driver)
        except StartError as exc:
            await self._remove_service(service_id, wait=True)
            raise StartError(f"{exc}\n{_tail(app.log_path)}".rstrip()) from None
        state: dict[str, Any] = {"service_id": service_id, "name": name,
                                 "addresses": addresses}
        if token:
            state["instance"] = token
        return Instance(app.app_id, (addresses[0][0], addresses[0][1]), state,
                        app.generation)

    def _task_template(self, args: dict[str, Any], image: str, app: AppSpec, network: str,
                       driver: str, node: str) -> dict[str, Any]:
        """DockerRuntime's container arguments as a swarm task template."""
        limit = int(app.memory_limit_mb) << 20
        mounts = [dict(m) for m in args["mounts"]]
        mounts += [tmpfs_mount(path, options, limit)
                   for path, options in args.get("tmpfs", {}).items()]
        container: dict[str, Any] = {
            "Image": image, "Command": args["command"], "Dir": args["working_dir"],
            "Env": [f"{k}={v}" for k, v in args["environment"].items()],
            "Mounts": mounts, "ReadOnly": bool(args.get("read_only")),
            "Init": bool(args.get("init")), "StopGracePeriod": STOP_TIMEOUT * 10**9,
            "Labels": {"stcloud.install": self.install_id, "stcloud.component": "app-task",
                       "stcloud.app_id": str(app.app_id)}}
        if args.get("cap_drop"):
            container["CapabilityDrop"] = list(args["cap_drop"])
        if "no-new-privileges" in (args.get("security_opt") or []) and \
                _api_at_least(self._client(), "1.46"):
            container["Privileges"] = {"NoNewPrivileges": True}
        limits: dict[str, Any] = {"MemoryBytes": limit}
        if args.get("nano_cpus"):
            limits["NanoCPUs"] = int(args["nano_cpus"])
        if args.get("pids_limit"):
            limits["Pids"] = int(args["pids_limit"])
        resources: dict[str, Any] = {"Limits": limits}
        reserve = int(limit * max(0.0, min(1.0, self.settings.swarm_memory_reservation)))
        if reserve:
            resources["Reservations"] = {"MemoryBytes": reserve}
        constraints = [c.strip() for c in self.settings.swarm_placement_constraints.split(",")
                       if c.strip()]
        if driver != "overlay":  # a bridge address is reachable from its own node only
            constraints.insert(0, f"node.id=={node}")
        template: dict[str, Any] = {
            "ContainerSpec": container, "Resources": resources,
            "RestartPolicy": {"Condition": "none"},  # the supervisor owns restarts
            "Placement": {"Constraints": constraints},
            "Networks": [{"Target": network}]}
        log_config = args.get("log_config")
        if log_config:
            template["LogDriver"] = {"Name": log_config.get("Type", "json-file"),
                                     "Options": dict(log_config.get("Config") or {})}
        return template

    async def _wait_addresses(self, service_id: str, replicas: int, network: str,
                              driver: str) -> list[list[Any]]:
        """Each task's address once all of them run; StartError when one ends first or
        none is placed within `health_timeout` (e.g. no node has the reserved memory)."""
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
            running = [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]
            if len(running) >= replicas:
                addresses = [await self._task_address(t, network, driver) for t in running]
                if all(addresses):
                    return [[a[0], a[1]] for a in addresses if a]
            if loop.time() > deadline:
                raise StartError(f"Swarm did not run the app's {replicas} task(s) within "
                                 f"{self.settings.health_timeout:g} s ({last or 'pending'}).")
            await asyncio.sleep(POLL_STEP)

    async def _task_address(self, task: dict[str, Any], network: str,
                            driver: str) -> tuple[str, int] | None:
        if driver == "overlay":
            for att in task.get("NetworksAttachments") or []:
                if att["Network"]["Spec"]["Name"] == network and att.get("Addresses"):
                    return (att["Addresses"][0].split("/")[0], APP_PORT)
            return None
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            return None
        try:
            container = await self._call(self._client().containers.get, cid)
        except docker.errors.NotFound:
            return None
        nets = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        ip = (nets.get(network) or {}).get("IPAddress")
        return (ip, APP_PORT) if ip else None

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        service = await self._find(app_id, state)
        if service is None:
            return
        await self._remove_service(service["ID"], wait=True)
        for key in [k for k in self._cpu_samples if k.startswith(service["ID"] + "/")]:
            del self._cpu_samples[key]

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        service = await self._find(app_id, state)
        if service is None:
            return Status("missing")
        tasks = await self._tasks(service["ID"])
        ended = [t for t in tasks if (t.get("Status") or {}).get("State") not in ALIVE]
        if not ended:
            # The log file's size cap, as DockerRuntime.poll does (same redirect, same file).
            await asyncio.to_thread(copytruncate, str(app_log_path(self.settings, app_id)),
                                    self.settings.app_log_max_bytes,
                                    self.settings.app_log_backups)
            return Status("running")
        statuses = [await self._task_status(t) for t in ended]
        return next((s for s in statuses if s.kind == "oom"), statuses[0])

    async def _task_status(self, task: dict[str, Any]) -> Status:
        status = task.get("Status") or {}
        if status.get("State") == "remove":
            return Status("missing")
        cstatus = status.get("ContainerStatus") or {}
        code = cstatus.get("ExitCode")
        code = int(code) if code is not None and cstatus.get("ContainerID") else None
        if status.get("State") == "rejected" or not cstatus.get("ContainerID"):
            return Status("exited", code)  # never ran (e.g. a mount source is missing)
        try:
            container = await self._call(self._client().containers.get,
                                         cstatus["ContainerID"])
            if container.attrs.get("State", {}).get("OOMKilled"):
                return Status("oom", code)
            return Status("exited", code)
        except docker.errors.NotFound:
            pass
        # Not inspectable here (another node, or already reaped): a SIGKILL exit is taken
        # for the kernel's OOM kill, the only SIGKILL a task sees besides `docker kill`.
        return Status("oom" if code == 137 else "exited", code)

    async def list(self) -> list[Instance]:
        services = await self._call(self._client().api.services, filters=self._labels())
        if not services:
            return []
        network, driver = await self._ensure_network()
        out = []
        for service in services:
            labels = service["Spec"].get("Labels") or {}
            try:
                app_id = int(labels["stcloud.app_id"])
            except (KeyError, ValueError):
                continue
            tasks = await self._tasks(service["ID"])
            if not tasks or any((t.get("Status") or {}).get("State") != "running"
                                for t in tasks):
                continue
            addresses = [await self._task_address(t, network, driver) for t in tasks]
            if not all(addresses):
                continue
            state: dict[str, Any] = {"service_id": service["ID"],
                                     "name": service["Spec"]["Name"],
                                     "addresses": [[a[0], a[1]] for a in addresses if a]}
            if labels.get("stcloud.instance"):
                state["instance"] = labels["stcloud.instance"]
            first = state["addresses"][0]
            out.append(Instance(app_id, (first[0], first[1]), state,
                                int(labels.get("stcloud.generation", 0))))
        return out

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        """Summed over the service's running tasks (their containers on this node)."""
        service = await self._find(app_id, state)
        if service is None:
            return None
        total: Usage | None = None
        for task in await self._tasks(service["ID"]):
            status = task.get("Status") or {}
            cid = (status.get("ContainerStatus") or {}).get("ContainerID")
            if status.get("State") != "running" or not cid:
                continue
            key = f"{service['ID']}/{cid}"
            try:
                container = await self._call(self._client().containers.get, cid)
                stats = await self._call(container.stats, stream=False,
                                         one_shot=key in self._cpu_samples)
            except docker.errors.NotFound:
                continue
            one = usage_from_stats(stats, self._cpu_samples, key)
            if one is not None:
                total = one if total is None else Usage(
                    total.memory_bytes + one.memory_bytes, total.cpu_percent + one.cpu_percent)
        return total

    async def close(self) -> None:
        await self._docker.close()


def tmpfs_mount(path: str, options: str, default_size: int) -> dict[str, Any]:
    """A swarm tmpfs mount from Docker's `tmpfs` option string: its size (`size=Nm`, else
    `default_size`) and mode (`mode=1777`) are kept; Docker's other flags are its defaults."""
    tmpfs: dict[str, Any] = {"SizeBytes": default_size}
    for option in options.split(","):
        key, _, value = option.partition("=")
        if key == "size" and value.endswith("m") and value[:-1].isdigit():
            tmpfs["SizeBytes"] = int(value[:-1]) << 20
        elif key == "mode" and value:
            tmpfs["Mode"] = int(value, 8)
    return {"Target": path, "Type": "tmpfs", "TmpfsOptions": tmpfs}


def instance_addresses(state: dict[str, Any]) -> list[tuple[str, int]]:
    """Every task address of an instance (the proxy's upstreams when replicas > 1)."""
    return [(str(a[0]), int(a[1])) for a in state.get("addresses") or []]
