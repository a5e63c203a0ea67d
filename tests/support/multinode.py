"""The three-node swarm of scripts/multinode-swarm.sh, for tests marked `multinode` and
bench/multinode.py.

`multinode()` reads the swarm's environment from the script (`env`); without a swarm the
tests skip, and under REQUIRE_MULTINODE=1 (CI: .ci/run brings it up) they fail instead.
The host reaches every task's overlay address through the script's gateway container, so
the SwarmRuntime, its health checks and the proxy run on the host unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from backend.platform.settings import Settings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "multinode-swarm.sh"


@dataclasses.dataclass(frozen=True)
class Multinode:
    manager: str  # the manager's socket URL
    nodes: tuple[str, ...]  # every node's socket URL, the manager first
    registry: str  # host:port of the env images' registry
    network: str  # the attachable overlay app services join

    def client(self, url: str = "") -> docker.DockerClient:
        return docker.DockerClient(base_url=url or self.manager, timeout=120)

    def settings(self, settings: Settings, **changes: Any) -> Settings:
        """`settings` on this swarm: the swarm runtime, its overlay and registry."""
        return dataclasses.replace(settings, runtime="swarm", swarm_network=self.network,
                                   swarm_registry=self.registry, **changes)


def swarm_env() -> dict[str, str] | None:
    """The script's `env` output as a dict, or None when the swarm is not up."""
    try:
        out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def multinode() -> Multinode:
    """The swarm, or skip (fail under REQUIRE_MULTINODE=1) when it is not up."""
    env = swarm_env()
    if env is None:
        if os.environ.get("REQUIRE_MULTINODE") == "1":
            pytest.fail("REQUIRE_MULTINODE=1 but the three-node swarm is not up "
                        "(bash scripts/multinode-swarm.sh up)")
        pytest.skip("the three-node swarm is not up (bash scripts/multinode-swarm.sh up)")
    return Multinode(env["STCLOUD_MULTINODE_MANAGER"],
                     tuple(env["STCLOUD_MULTINODE_NODES"].split()),
                     env["STCLOUD_MULTINODE_REGISTRY"], env["STCLOUD_MULTINODE_NETWORK"])


def node_names(client: docker.DockerClient) -> dict[str, str]:
    """Node id → hostname (stcmn-n1…3)."""
    return {str(n.id): n.attrs["Description"]["Hostname"] for n in client.nodes.list()}


def task_nodes(client: docker.DockerClient, service_id: str) -> list[str]:
    """The hostnames of the nodes the service's running tasks are on."""
    names = node_names(client)
    api: Any = client.api
    return [names.get(t.get("NodeID", ""), "?")
            for t in api.tasks(filters={"service": service_id, "desired-state": "running"})
            if (t.get("Status") or {}).get("State") == "running"]


def set_availability(client: docker.DockerClient, hostname: str, availability: str) -> None:
    """`docker node update --availability …` of the node named `hostname`."""
    for _ in range(20):  # the node's version moves on while it (re)joins: read it again
        node = next((n for n in client.nodes.list()
                     if n.attrs["Description"]["Hostname"] == hostname), None)
        assert node is not None, f"no node {hostname}"
        if node.attrs["Spec"].get("Availability") == availability:
            return
        try:
            node.update(dict(node.attrs["Spec"], Availability=availability))
            return
        except docker.errors.APIError as exc:
            if "out of sequence" not in str(exc):
                raise
    raise AssertionError(f"could not set {hostname} {availability}")


def set_link(hostname: str, up: bool) -> None:
    """Cut (or restore) a node's only link, the host end of its veth pair on the bridge: to
    the rest of the swarm the node is lost, while its daemon and containers run on."""
    node = hostname.removeprefix("stcmn-")
    subprocess.run(["ip", "link", "set", f"stcmn-{node}-h", "up" if up else "down"],
                   check=True, timeout=10)


def node_client(mn: Multinode, hostname: str) -> docker.DockerClient:
    """A client of that node's own daemon (what runs there, whatever the manager thinks)."""
    return mn.client(mn.nodes[int(hostname.removeprefix("stcmn-n")) - 1])


def running_tasks_on(client: docker.DockerClient, service_id: str) -> list[Any]:
    """The containers of the service's tasks running on the daemon of `client`."""
    return list(client.containers.list(filters={
        "label": f"com.docker.swarm.service.id={service_id}"}))
