"""SwarmRuntime on a real three-node swarm (scripts/multinode-swarm.sh: one manager, two
workers, each a dockerd in its own network namespace; an overlay for the apps; env images
through a registry).

The runtime talks to the manager's socket; the host reaches the tasks' overlay addresses
through the script's gateway, as a proxy on the overlay would. Without the swarm these
tests skip (fail under REQUIRE_MULTINODE=1, as in CI). They never open the database, so the
PostgreSQL pass leaves them out and the shared swarm is used by one pass at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.base import StartError
from supervisor.runtimes.swarm import SwarmRuntime
from tests.support.multinode import (
    Multinode,
    multinode,
    set_availability,
    task_nodes,
)
from tests.support.runtimes import app, checkout, env_for, remove_swarm_installation, wait_for
from tests.support.runtimes import wait_healthy as wait_answers

pytestmark = [pytest.mark.multinode, pytest.mark.no_database]


@pytest.fixture(scope="module")
def mn() -> Multinode:
    return multinode()


@pytest.fixture
def manager(mn: Multinode) -> Iterator[docker.DockerClient]:
    client = mn.client()
    yield client
    for node in ("stcmn-n1", "stcmn-n2", "stcmn-n3"):  # a failed test may leave one drained
        set_availability(client, node, "active")
    client.close()


@pytest.fixture
def msettings(settings: Settings, mn: Multinode) -> Settings:
    return mn.settings(settings)


def swarm_runtime(settings: Settings, client: docker.DockerClient) -> SwarmRuntime:
    return SwarmRuntime(settings, client)


@pytest.fixture
def runtime(msettings: Settings, manager: docker.DockerClient) -> Iterator[SwarmRuntime]:
    rt = swarm_runtime(msettings, manager)
    yield rt
    remove_swarm_installation(manager, rt.install_id)


def node_memory_mb(client: docker.DockerClient) -> int:
    """The smallest node's memory as the swarm reports it (each node sees the machine's)."""
    return min(int(n.attrs["Description"]["Resources"]["MemoryBytes"]) >> 20
               for n in client.nodes.list())


def test_apps_are_placed_across_nodes_by_their_memory_limit(
        msettings: Settings, manager: docker.DockerClient, tmp_path: Path) -> None:
    """With the whole limit reserved, an app that takes 60 % of a node's memory fits once
    per node: three such apps land on the three nodes, a fourth finds no node and fails
    with the scheduler's reason; stopping one makes room for it."""
    settings = dataclasses.replace(msettings, swarm_memory_reservation=1.0)
    rt = swarm_runtime(settings, manager)
    impatient = swarm_runtime(dataclasses.replace(settings, health_timeout=8.0), manager)
    big = int(node_memory_mb(manager) * 0.6)
    path = checkout(tmp_path, "big")

    async def scenario() -> None:
        env = await env_for(rt, path)
        started = [await rt.start(app(settings, path, i, memory_limit_mb=big), env)
                   for i in (1, 2, 3)]
        nodes = [task_nodes(manager, inst.state["service_id"]) for inst in started]
        assert sorted(n for ns in nodes for n in ns) == ["stcmn-n1", "stcmn-n2", "stcmn-n3"]
        for inst in started:
            await wait_answers(inst.address, rt, inst.app_id, inst.state)
        with pytest.raises(StartError, match="insufficient resources|no suitable node"):
            await impatient.start(app(settings, path, 4, memory_limit_mb=big), env)
        await rt.stop(1, started[0].state)
        fourth = await rt.start(app(settings, path, 4, memory_limit_mb=big), env)
        assert task_nodes(manager, fourth.state["service_id"]) == nodes[0]
        await wait_answers(fourth.address, rt, 4, fourth.state)

    try:
        asyncio.run(scenario())
    finally:
        remove_swarm_installation(manager, rt.install_id)


async def wait_not_alive(rt: SwarmRuntime, app_id: int, state: dict[str, Any],
                         timeout: float) -> None:
    async def ended() -> bool:
        return not (await rt.poll(app_id, state)).alive
    await wait_for(ended, timeout, "the runtime to see the task end")
