"""SwarmRuntime on a real three-node swarm (scripts/multinode-swarm.sh: one manager, two
workers, each a dockerd in its own network namespace; an overlay for the apps; env images
through a registry).

The runtime talks to the manager's socket; the host reaches the tasks' overlay addresses
through the script's gateway, as a proxy on the overlay would. Without the swarm these
tests skip (fail under REQUIRE_MULTINODE=1, as in CI). They are marked `no_database` so that
the PostgreSQL pass leaves them out: the swarm is shared, and one test draining a node must
not move another pass's apps (the supervisor test runs on SQLite only).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import docker
import pytest

from backend.apps import service as apps
from backend.context import open_context
from backend.platform.settings import Settings
from supervisor.runtimes.base import StartError
from supervisor.runtimes.swarm import SwarmRuntime
from tests.support.multinode import (
    Multinode,
    multinode,
    node_client,
    running_tasks_on,
    set_availability,
    set_link,
    task_nodes,
)
from tests.support.runtimes import app, checkout, env_for, remove_swarm_installation, wait_for
from tests.support.runtimes import wait_healthy as wait_answers
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_for_state, wait_until

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


def other_worker(worker: str) -> str:
    return "stcmn-n3" if worker == "stcmn-n2" else "stcmn-n2"


async def restart_elsewhere(rt: SwarmRuntime, spec: Any, env: Any, old: Any) -> Any:
    """What the supervisor does with an instance that ended: stop it, start it again."""
    await rt.stop(spec.app_id, old.state)
    return await rt.start(spec, env)


def test_a_drained_node_s_app_is_seen_ended_and_follows_to_another_node(
        msettings: Settings, manager: docker.DockerClient, tmp_path: Path) -> None:
    """Draining the worker an app runs on ends its task (restart policy none: swarm does
    not replace it); `poll` reports that, and the restart the supervisor then makes lands
    on the other worker at a new overlay address, which answers."""
    settings = dataclasses.replace(msettings, swarm_placement_constraints="node.role==worker")
    rt = swarm_runtime(settings, manager)
    path = checkout(tmp_path, "drained")
    spec = app(settings, path, 11)

    async def scenario() -> None:
        env = await env_for(rt, path)
        first = await rt.start(spec, env)
        await wait_answers(first.address, rt, 11, first.state)
        [worker] = task_nodes(manager, first.state["service_id"])
        set_availability(manager, worker, "drain")
        await wait_not_alive(rt, 11, first.state, 30)
        moved = await restart_elsewhere(rt, spec, env, first)
        assert task_nodes(manager, moved.state["service_id"]) == [other_worker(worker)]
        assert moved.address != first.address
        await wait_answers(moved.address, rt, 11, moved.state)

    try:
        asyncio.run(scenario())
    finally:
        remove_swarm_installation(manager, rt.install_id)


def test_a_lost_node_s_app_is_served_elsewhere_and_not_twice_when_it_returns(
        mn: Multinode, msettings: Settings, manager: docker.DockerClient,
        tmp_path: Path) -> None:
    """The worker an app runs on loses its link: the manager marks it down, `poll` reports
    the task lost (its last state stays `running`: only its desired state says so), the
    restart runs on the other worker. When the link comes back, the returned node stops
    its copy: one copy of the app runs, not two."""
    settings = dataclasses.replace(msettings, swarm_placement_constraints="node.role==worker")
    rt = swarm_runtime(settings, manager)
    path = checkout(tmp_path, "lost")
    spec = app(settings, path, 12)
    lost = ""

    async def scenario() -> None:
        nonlocal lost
        env = await env_for(rt, path)
        first = await rt.start(spec, env)
        await wait_answers(first.address, rt, 12, first.state)
        [lost] = task_nodes(manager, first.state["service_id"])
        set_link(lost, up=False)
        await wait_not_alive(rt, 12, first.state, 60)
        moved = await restart_elsewhere(rt, spec, env, first)
        assert task_nodes(manager, moved.state["service_id"]) == [other_worker(lost)]
        await wait_answers(moved.address, rt, 12, moved.state)
        set_link(lost, up=True)
        returned = node_client(mn, lost)

        async def old_copy_gone() -> bool:
            return not running_tasks_on(returned, first.state["service_id"])
        await wait_for(old_copy_gone, 90, "the returned node to stop its copy")
        returned.close()
        await wait_answers(moved.address, rt, 12, moved.state)

    try:
        asyncio.run(scenario())
    finally:
        if lost:
            set_link(lost, up=True)
        remove_swarm_installation(manager, rt.install_id)


# The real supervisor: its proxy follows the app to another node ----------------------------
async def page_ok(port: int, host: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as resp:
                return resp.status == 200 and "<title>Streamlit</title>" in await resp.text()
    except (TimeoutError, aiohttp.ClientError):
        return False


def test_the_supervisor_s_route_follows_an_app_off_a_drained_node(
        mn: Multinode, msettings: Settings, manager: docker.DockerClient, admin: Any,
        hello_repo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor on the host, its runtime on the manager: a deployed app is served
    through the proxy from a worker; the worker is drained; the supervisor sees the task
    end, starts the app on the other worker and its proxy routes there."""
    settings = dataclasses.replace(msettings, swarm_placement_constraints="node.role==worker")
    monkeypatch.setenv("DOCKER_HOST", mn.manager)
    ctx = open_context(settings)
    port = settings.port
    host = f"roamer.localhost:{port}"
    sup = SupervisorProcess(settings, tmp_path / "sup.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="roamer")
        row = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, sup=sup)
        assert row.state == "running", row.state_reason
        first = json.loads(row.runtime_state)["instance"]
        [worker] = task_nodes(manager, first["service_id"])
        assert asyncio.run(page_ok(port, host))
        set_availability(manager, worker, "drain")

        def moved() -> bool:
            app_row = load_app(ctx, view.id)
            if app_row is None or app_row.state != "running":
                return False
            # Between the old instance's stop and the restart the row holds none.
            inst = json.loads(app_row.runtime_state or "{}").get("instance")
            return inst is not None and inst["service_id"] != first["service_id"] \
                and asyncio.run(page_ok(port, host))
        wait_until(moved, 120, "the app to serve from the other worker", sup)
        now = json.loads(load_app(ctx, view.id).runtime_state)["instance"]
        assert task_nodes(manager, now["service_id"]) == [other_worker(worker)]
        assert now["addresses"] != first["addresses"]
    finally:
        sup.stop()
        remove_swarm_installation(manager, SwarmRuntime(settings, manager).install_id)


