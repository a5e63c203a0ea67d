"""The app network is created once, however many supervisors start at the same moment:
several DockerRuntime objects (each with its own Docker client, as separate supervisors
have) racing on a fresh network name leave exactly one network of that name, and starting
an app works afterwards. Against the real daemon."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.docker import DockerRuntime
from tests.support.runtimes import (
    app,
    checkout,
    env_for,
    remove_docker_installation,
    wait_state_healthy,
)

RACERS = 6


def networks_named(client: Any, name: str) -> list[dict[str, Any]]:
    return [n for n in client.api.networks(names=[name]) if n["Name"] == name]


@pytest.fixture
def network_name(docker_client: Any) -> Iterator[str]:
    name = f"stcloud-test-net-{uuid.uuid4().hex[:10]}"
    yield name
    for net in networks_named(docker_client, name):
        docker_client.api.remove_network(net["Id"])


def test_concurrent_first_starts_make_one_network(settings: Settings, network_name: str,
                                                  docker_client: Any,
                                                  tmp_path: Path) -> None:
    import docker
    racing = dataclasses.replace(settings, runtime="docker", docker_network=network_name)
    clients = [docker.from_env(timeout=120) for _ in range(RACERS)]
    runtimes = [DockerRuntime(racing, client) for client in clients]

    async def race() -> list[str | None]:
        # Two calls on each runtime: concurrent starts in one supervisor, and across them.
        return await asyncio.gather(*(rt.ensure_network() for rt in runtimes for _ in "ab"))

    try:
        asyncio.run(race())
        assert len(networks_named(docker_client, network_name)) == 1

        async def start_each() -> None:
            path = checkout(tmp_path, "net")
            env = await env_for(runtimes[0], path)
            for n, rt in enumerate(runtimes[:3], start=1):
                inst = await rt.start(app(racing, path, n), env)
                await wait_state_healthy(rt, n, inst.state)
                container = docker_client.containers.get(inst.state["container_id"])
                assert network_name in container.attrs["NetworkSettings"]["Networks"]
        asyncio.run(start_each())
        assert len(networks_named(docker_client, network_name)) == 1
    finally:
        remove_docker_installation(docker_client, runtimes[0])
        for client in clients:
            client.close()


def test_concurrent_first_starts_make_one_swarm_network(settings: Settings, swarm_client: Any,
                                                        network_name: str) -> None:
    """The swarm engine's network and its local config-only network, under the same race."""
    import docker

    from supervisor.runtimes.swarm import SwarmRuntime
    racing = dataclasses.replace(settings, runtime="swarm", swarm_network=network_name)
    clients = [docker.from_env(timeout=120) for _ in range(RACERS)]
    runtimes = [SwarmRuntime(racing, client) for client in clients]

    async def race() -> list[tuple[str, str]]:
        return await asyncio.gather(*(rt.ensure_network() for rt in runtimes for _ in "ab"))

    try:
        assert set(asyncio.run(race())) == {(network_name, "bridge")}
        assert len(networks_named(swarm_client, network_name)) == 1
        assert len(networks_named(swarm_client, f"{network_name}-config")) == 1
    finally:
        for client in clients:
            client.close()
        for net in networks_named(swarm_client, network_name):  # before its config network
            swarm_client.api.remove_network(net["Id"])
        for net in networks_named(swarm_client, f"{network_name}-config"):
            swarm_client.api.remove_network(net["Id"])


def test_a_start_after_the_settled_network_was_removed_settles_again(
        settings: Settings, network_name: str, docker_client: Any, tmp_path: Path) -> None:
    """Another supervisor may remove, as a duplicate, the network this one settled on:
    the start then finds the kept network (here: makes it again) instead of failing."""
    racing = dataclasses.replace(settings, runtime="docker", docker_network=network_name)
    runtime = DockerRuntime(racing)

    async def scenario() -> None:
        gone = await runtime.ensure_network()
        docker_client.api.remove_network(gone)
        path = checkout(tmp_path, "moved")
        inst = await runtime.start(app(racing, path, 1), await env_for(runtime, path))
        await wait_state_healthy(runtime, 1, inst.state)
        container = docker_client.containers.get(inst.state["container_id"])
        joined = container.attrs["NetworkSettings"]["Networks"][network_name]["NetworkID"]
        assert joined != gone
        assert [n["Id"] for n in networks_named(docker_client, network_name)] == [joined]
    try:
        asyncio.run(scenario())
    finally:
        remove_docker_installation(docker_client, runtime)
