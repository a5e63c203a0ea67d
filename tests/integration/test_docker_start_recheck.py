"""When tini cannot exec `sh` in an app's container, the Docker runtime asks the image, not
the container: a check container of the same image runs sh, so the start is made once
more and the image keeps its tag (it is shared by every app of those dependencies, and by
other supervisors on the daemon); only an image whose check fails too is untagged
(test_runtime_docker_builds.py). A container that keeps failing while its image passes the
check is reported as the container's failure, not as a broken image.

The failing container is made for real: its PATH (the only one tini searches) names no
directory, so tini exits 127 with "exec sh failed: No such file or directory".
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.base import EnvSpec, StartError
from supervisor.runtimes.docker import DockerRuntime
from supervisor.runtimes.docker_api import DockerAPI
from tests.support.runtimes import app, app_containers, checkout, remove_docker_installation

pytestmark = [pytest.mark.no_database, pytest.mark.timeout(600)]


class ShellessContainers(DockerAPI):
    """The first `failures` app containers get a PATH with no shell on it; the start's look
    at such a container waits until it has exited (as a loaded host orders it)."""

    def __init__(self, client: Any, failures: int) -> None:
        super().__init__(client)
        self.failures = failures
        self.broken: set[str] = set()

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "")
        if name == "create" and "environment" in kwargs and self.failures > 0:
            self.failures -= 1
            kwargs = {**kwargs, "environment": {**kwargs["environment"], "PATH": "/nowhere"}}
            made = await super().call(fn, *args, **kwargs)
            self.broken.add(made.id)
            return made
        if name == "reload" and not args and not kwargs and \
                getattr(fn.__self__, "id", None) in self.broken:
            await super().call(fn.__self__.wait, timeout=60)
        return await super().call(fn, *args, **kwargs)


def _env(runtime: DockerRuntime, settings: Settings, path: Path) -> Any:
    spec = EnvSpec.from_checkout(path, "3.11", settings.default_streamlit)
    return asyncio.run(runtime.ensure_env(spec, lambda line: None))


def test_a_container_that_cannot_exec_sh_is_started_again_and_the_image_kept(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "recheck")
    api = ShellessContainers(docker_client, failures=1)
    runtime = DockerRuntime(dsettings, api=api)
    try:
        env = _env(runtime, dsettings, path)
        image_id = docker_client.images.get(env.location).id
        instance = asyncio.run(runtime.start(app(dsettings, path, 41), env))
        assert api.broken and api.failures == 0, "the first container could not exec sh"
        running = app_containers(docker_client, runtime, 41)
        assert [c.id for c in running] == [instance.state["container_id"]]
        assert running[0].id not in api.broken and running[0].status == "running"
        assert docker_client.images.get(env.location).id == image_id, "still tagged"
    finally:
        remove_docker_installation(docker_client, runtime)


def test_a_container_that_keeps_failing_is_not_called_a_broken_image(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "rebroken")
    api = ShellessContainers(docker_client, failures=2)
    runtime = DockerRuntime(dsettings, api=api)
    try:
        env = _env(runtime, dsettings, path)
        image_id = docker_client.images.get(env.location).id
        with pytest.raises(StartError) as failed:
            asyncio.run(runtime.start(app(dsettings, path, 42), env))
    finally:
        remove_docker_installation(docker_client, runtime)
    message = str(failed.value)
    assert len(api.broken) == 2, "one start, then one more"
    assert "exec sh failed" in message and "is broken" not in message, message
    assert docker_client.images.get(env.location).id == image_id, "the image keeps its tag"
    assert not app_containers(docker_client, runtime, 42)


class RunsWithoutShell(DockerAPI):
    """The first app container runs (a plain `sleep`), but finds no sh: what a container
    started on an empty root filesystem looks like to the runtime's check."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.broken: list[str] = []

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "create" and "environment" in kwargs \
                and not self.broken:
            kwargs = {**kwargs, "command": ["/bin/sleep", "120"],
                      "environment": {**kwargs["environment"], "PATH": "/nowhere"}}
            made = await super().call(fn, *args, **kwargs)
            self.broken.append(made.id)
            return made
        return await super().call(fn, *args, **kwargs)


def test_a_running_container_without_sh_is_replaced_before_it_is_handed_out(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "nosh")
    api = RunsWithoutShell(docker_client)
    runtime = DockerRuntime(dsettings, api=api)
    try:
        env = _env(runtime, dsettings, path)
        instance = asyncio.run(runtime.start(app(dsettings, path, 43), env))
        assert api.broken and instance.state["container_id"] not in api.broken
        assert [c.id for c in app_containers(docker_client, runtime, 43)] == \
            [instance.state["container_id"]], "the container without sh is removed"
    finally:
        remove_docker_installation(docker_client, runtime)
