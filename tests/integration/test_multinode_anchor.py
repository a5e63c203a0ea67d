"""The overlay network's anchor on the three-node swarm (supervisor/runtimes/swarm_anchor.py):
the first start on an overlay `swarm_network` leaves one idle task on every node attached to
it, so a task rescheduled after a node loss finds the network ready there; the anchor is
nobody's app (never adopted, never stopped with one) and its task is as locked down as an
app's. Skips without the swarm (fails under REQUIRE_MULTINODE=1, as in CI)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.swarm import SwarmRuntime
from supervisor.runtimes.swarm_anchor import anchor_name
from tests.support.multinode import Multinode, multinode
from tests.support.runtimes import app, checkout, env_for, remove_swarm_installation, wait_for

pytestmark = [pytest.mark.multinode, pytest.mark.no_database]


@pytest.fixture
def manager() -> Iterator[tuple[Multinode, docker.DockerClient]]:
    mn = multinode()
    client = mn.client()
    yield mn, client
    client.close()


def running_nodes(client: docker.DockerClient, service: str) -> list[str]:
    names = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
    return sorted(names.get(t.get("NodeID", ""), "?")
                  for t in client.services.get(service).tasks()
                  if t["Status"]["State"] == "running")


def test_a_start_on_the_overlay_anchors_every_node_to_it(
        settings: Settings, manager: tuple[Multinode, docker.DockerClient],
        tmp_path: Path) -> None:
    mn, client = manager
    msettings = mn.settings(settings)
    rt = SwarmRuntime(msettings, client)
    path = checkout(tmp_path, "anchored")
    name = anchor_name(msettings.swarm_network)
    try:  # made by an earlier start: this test sees the first start on the network make it
        client.services.get(name).remove()
    except docker.errors.NotFound:
        pass

    async def scenario() -> None:
        env = await env_for(rt, path)
        inst = await rt.start(app(msettings, path, 1), env)

        async def on_every_node() -> bool:
            return running_nodes(client, name) == ["stcmn-n1", "stcmn-n2", "stcmn-n3"]
        await wait_for(on_every_node, 120, "the anchor's task on every node")
        spec = client.services.get(name).attrs["Spec"]
        assert "Global" in spec["Mode"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        assert container["ReadOnly"] and container["CapabilityDrop"] == ["ALL"]
        assert [n["Target"] for n in spec["TaskTemplate"]["Networks"]] == \
            [client.networks.get(msettings.swarm_network).id]
        assert [i.app_id for i in await rt.list()] == [1], "the anchor is no app instance"
        await rt.stop(1, inst.state)
        assert running_nodes(client, name), "the anchor outlives the apps"

    try:
        asyncio.run(scenario())
    finally:
        remove_swarm_installation(client, rt.install_id)
