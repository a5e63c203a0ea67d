"""SwarmRuntime against a single-node swarm (supervisor/runtimes/swarm.py).

CI makes the swarm (`scripts/ci-swarm.sh init`); without one these tests skip, and under
REQUIRE_DOCKER=1 they fail instead. Apps share the Docker tests' env image (the example
app's requirements). Each test's settings have their own data dir, hence installation id,
and the finalizer removes the installation's services. What the contract suite already
covers (start/poll/list/stop, kill → exited) is not repeated here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.apps import service as apps
from backend.context import open_context
from backend.platform.settings import Settings
from backend.platform.settings_load import load_settings
from supervisor import runtimes
from supervisor.runtimes.base import BuildError, EnvSpec
from supervisor.runtimes.swarm import NOT_A_MANAGER, SwarmRuntime, swarm_problem
from tests.conftest import free_port, require_docker
from tests.support.runtimes import (
    PROBE,
    app,
    assert_poll_observes_and_maintain_caps_the_log,
    checkout,
    env_for,
    remove_swarm_installation,
    wait_for,
    wait_healthy,
)
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_for_state, wait_until


# Without a swarm -----------------------------------------------------------------------
class FakeClient:
    def __init__(self, swarm: dict[str, Any]) -> None:
        self.swarm = swarm

    def info(self) -> dict[str, Any]:
        return {"Swarm": self.swarm}


def test_swarm_only_when_asked_and_a_clear_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(env={}, data_dir=tmp_path, runtime="swarm").runtime == "swarm"
    assert swarm_problem(FakeClient({"LocalNodeState": "inactive"})) == NOT_A_MANAGER
    assert swarm_problem(FakeClient({"LocalNodeState": "active",
                                     "ControlAvailable": False})) == NOT_A_MANAGER  # a worker
    assert swarm_problem(FakeClient({"LocalNodeState": "active",
                                     "ControlAvailable": True})) == ""
    assert "docker swarm init --advertise-addr 127.0.0.1" in NOT_A_MANAGER
    import supervisor.runtimes.swarm_spec as swarm_spec
    monkeypatch.setattr(swarm_spec, "swarm_problem", lambda client=None: NOT_A_MANAGER)
    with pytest.raises(runtimes.RuntimeUnavailable, match="docker swarm init"):
        runtimes.select_runtime(load_settings(env={}, data_dir=tmp_path, runtime="swarm"))
    monkeypatch.setattr(runtimes, "docker_available", lambda: True)
    auto = runtimes.select_runtime(load_settings(env={}, data_dir=tmp_path, runtime="auto"))
    assert auto.name == "docker"  # auto never picks the swarm


# Against the swarm ---------------------------------------------------------------------
@pytest.fixture
def runtime(ssettings: Settings, swarm_client: Any) -> Iterator[SwarmRuntime]:
    rt = SwarmRuntime(ssettings, swarm_client)
    yield rt
    remove_swarm_installation(swarm_client, rt.install_id)


def task_containers(client: Any, service_id: str) -> list[Any]:
    return client.containers.list(filters={
        "label": f"com.docker.swarm.service.id={service_id}"})


async def session(address: tuple[str, int]) -> dict[str, Any]:
    host, port = address
    return await open_streamlit_session(f"ws://{host}:{port}", f"{host}:{port}")


def test_service_spec_limits_labels_and_isolation(
        runtime: SwarmRuntime, ssettings: Settings, swarm_client: Any,
        tmp_path: Path) -> None:
    mine = checkout(tmp_path, "mine", {"streamlit_app.py": "import streamlit as st\n"
                                       "st.write(st.secrets['greeting'])\n"})
    theirs = checkout(tmp_path, "theirs", {"private.txt": "their file"})
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('greeting = "secret hello"\n')
    settings = ssettings

    async def scenario() -> None:
        env = await env_for(runtime, mine)
        a = await runtime.start(app(settings, mine, 5, secrets_file=secrets, generation=2,
                                    memory_limit_mb=256), env)
        b = await runtime.start(app(settings, theirs, 6), env)
        await wait_healthy(a.address, runtime, 5, a.state)
        await wait_healthy(b.address, runtime, 6, b.state)
        seen = await session(a.address)
        assert "secret hello" in seen["texts"], seen

        service = swarm_client.api.inspect_service(a.state["service_id"])
        spec = service["Spec"]
        assert spec["Name"] == f"stcloud-{runtime.install_id}-mine-5" == a.state["name"]
        labels = spec["Labels"]
        assert {k: labels[k] for k in ("stcloud.install", "stcloud.component",
                                       "stcloud.app_id", "stcloud.app",
                                       "stcloud.generation")} == {
            "stcloud.install": runtime.install_id, "stcloud.component": "app",
            "stcloud.app_id": "5", "stcloud.app": "mine", "stcloud.generation": "2"}
        assert labels["stcloud.dep_hash"] == env.dep_hash
        assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
        task = spec["TaskTemplate"]
        assert task["RestartPolicy"]["Condition"] == "none"  # the supervisor restarts
        limits, reserved = task["Resources"]["Limits"], task["Resources"]["Reservations"]
        assert limits["MemoryBytes"] == 256 << 20 and limits["NanoCPUs"] == 10**9
        assert limits["Pids"] == settings.docker_pids_limit
        assert reserved["MemoryBytes"] == int((256 << 20) * settings.swarm_memory_reservation)
        node = swarm_client.info()["Swarm"]["NodeID"]
        assert task["Placement"]["Constraints"][0] == f"node.id=={node}"
        cspec = task["ContainerSpec"]
        assert cspec["ReadOnly"] is True and cspec["Init"] is True
        assert cspec["CapabilityDrop"] == ["ALL"]
        assert cspec["Image"].startswith("sha256:")  # local image by id: no registry lookup
        assert not (service.get("Endpoint") or {}).get("Ports")  # nothing published

        container = task_containers(swarm_client, a.state["service_id"])[0]
        host = container.attrs["HostConfig"]
        assert host["Memory"] == 256 << 20 and host["ReadonlyRootfs"] is True
        assert host["PidsLimit"] == settings.docker_pids_limit
        assert not any(host.get("PortBindings") or {}), "no host port is bound"
        peer = task_containers(swarm_client, b.state["service_id"])[0]
        peer_ip = peer.attrs["NetworkSettings"]["Networks"][settings.swarm_network][
            "IPAddress"]
        assert b.address == (peer_ip, 8501)
        paths = [str(settings.data_dir), str(theirs / "private.txt"),
                 str(settings.uv_cache_path)]
        code, out = container.exec_run(["/opt/venv/bin/python", "-c", PROBE, peer_ip, *paths])
        assert code == 0, out
        probe = json.loads(out)
        assert probe["socket"] is False and not any(probe["paths"].values())
        assert int(probe["caps"], 16) == 0
        # /app is the instance's writable copy; the checkout under it stays read-only.
        assert (probe["root_writable"], probe["app_writable"], probe["checkout_writable"],
                probe["tmp_writable"]) == (False, True, False, True)
        assert probe["peer"] is False  # apps on the network cannot reach each other
        assert probe["environ"]["HOME"] == "/tmp"
        # Reached at its bridge address from this host; no host port is published at all
        # (swarm's host-mode publishing would bind 0.0.0.0, not 127.0.0.1).
        assert not any((container.attrs["NetworkSettings"].get("Ports") or {}).values())

    asyncio.run(scenario())


def test_adoption_alongside_and_restart(runtime: SwarmRuntime, ssettings: Settings,
                                        swarm_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "adopt")

    async def scenario() -> None:
        env = await env_for(runtime, path)
        inst = await runtime.start(app(ssettings, path, 2, generation=1), env)
        await wait_healthy(inst.address, runtime, 2, inst.state)
        fresh = SwarmRuntime(ssettings)  # a restarted supervisor: own client, no memory
        try:
            adopted = await fresh.list()
            assert [(i.app_id, i.address, i.state, i.generation) for i in adopted] == \
                [(2, inst.address, inst.state, 1)]
            assert (await fresh.poll(2, adopted[0].state)).kind == "running"
            assert (await fresh.usage(2, adopted[0].state)) is not None
        finally:
            await fresh.close()
        other = SwarmRuntime(dataclasses.replace(ssettings, data_dir=tmp_path / "other"),
                             swarm_client)
        assert await other.list() == []  # another installation on the same swarm
        assert (await other.poll(2, inst.state)).kind == "missing"
        # A zero-downtime redeploy: the new instance beside the old; stopping the old
        # one leaves the new one serving.
        new = await runtime.start(app(ssettings, path, 2, generation=1, alongside=True), env)
        assert new.state["instance"] and new.state["service_id"] != inst.state["service_id"]
        await wait_healthy(new.address, runtime, 2, new.state)
        assert len(await runtime.list()) == 2
        await runtime.stop(2, inst.state)
        assert (await runtime.poll(2, new.state)).kind == "running"
        await assert_poll_observes_and_maintain_caps_the_log(runtime, ssettings, 2, new.state)
        assert [i.state["service_id"] for i in await runtime.list()] == \
            [new.state["service_id"]]
        # Starting again (not alongside) replaces whatever runs.
        again = await runtime.start(app(ssettings, path, 2, generation=2), env)
        assert [i.state["service_id"] for i in await runtime.list()] == \
            [again.state["service_id"]]
        await runtime.stop(2, again.state)
        assert task_containers(swarm_client, again.state["service_id"]) == []

    asyncio.run(scenario())


def test_replicas_report_every_address(ssettings: Settings, swarm_client: Any,
                                       tmp_path: Path) -> None:
    settings = dataclasses.replace(ssettings, swarm_replicas=2)
    rt = SwarmRuntime(settings, swarm_client)
    path = checkout(tmp_path, "busy")

    async def scenario() -> None:
        inst = await rt.start(app(settings, path, 9), await env_for(rt, path))
        addresses = [tuple(a) for a in inst.state["addresses"]]
        assert len(set(addresses)) == 2 and inst.address == addresses[0]
        for address in addresses:
            await wait_healthy(address, rt, 9, inst.state)
        assert [tuple(a) for a in (await rt.list())[0].state["addresses"]] == addresses
        usage = await rt.usage(9, inst.state)
        assert usage is not None and usage.memory_bytes > 2 * 10_000_000
        # One replica ends: the instance is reported ended, for the supervisor to restart.
        task_containers(swarm_client, inst.state["service_id"])[0].kill()

        async def ended() -> bool:
            return (await rt.poll(9, inst.state)).kind == "exited"
        await wait_for(ended, 30, "the ended replica to be reported")
        await rt.stop(9, inst.state)
        assert task_containers(swarm_client, inst.state["service_id"]) == []

    try:
        asyncio.run(scenario())
    finally:
        remove_swarm_installation(swarm_client, rt.install_id)


# The real supervisor ---------------------------------------------------------------------
def service_ids(client: Any, settings: Settings, app_id: int) -> list[str]:
    found = client.services.list(filters={"label": [
        f"stcloud.install={SwarmRuntime(settings, client).install_id}",
        f"stcloud.app_id={app_id}"]})
    return [s.id for s in found]


def test_supervisor_deploys_adopts_and_deletes_on_swarm(
        ssettings: Settings, swarm_client: Any, admin: Any, hello_repo: Any,
        tmp_path: Path) -> None:
    settings = ssettings
    ctx = open_context(settings)
    port = settings.port
    host = f"swarmy.localhost:{port}"
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="swarmy")
        row = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, sup=sup)
        assert row.state == "running", row.state_reason
        saved = json.loads(row.runtime_state)
        assert saved["engine"] == "swarm"
        first = saved["instance"]["service_id"]
        assert service_ids(swarm_client, settings, view.id) == [first]
        seen = asyncio.run(open_streamlit_session(f"ws://127.0.0.1:{port}/_stcore/stream",
                                                  host))
        assert seen["new_session"], seen
        sup.kill()  # a crash: the service keeps running and is adopted
        sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
        wait_until(lambda: (a := load_app(ctx, view.id)) is not None and a.state == "running"
                   and asyncio.run(_page_ok(port, host)), 60, "the adopted app", sup)
        row = load_app(ctx, view.id)
        assert json.loads(row.runtime_state)["instance"]["service_id"] == first
        assert service_ids(swarm_client, settings, view.id) == [first], "adopted, not restarted"
        apps.delete_app(ctx, admin, view.id)
        wait_until(lambda: load_app(ctx, view.id) is None, 60, "the delete", sup)
        assert service_ids(swarm_client, settings, view.id) == []
    finally:
        sup.stop()
        remove_swarm_installation(swarm_client, SwarmRuntime(settings, swarm_client).install_id)


async def _page_ok(port: int, host: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as resp:
                return resp.status == 200 and "<title>Streamlit</title>" in await resp.text()
    except (TimeoutError, aiohttp.ClientError):
        return False


# A registry distributes env images to the nodes ------------------------------------------
REGISTRY_BINARY = Path("/usr/bin/docker-registry")  # Debian `docker-registry` (distribution)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A Distribution registry on 127.0.0.1 (Docker treats loopback registries as insecure,
    so plain HTTP works), storing in tmp_path: `host:port`."""
    if not REGISTRY_BINARY.exists():
        if require_docker():
            pytest.fail("REQUIRE_DOCKER=1 but docker-registry is missing "
                        "(apt-get install docker-registry)")
        pytest.skip("docker-registry is not installed")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    with open(tmp_path / "registry.log", "wb") as out:
        proc = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _registry_answers(port), 30, "the registry to listen")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _registry_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _registry_get(registry: str, path: str) -> tuple[dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(f"http://{registry}/v2/{path}", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read()), dict(resp.headers)


def untag_pushed(client: Any, repo: str) -> None:
    """Remove the test registry's tags only: the same image is the shared `stcloud-env:<hash>`
    other tests' apps run from."""
    for image in client.images.list(name=repo):
        for tag in image.tags:
            if tag.startswith(repo + ":"):
                client.images.remove(tag, noprune=True)


def test_a_registry_setting_pushes_the_env_and_services_run_it_by_digest(
        ssettings: Settings, swarm_client: Any, registry: str, tmp_path: Path) -> None:
    """With `swarm_registry` (several nodes), ensure_env pushes the env image once and the
    service names it by the registry digest, which every node can pull."""
    settings = dataclasses.replace(ssettings, swarm_registry=registry)
    runtime = SwarmRuntime(settings, swarm_client)
    path = checkout(tmp_path, "pushed")
    repo = f"{registry}/stcloud-env"
    lines: list[str] = []

    async def scenario() -> None:
        spec = EnvSpec.from_checkout(path, "3.11", "1.67.0")
        env = await runtime.ensure_env(spec, lines.append)
        assert any(line.startswith(f"==> Pushing {repo}:{env.dep_hash}") for line in lines)
        tags, _ = _registry_get(registry, "stcloud-env/tags/list")
        assert env.dep_hash in tags["tags"]
        _, headers = _registry_get(registry, f"stcloud-env/manifests/{env.dep_hash}")
        digest = headers["Docker-Content-Digest"]

        lines.clear()
        again = await runtime.ensure_env(spec, lines.append)
        assert again.dep_hash == env.dep_hash
        assert not any("Pushing" in line for line in lines), "pushed once per env"

        inst = await runtime.start(app(settings, path, 9), env)
        await wait_healthy(inst.address, runtime, 9, inst.state)
        image = swarm_client.api.inspect_service(inst.state["service_id"])[
            "Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        assert image == f"{repo}@{digest}"
        await runtime.stop(9, inst.state)

    try:
        asyncio.run(scenario())
    finally:
        remove_swarm_installation(swarm_client, runtime.install_id)
        untag_pushed(swarm_client, repo)


def test_an_unreachable_registry_fails_the_build_with_a_clear_error(
        ssettings: Settings, swarm_client: Any, tmp_path: Path) -> None:
    registry = f"127.0.0.1:{free_port()}"  # nothing listens there
    runtime = SwarmRuntime(dataclasses.replace(ssettings, swarm_registry=registry),
                           swarm_client)
    path = checkout(tmp_path, "unpushed")
    try:
        with pytest.raises(BuildError, match=f"Pushing the environment to {registry} failed"):
            asyncio.run(env_for(runtime, path))
    finally:
        untag_pushed(swarm_client, f"{registry}/stcloud-env")
