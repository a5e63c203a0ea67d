"""A network anchor for the swarm runtime on an overlay `swarm_network`: one global service
that keeps a small idle task on every node attached to the app network.

A node prepares its side of an overlay network (the network's namespace, VXLAN, the peer
entries) when the first task on it needs it, and removes it with the last one. After a node
loss that preparation is what a rescheduled app waited on: measured on the three-node swarm
of scripts/multinode-swarm.sh, a task rescheduled onto a node with no task on the network
stayed `preparing` for ~10 s while its node caught up with the lost peer (bench/multinode.py);
with the anchor's task there it started in ~0.5 s. The anchor costs one `sleep` process per
node (read-only, no capabilities, no network access beyond the app network, 16 MiB).

The service is named after the network (`stcloud-anchor-<network>`), so every installation on
that network shares it; it is made from the image of the app being started (by digest, which
every node can pull) and is never an app instance (`stcloud.component=network-anchor`).
Made once per runtime; two supervisors making it at once get one (409 for the second).
"""

from __future__ import annotations

import logging
from typing import Any

import docker.errors
from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)

from supervisor.runtimes.docker_api import DockerAPI

log = logging.getLogger("supervisor.runtimes.swarm")
COMPONENT = "network-anchor"
MEMORY = 16 << 20


def anchor_name(network: str) -> str:
    return f"stcloud-anchor-{network}"[:63]


async def ensure_anchor(api: DockerAPI, network: str, image: str) -> None:
    """The anchor service of overlay `network`, made from `image` when missing. A failure is
    logged, never raised: apps start without it, only slower after a node loss."""
    client = api.client()
    name = anchor_name(network)
    try:
        await api.call(client.api.inspect_service, name)
        return
    except docker.errors.NotFound:
        pass
    container = ContainerSpec(image, ["sleep", "infinity"], read_only=True,
                              cap_drop=["ALL"], labels={"stcloud.component": COMPONENT})
    template = TaskTemplate(container, resources=Resources(mem_limit=MEMORY),
                            networks=[network], restart_policy=RestartPolicy(condition="any"))
    try:
        await api.call(client.api.create_service, template, name=name,
                       labels={"stcloud.component": COMPONENT},
                       mode=ServiceMode("global"), endpoint_spec=EndpointSpec(mode="dnsrr"))
        log.info("network anchor %s made on %s", name, network)
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            log.warning("network anchor %s not made: %s", name,
                        getattr(exc, "explanation", None) or exc)


def is_anchor(labels: dict[str, Any]) -> bool:
    return labels.get("stcloud.component") == COMPONENT
