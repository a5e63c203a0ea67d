"""What an app service is, for the swarm runtime: its task template, image and network,
and whether this daemon can run services at all (`swarm_problem`).

The task template is `docker_spec.container_args` (what the Docker runtime gives a
container) translated for a swarm service, so what an app sees is defined once. What swarm
(API 1.41, Docker 20.10) cannot apply: `no-new-privileges` (services accept it from API
1.46; set when the daemon speaks it), a swap limit (memory+swap = 2× the limit when the host
has swap), tmpfs mount flags (Docker's tmpfs defaults are used with the size, else the
memory limit, and the mode given: /app, the writable working directory).

The image is the env image by its local id on one node (no registry lookup), or, with
`swarm_registry`, pushed there by `push_env` and named by digest.

The network is `swarm_network`, a swarm-scoped bridge with inter-container traffic
disabled, created when missing (`make_network`).
"""

from __future__ import annotations

from typing import Any

import docker
import docker.errors

from backend.platform.settings import Settings
from supervisor.runtimes.base import AppSpec, BuildError, EnvRef, LogSink, StartError
from supervisor.runtimes.docker_api import STOP_TIMEOUT, DockerAPI, settle_network
from supervisor.runtimes.docker_images import ENV_REPO

NOT_A_MANAGER = ("The swarm runtime needs a Docker daemon that is a swarm manager; make a "
                 "single-node swarm with `docker swarm init --advertise-addr 127.0.0.1` "
                 "(or `bash scripts/ci-swarm.sh init`), or set runtime = \"docker\".")


def swarm_problem(client: Any | None = None) -> str:
    """'' when the daemon answers and is a swarm manager, else what to do, for a person."""
    own = client is None
    try:
        if client is None:
            client = docker.from_env(timeout=5)
        info = (client.info() or {}).get("Swarm") or {}
    except Exception as exc:  # any failure means "not available"
        return f"No Docker daemon answers ({exc}). " + NOT_A_MANAGER
    finally:
        if own and client is not None:
            client.close()
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        return NOT_A_MANAGER
    return ""


def api_at_least(client: Any, version: str) -> bool:
    """Whether the client speaks Docker API `version` or later."""
    have = tuple(int(p) for p in str(client.api._version).split("."))
    return have >= tuple(int(p) for p in version.split("."))


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


def _container_spec(args: dict[str, Any], image: str, install: str, app: AppSpec,
                    can_forbid_privileges: bool) -> dict[str, Any]:
    limit = int(app.memory_limit_mb) << 20
    mounts = [dict(m) for m in args["mounts"]]
    mounts += [tmpfs_mount(path, options, limit)
               for path, options in args.get("tmpfs", {}).items()]
    container: dict[str, Any] = {
        "Image": image, "Command": args["command"], "Dir": args["working_dir"],
        "Env": [f"{k}={v}" for k, v in args["environment"].items()],
        "Mounts": mounts, "ReadOnly": bool(args.get("read_only")),
        "Init": bool(args.get("init")), "StopGracePeriod": STOP_TIMEOUT * 10**9,
        # Task containers are `app-task`, so the Docker runtime never adopts them.
        "Labels": {"stcloud.install": install, "stcloud.component": "app-task",
                   "stcloud.app_id": str(app.app_id)}}
    if args.get("cap_drop"):
        container["CapabilityDrop"] = list(args["cap_drop"])
    if "no-new-privileges" in (args.get("security_opt") or []) and can_forbid_privileges:
        container["Privileges"] = {"NoNewPrivileges": True}
    return container


def task_template(settings: Settings, args: dict[str, Any], image: str, install: str,
                  app: AppSpec, network: str, driver: str, node: str,
                  can_forbid_privileges: bool) -> dict[str, Any]:
    """The container arguments `args` (`docker_spec.container_args`) as a swarm task
    template on `network`; on a bridge network placed on `node`, the supervisor's own."""
    limit = int(app.memory_limit_mb) << 20
    limits: dict[str, Any] = {"MemoryBytes": limit}
    if args.get("nano_cpus"):
        limits["NanoCPUs"] = int(args["nano_cpus"])
    if args.get("pids_limit"):
        limits["Pids"] = int(args["pids_limit"])
    resources: dict[str, Any] = {"Limits": limits}
    reserve = int(limit * max(0.0, min(1.0, settings.swarm_memory_reservation)))
    if reserve:
        resources["Reservations"] = {"MemoryBytes": reserve}
    constraints = [c.strip() for c in settings.swarm_placement_constraints.split(",")
                   if c.strip()]
    if driver != "overlay":  # a bridge address is reachable from its own node only
        constraints.insert(0, f"node.id=={node}")
    template: dict[str, Any] = {
        "ContainerSpec": _container_spec(args, image, install, app, can_forbid_privileges),
        "Resources": resources,
        "RestartPolicy": {"Condition": "none"},  # the supervisor owns restarts
        "Placement": {"Constraints": constraints},
        "Networks": [{"Target": network}]}
    log_config = args.get("log_config")
    if log_config:
        template["LogDriver"] = {"Name": log_config.get("Type", "json-file"),
                                 "Options": dict(log_config.get("Config") or {})}
    return template


