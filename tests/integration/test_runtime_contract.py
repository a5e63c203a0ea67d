"""The Runtime contract (supervisor/runtimes/base.py), one suite for every engine.

Each engine must: build an environment once per dependency hash and reuse it; start an
instance that answers /_stcore/health; poll it running; report usage; list it to a fresh
engine object (adoption after a supervisor restart); stop it (twice is fine); poll it gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.platform.settings_load import load_settings
from supervisor.runtimes.base import (
    CREATE_ATTEMPTS,
    AppSpec,
    BuildError,
    EnvRef,
    EnvSpec,
    Runtime,
    StartError,
)
from tests.conftest import EXAMPLE_APP
from tests.support.runtimes import (
    DictEngine,
    app,
    app_spec,
    checkout,
    env_for,
    make_runtime,
    wait_for,
    wait_healthy,
)
from tests.support.streamlit_client import open_streamlit_session

# Engines only: no database is opened, so the PostgreSQL pass skips this module.
pytestmark = pytest.mark.no_database

ENGINES = ["process", "docker", "swarm"]


@pytest.mark.parametrize("engine", ENGINES)
def test_contract_start_poll_list_stop(engine: str, settings, tmp_path: Path) -> None:
    runtime = make_runtime(engine, settings)
    checkout = tmp_path / "checkout"
    shutil.copytree(EXAMPLE_APP, checkout)
    spec = EnvSpec.from_checkout(checkout, settings.default_python, settings.default_streamlit)

    async def scenario() -> None:
        lines: list[str] = []
        env = await runtime.ensure_env(spec, lines.append)
        again = await runtime.ensure_env(spec, lines.append)
        assert again.reused and again.location == env.location
        assert (await runtime.poll(7, {})).kind == "missing"
        inst = await runtime.start(app_spec(settings, checkout), env)
        try:
            await wait_healthy(inst.address, runtime, 7, inst.state)
            assert (await runtime.poll(7, inst.state)).kind == "running"
            usage = await runtime.usage(7, inst.state)
            assert usage is not None and usage.memory_bytes > 10_000_000
            # PSS per instance from this host's /proc (the engines all run here).
            assert len(usage.instances) == 1 and usage.uss_bytes, usage
            assert usage.instances[0].memory_bytes == usage.memory_bytes
            adopted = await make_runtime(engine, settings).list()
            assert [(i.app_id, i.address) for i in adopted] == [(7, inst.address)]
        finally:
            await runtime.stop(7, inst.state)
        assert not (await runtime.poll(7, inst.state)).alive
        await runtime.stop(7, inst.state)  # idempotent
        assert await runtime.list() == []
        assert await runtime.usage(7, inst.state) is None
        await runtime.close()

    asyncio.run(scenario())


def kill_instance(engine: str, state: dict) -> None:
    """Kill an instance behind the engine's back, as a crash would."""
    if engine == "process":
        os.killpg(state["pid"], signal.SIGKILL)
    elif engine == "swarm":
        import docker
        client = docker.from_env()
        for container in client.containers.list(filters={
                "label": f"com.docker.swarm.service.id={state['service_id']}"}):
            container.kill()
    else:
        import docker
        docker.from_env().containers.get(state["container_id"]).kill()


@pytest.mark.parametrize("engine", ENGINES)
def test_contract_exit_is_reported(engine: str, settings, tmp_path: Path) -> None:
    runtime = make_runtime(engine, settings)
    checkout = tmp_path / "checkout"
    shutil.copytree(EXAMPLE_APP, checkout)
    spec = EnvSpec.from_checkout(checkout, settings.default_python, settings.default_streamlit)

    async def scenario() -> None:
        env = await runtime.ensure_env(spec, lambda line: None)
        inst = await runtime.start(app_spec(settings, checkout, 8), env)
        try:
            await wait_healthy(inst.address, runtime, 8, inst.state)
            kill_instance(engine, inst.state)
            deadline = asyncio.get_running_loop().time() + 30
            while (await runtime.poll(8, inst.state)).alive:
                assert asyncio.get_running_loop().time() < deadline, "exit never reported"
                await asyncio.sleep(0.1)
            assert (await runtime.poll(8, inst.state)).kind == "exited"
        finally:
            await runtime.stop(8, inst.state)
        assert await runtime.list() == []

    asyncio.run(scenario())


@pytest.mark.parametrize("engine", ENGINES)
def test_contract_bad_requirements_raise_build_error(engine: str, settings) -> None:
    runtime = make_runtime(engine, settings)
    spec = EnvSpec(settings.default_python,
                   {"requirements.txt": b"this-package-does-not-exist-stcloud==0.0.1\n"},
                   settings.default_streamlit)
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        asyncio.run(runtime.ensure_env(spec, lines.append))
    assert "this-package-does-not-exist-stcloud" in str(info.value)
    assert not (settings.envs_path / spec.dep_hash).exists()


@pytest.mark.parametrize("engine", ["docker", "swarm"])
def test_contract_memory_limit_is_reported_as_oom(engine: str, settings, tmp_path: Path) -> None:
    """An app that allocates past its memory limit is killed and polled `oom` (Docker's own
    OOM flag; the process runtime's cgroup and watchdog have tests of their own)."""
    runtime = make_runtime(engine, settings)
    path = checkout(tmp_path, "hog")

    async def scenario() -> None:
        spec = app(settings, path, 4, memory_limit_mb=128, env_vars={"ALLOCATE_MB": "400"})
        inst = await runtime.start(spec, await env_for(runtime, path))
        try:
            await wait_healthy(inst.address, runtime, 4, inst.state)
            host, port = inst.address
            try:  # runs the script; the connection dies with it
                await open_streamlit_session(f"ws://{host}:{port}", f"{host}:{port}")
            except aiohttp.ClientError:
                pass

            async def dead() -> bool:
                return not (await runtime.poll(4, inst.state)).alive
            await wait_for(dead, 30, "the instance to be killed")
            status = await runtime.poll(4, inst.state)
            assert status.kind == "oom", status
            assert await runtime.list() == []
        finally:
            await runtime.stop(4, inst.state)
            await runtime.close()

    asyncio.run(scenario())


# The start and adopt templates of `Runtime`, with an engine of plain objects -------------
def test_start_replaces_unless_alongside_and_retries_try_again(tmp_path: Path) -> None:
    spec = app_spec(load_settings(env={}, data_dir=tmp_path), tmp_path, 5)
    env = EnvRef("h", "3.11", "nowhere")

    async def scenario() -> None:
        engine = DictEngine(conflicts=3)
        first = await engine.start(spec, env)
        assert engine.creates == 4 and first.state == {"app_id": 5, "instance": ""}
        beside = await engine.start(dataclasses.replace(spec, alongside=True), env)
        assert beside.state["instance"] and len(engine.running) == 2  # the first one stays
        again = await engine.start(spec, env)
        assert engine.running == [again.state]  # both replaced
        assert [i.state for i in await engine.list()] == [again.state]
        stuck = DictEngine(conflicts=1000)
        with pytest.raises(StartError, match="name in use"):
            await stuck.start(spec, env)
        assert stuck.creates == CREATE_ATTEMPTS

    asyncio.run(scenario())


def test_an_engine_keeping_a_template_must_fill_in_its_steps() -> None:
    with pytest.raises(TypeError, match="create_instance, run_instance"):
        class Half(Runtime):  # start's replace steps only
            name = "half"

            async def current_instances(self, app_id: int) -> list[Any]:
                return []

            async def remove_instances(self, app: AppSpec, found: list[Any]) -> None:
                return None
