"""DockerRuntime against the real daemon (supervisor/runtimes/docker.py): names and versions
without a daemon, then the life cycle of a container, adoption by a new runtime, output that
reaches the log without a supervisor, and isolation. Builds and their failures are in
test_runtime_docker_builds.py.

Skipped without a daemon, failed instead under REQUIRE_DOCKER=1 (CI). Apps are tiny
checkouts in tmp dirs that share the example app's requirements, so they share one env image
(`stcloud-env:<hash>`, also the contract suite's) that is built once and then reused. Each
test's settings have their own data dir, hence their own installation id: tests see only
their own containers, and the `docker_runtime` fixture (tests/integration/conftest.py)
removes them. Images are removed only where a test made one on purpose to fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes import workdir
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.docker import DockerRuntime, container_name, install_id
from supervisor.runtimes.docker_base import base_image_overrides, offered_versions
from supervisor.runtimes.docker_images import build_script
from supervisor.runtimes.docker_spec import dns_label
from tests.support.runtimes import (
    PROBE,
    app,
    app_containers,
    assert_poll_observes_and_maintain_caps_the_log,
    checkout,
    env_for,
    state_session,
    wait_for,
    wait_state_healthy,
)

# Engines only: no database is opened, so the PostgreSQL pass skips this module.
pytestmark = pytest.mark.no_database


# Without a daemon ----------------------------------------------------------------------
def test_install_id_names_and_versions(tmp_path: Path) -> None:
    a = Settings(data_dir=tmp_path / "a")
    assert install_id(a) == install_id(Settings(data_dir=tmp_path / "a"))
    assert install_id(a) != install_id(Settings(data_dir=tmp_path / "b"))
    assert dns_label("My_App.v2") == "my-app-v2"
    long = container_name("abcd1234", "x" * 100, 123456)
    assert len(long) == 63 and long.startswith("stcloud-abcd1234-xxx") and long.endswith("-123456")
    assert offered_versions(a, host_minors=()) == ["3.9", "3.11", "3.13"]
    assert offered_versions(a, host_minors=["3.12"]) == ["3.9", "3.11", "3.12", "3.13"]
    custom = dataclasses.replace(a, docker_base_images="3.12=reg/py:3.12, 3.11.4=mine:311")
    assert base_image_overrides(custom) == {"3.12": "reg/py:3.12", "3.11": "mine:311"}
    assert offered_versions(custom, host_minors=()) == ["3.9", "3.11", "3.12", "3.13"]
    assert DockerRuntime(custom).python_versions() == offered_versions(custom)


def test_build_script_steps() -> None:
    plain = build_script(EnvSpec("3.11", {"requirements.txt": b"x"}, "1.67.0"), {}, False)
    assert "apt-get" not in plain and "requirements.txt" in plain
    assert "streamlit==1.67.0" in plain  # installed only when the files bring none
    locked = build_script(EnvSpec("3.11", {"uv.lock": b"", "pyproject.toml": b"",
                                           "requirements.txt": b""}, "1.67.0",
                                  packages=("libmagic1", "sqlite3")),
                          {"UV_INDEX_URL": "https://idx/simple"}, True)
    assert "apt-get -o Acquire::https::CAInfo=/etc/stcloud/ca.crt install" in locked
    assert "libmagic1 sqlite3" in locked and "uv export" in locked
    assert "src/requirements.txt" not in locked  # uv.lock comes first, as on Community Cloud
    assert "export UV_INDEX_URL=https://idx/simple" in locked


# Against the daemon --------------------------------------------------------------------
def test_lifecycle(docker_runtime: DockerRuntime, dsettings: Settings, docker_client: Any,
                   tmp_path: Path) -> None:
    path = checkout(tmp_path, "life")

    async def scenario() -> None:
        assert (await docker_runtime.poll(1, {})).kind == "missing"
        await docker_runtime.stop(1, {})  # nothing there: a no-op
        lines: list[str] = []
        env = await env_for(docker_runtime, path, lines)
        again = await env_for(docker_runtime, path)
        assert again.reused and again.location == env.location
        assert env.location.startswith("stcloud-env:") and env.python_version == "3.11"
        if not env.reused:
            assert "==> Environment ready" in lines
        # The env image keeps nothing of its build: no build settings, mounts or command.
        config = docker_client.images.get(env.location).attrs["Config"]
        assert not [e for e in config["Env"] if e.startswith(("UV_", "SSL_", "PIP_"))]
        assert not config.get("Volumes") and config["Cmd"] == ["/bin/sh"]
        assert config["Labels"]["stcloud.dep_hash"] == env.dep_hash
        inst = await docker_runtime.start(app(dsettings, path, 1, generation=3), env)
        assert set(inst.state) == {"container_id", "name", "port"}
        assert inst.address == ("127.0.0.1", inst.state["port"]) and inst.generation == 3
        assert inst.state["name"] == f"stcloud-{docker_runtime.install_id}-life-1"
        ports = docker_client.containers.get(inst.state["container_id"]).attrs[
            "NetworkSettings"]["Ports"]["8501/tcp"]
        assert {p["HostIp"] for p in ports} == {"127.0.0.1"}
        await wait_state_healthy(docker_runtime, 1, inst.state)
        assert (await docker_runtime.poll(1, inst.state)).kind == "running"
        usage = await docker_runtime.usage(1, inst.state)
        assert usage is not None and usage.memory_bytes > 10_000_000
        assert 0.0 <= usage.cpu_percent < 200.0
        await assert_poll_observes_and_maintain_caps_the_log(docker_runtime, dsettings, 1,
                                                             inst.state)
        # Starting again replaces the instance: one container, a new one.
        second = await docker_runtime.start(app(dsettings, path, 1, generation=4), env)
        assert second.state["container_id"] != inst.state["container_id"]
        assert [c.id for c in app_containers(docker_client, docker_runtime, 1)] == \
            [second.state["container_id"]]
        await wait_state_healthy(docker_runtime, 1, second.state)
        assert (await docker_runtime.poll(1, inst.state)).kind == "running"  # found by label
        await docker_runtime.stop(1, second.state)
        assert (await docker_runtime.poll(1, second.state)).kind == "missing"
        await docker_runtime.stop(1, second.state)  # twice is fine
        assert await docker_runtime.usage(1, second.state) is None
        assert await docker_runtime.list() == []

    asyncio.run(scenario())


def test_adoption_by_a_new_runtime(docker_runtime: DockerRuntime, dsettings: Settings,
                                   docker_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "adopt")

    async def scenario() -> None:
        inst = await docker_runtime.start(app(dsettings, path, 2, generation=1),
                                          await env_for(docker_runtime, path))
        await wait_state_healthy(docker_runtime, 2, inst.state)
        fresh = DockerRuntime(dsettings)  # a restarted supervisor: own client, no memory
        try:
            adopted = await fresh.list()
            assert [(i.app_id, i.address, i.state, i.generation) for i in adopted] == \
                [(2, inst.address, inst.state, 1)]
            assert (await fresh.poll(2, adopted[0].state)).kind == "running"
            assert (await fresh.usage(2, adopted[0].state)) is not None
        finally:
            await fresh.close()
        assert len(app_containers(docker_client, docker_runtime, 2)) == 1
        other = DockerRuntime(dataclasses.replace(dsettings, data_dir=tmp_path / "other"),
                              docker_client)
        assert await other.list() == []  # another installation on the same daemon
        assert (await other.poll(2, {})).kind == "missing"
        assert (await other.poll(2, inst.state)).kind == "missing"

    asyncio.run(scenario())


def test_output_reaches_the_log_file_without_a_supervisor(
        docker_runtime: DockerRuntime, dsettings: Settings, tmp_path: Path) -> None:
    path = checkout(tmp_path, "logs")
    first = uuid.uuid4().hex

    async def scenario() -> None:
        spec = app(dsettings, path, 3, env_vars={"MARKER": first})
        inst = await docker_runtime.start(spec, await env_for(docker_runtime, path))
        await wait_state_healthy(docker_runtime, 3, inst.state)
        seen = await state_session(inst.state)
        assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", seen
        assert "Hello from a container" in seen["texts"]

        def runs() -> int:
            return spec.log_path.read_text().count(f"MARKER {first}")

        async def ran(times: int) -> bool:
            return runs() >= times
        await wait_for(lambda: ran(1), 15, "the marker in the log file")
        assert "You can now view your Streamlit app" in spec.log_path.read_text()
        # No runtime object lives now (a supervisor restart): output still arrives, once.
        await docker_runtime.close()
        await state_session(inst.state)
        await wait_for(lambda: ran(2), 15, "the second run's marker")
        await asyncio.sleep(0.5)
        assert runs() == 2

    asyncio.run(scenario())


def test_isolation(docker_runtime: DockerRuntime, dsettings: Settings, docker_client: Any,
                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STCLOUD_TEST_PLANTED", "leak")
    dsettings.data_dir.mkdir(parents=True, exist_ok=True)
    (dsettings.data_dir / "cloud.db").write_text("the database")
    mine = checkout(tmp_path, "mine", {"streamlit_app.py": "import streamlit as st\n"
                                       "st.write(st.secrets['greeting'])\n"})
    theirs = checkout(tmp_path, "theirs", {"private.txt": "their file"})
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('greeting = "secret hello"\n')

    async def scenario() -> None:
        env = await env_for(docker_runtime, mine)
        a = await docker_runtime.start(app(dsettings, mine, 5, secrets_file=secrets,
                                           env_vars={"APP_VAR": "mine"}), env)
        b = await docker_runtime.start(app(dsettings, theirs, 6), env)
        await wait_state_healthy(docker_runtime, 5, a.state)
        await wait_state_healthy(docker_runtime, 6, b.state)
        seen = await state_session(a.state)
        assert "secret hello" in seen["texts"], seen  # st.secrets reads the mounted file
        container = docker_client.containers.get(a.state["container_id"])
        peer = docker_client.containers.get(b.state["container_id"])
        peer_ip = next(iter(peer.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        paths = [str(dsettings.data_dir), str(dsettings.data_dir / "cloud.db"), str(theirs),
                 str(theirs / "private.txt"), str(dsettings.uv_cache_path)]
        code, out = container.exec_run(["/opt/venv/bin/python", "-c", PROBE, peer_ip, *paths])
        assert code == 0, out
        probe = json.loads(out)
        assert probe["socket"] is False
        assert not any(probe["paths"].values()), probe["paths"]
        assert "STCLOUD_TEST_PLANTED" not in probe["environ"]
        assert probe["environ"]["APP_VAR"] == "mine" and probe["environ"]["HOME"] == "/tmp"
        assert int(probe["caps"], 16) == 0  # every capability dropped
        # /app is the instance's writable copy; the checkout under it stays read-only.
        assert (probe["root_writable"], probe["app_writable"], probe["checkout_writable"],
                probe["tmp_writable"]) == (False, True, False, True)
        assert "secret hello" in probe["secrets"]
        assert probe["peer"] is False  # apps cannot reach each other
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False and host["ReadonlyRootfs"] is True
        assert host["Memory"] == host["MemorySwap"] == 512 << 20
        sources = {m["Source"] for m in container.attrs["Mounts"]}
        assert sources <= {str(mine.resolve()), str(secrets.resolve()),
                           str((dsettings.logs_path / "5.log").resolve()),
                           str(dsettings.ca_bundle_path), workdir.SCRIPT}
        script = [m for m in container.attrs["Mounts"] if m["Source"] == workdir.SCRIPT]
        assert all(not m["RW"] for m in script), script  # our copy script, read-only

    asyncio.run(scenario())