async def make_network(api: DockerAPI, name: str) -> tuple[str, str]:
    """`name` (setting swarm_network) as (name, driver); created when missing as a
    swarm-scoped bridge whose local options come from a config-only network
    `<name>-config` with inter-container traffic disabled: a swarm-scoped bridge ignores
    options given directly (seen here: `-o com.docker.network.bridge.enable_icc=false` on it
    left containers reaching each other), but applies those of `--config-from`.
    Supervisors starting at once: the manager refuses a second swarm network of one name
    (409), but the config-only network is local, so duplicates of it are settled (the
    oldest kept) before the swarm network names it."""
    client = api.client()
    try:
        net = await api.call(client.networks.get, name)
    except docker.errors.NotFound:
        labels = {"stcloud.component": "network"}
        await _create_network(api, {
            "Name": f"{name}-config", "Driver": "bridge", "ConfigOnly": True,
            "Labels": labels, "Options": {"com.docker.network.bridge.enable_icc": "false"}})
        await api.call(settle_network, client, f"{name}-config")
        await _create_network(api, {  # no labels: refused beside ConfigFrom
            "Name": name, "Driver": "bridge", "Scope": "swarm",
            "ConfigFrom": {"Network": f"{name}-config"}})
        net = await api.call(client.networks.get, name)
    if net.attrs.get("Scope") != "swarm":
        raise StartError(f"The network {name} (setting swarm_network) is not "
                         "swarm-scoped; services cannot join it.")
    return (name, str(net.attrs.get("Driver")))


async def _create_network(api: DockerAPI, body: dict[str, Any]) -> None:
    """POST /networks/create (the SDK has no ConfigOnly/ConfigFrom); 409 is fine:
    another installation made it meanwhile."""
    low: Any = api.client().api  # its private helpers: the SDK has no call for this body
    try:
        await api.call(lambda: low._result(
            low._post_json(low._url("/networks/create"), data=body), True))
    except docker.errors.APIError as exc:
        text = str(exc)  # the manager says 500 "name conflicts" when two create at once
        if exc.status_code != 409 and "already exists" not in text \
                and "name conflicts" not in text:
            raise


def _registry_repo(registry: str) -> str:
    return f"{registry.rstrip('/')}/{ENV_REPO}"


async def push_env(api: DockerAPI, registry: str, env: EnvRef, log: LogSink) -> None:
    """Make the env image pullable by every node: tag and push it to `registry`."""
    client = api.client()
    image = await api.call(client.images.get, env.location)
    repo = _registry_repo(registry)
    if any(d.startswith(repo + "@") for d in image.attrs.get("RepoDigests") or []):
        return
    await api.call(image.tag, repo, env.dep_hash)
    log(f"==> Pushing {repo}:{env.dep_hash} for the swarm's nodes")

    def failed(why: object) -> BuildError:
        return BuildError(f"Pushing the environment to {registry} failed: {why}; check "
                          "the registry setting and that the registry answers.")
    # Once more after a failure: a push is idempotent, and the daemon's layer export was
    # seen failing once on the three-node test swarm ("open …/merged/…: no such file").
    for attempt in (1, 2):
        try:
            events = await api.call(lambda: list(client.images.push(
                repo, env.dep_hash, stream=True, decode=True)))
        except docker.errors.APIError as exc:
            events = [{"error": exc.explanation or str(exc)}]
        error = next((e["error"] for e in events if "error" in e), None)
        if error is None:
            return
        if attempt == 2:
            raise failed(error)
        log(f"==> The push failed ({error}); trying once more")


async def image_ref(api: DockerAPI, registry: str, env: EnvRef) -> str:
    """The image a task runs: the local image id on one node (no registry lookup), else
    the image pushed to `registry`, by digest."""
    try:
        image = await api.call(api.client().images.get, env.location)
    except docker.errors.ImageNotFound:
        raise StartError(f"The environment image {env.location} is missing; rebuild "
                         "the environment.") from None
    if not registry:
        return str(image.id)
    repo = _registry_repo(registry)
    for digest in image.attrs.get("RepoDigests") or []:
        if digest.startswith(repo + "@"):
            return str(digest)
    raise StartError(f"The environment image {env.location} was not pushed to "
                     f"{registry}; rebuild the environment.")