# Secrets reach the task from the manager, not from a host path -----------------------------
def test_an_app_s_secrets_reach_its_task_on_a_worker_as_a_swarm_secret(
        msettings: Settings, manager: docker.DockerClient, tmp_path: Path) -> None:
    """The secrets file is no bind mount of the supervisor's host path: the service names a
    Swarm secret of its content at Streamlit's secrets paths, the app on a worker reads it,
    and stopping the app removes the secret."""
    settings = dataclasses.replace(msettings, swarm_placement_constraints="node.role==worker")
    rt = swarm_runtime(settings, manager)
    path = checkout(tmp_path, "secretive", {
        "streamlit_app.py": "import streamlit as st\nst.write(st.secrets['greeting'])\n"})
    (path / ".streamlit").mkdir()
    (path / ".streamlit" / "secrets.toml").write_text('greeting = "committed, hidden"\n')
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('greeting = "hello from the manager"\n')

    async def scenario() -> None:
        env = await env_for(rt, path)
        inst = await rt.start(app(settings, path, 21, secrets_file=secrets), env)
        await wait_answers(inst.address, rt, 21, inst.state)
        assert task_nodes(manager, inst.state["service_id"])[0] in ("stcmn-n2", "stcmn-n3")
        cspec = manager.api.inspect_service(inst.state["service_id"])["Spec"][
            "TaskTemplate"]["ContainerSpec"]
        assert str(secrets) not in [m.get("Source") for m in cspec["Mounts"]]
        assert sorted(s["File"]["Name"] for s in cspec["Secrets"]) == [
            "/app/.streamlit/secrets.toml", "/tmp/.streamlit/secrets.toml"]
        host, port = inst.address
        seen = await open_streamlit_session(f"ws://{host}:{port}", f"{host}:{port}")
        assert "hello from the manager" in seen["texts"], seen
        [ref] = {s["SecretID"] for s in cspec["Secrets"]}
        await rt.stop(21, inst.state)
        assert ref not in {s.id for s in manager.secrets.list()}

    try:
        asyncio.run(scenario())
    finally:
        remove_swarm_installation(manager, rt.install_id)
