"""DockerRuntime's environment builds against the real daemon (supervisor/runtimes/
docker_images.py): packages.txt, bad input that leaves no image, a cancelled build, the base
image and the per-scope package cache, and containers or env images that fail at start.

Skipped without a daemon, failed instead under REQUIRE_DOCKER=1 (CI); the installation's
containers are removed by the `docker_runtime` fixture (tests/integration/conftest.py).
Images are removed only where a test made one on purpose to fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.base import BuildError, EnvRef, EnvSpec
from supervisor.runtimes.docker import DockerRuntime
from supervisor.runtimes.docker_api import DockerAPI
from tests.support.runtimes import (
    REQUIREMENTS,
    app,
    app_containers,
    checkout,
    env_for,
    remove_containers,
    remove_docker_installation,
    state_session,
    wait_state_healthy,
)

# Engines only: no database is opened, so the PostgreSQL pass skips this module.
pytestmark = pytest.mark.no_database


def test_packages_txt_installs_debian_packages(docker_runtime: DockerRuntime, dsettings: Settings,
                                               docker_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "sqlite", {
        "packages.txt": "# the sqlite3 command line\nsqlite3\n",
        "streamlit_app.py": "import subprocess\nimport streamlit as st\n"
                            "out = subprocess.run(['sqlite3', ':memory:', 'select 6*7'],\n"
                            "                     capture_output=True, text=True).stdout\n"
                            "st.write(f'answer {out.strip()}')\n"})

    async def scenario() -> None:
        lines: list[str] = []
        env = await env_for(docker_runtime, path, lines)
        if not env.reused:
            assert any("apt-get install sqlite3" in line for line in lines)
        inst = await docker_runtime.start(app(dsettings, path, 7), env)
        await wait_state_healthy(docker_runtime, 7, inst.state)
        seen = await state_session(inst.state)
        assert "answer 42" in seen["texts"], seen

    asyncio.run(scenario())


def assert_no_image(client: Any, env_image: str) -> None:
    import docker.errors
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(env_image)


@pytest.mark.parametrize("files, expected", [
    ({"packages.txt": "stcloud-no-such-debian-package\n"},
     ["packages.txt", "Unable to locate package stcloud-no-such-debian-package"]),
    ({"requirements.txt": "stcloud-no-such-distribution==0.0.1\n"},
     ["Python dependencies", "stcloud-no-such-distribution"]),
])
def test_bad_input_raises_build_error_and_leaves_no_image(
        docker_runtime: DockerRuntime, docker_client: Any, tmp_path: Path,
        files: dict[str, str], expected: list[str]) -> None:
    path = checkout(tmp_path, "bad", files)
    spec = EnvSpec.from_checkout(path, "3.11", "1.67.0")
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        asyncio.run(docker_runtime.ensure_env(spec, lines.append))
    for text in expected:
        assert text in str(info.value)
    assert lines, "build output was not streamed"
    assert_no_image(docker_client, f"stcloud-env:{spec.dep_hash}")
    assert not docker_client.containers.list(
        all=True, filters={"label": f"stcloud.build={docker_runtime.install_id}"})


def test_cancelled_build_kills_its_container(docker_runtime: DockerRuntime, docker_client: Any,
                                             tmp_path: Path) -> None:
    path = checkout(tmp_path, "cancel",
                    {"requirements.txt": f"# {uuid.uuid4().hex}\n{REQUIREMENTS}"})
    spec = EnvSpec.from_checkout(path, "3.11", "1.67.0")

    async def scenario() -> None:
        started = asyncio.Event()

        def log(line: str) -> None:
            if line.startswith("==> phase resolve"):  # the build container runs
                started.set()
        task = asyncio.ensure_future(docker_runtime.ensure_env(spec, log))
        await asyncio.wait_for(started.wait(), 60)
        assert docker_client.containers.list(
            filters={"label": f"stcloud.build={docker_runtime.install_id}"})
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert not docker_client.containers.list(
        all=True, filters={"label": f"stcloud.build={docker_runtime.install_id}"})
    assert_no_image(docker_client, f"stcloud-env:{spec.dep_hash}")


def test_packages_txt_must_name_packages(docker_runtime: DockerRuntime) -> None:
    spec = EnvSpec("3.11", {"packages.txt": b"-o Debug::x=1\n"}, "1.67.0",
                   packages=("-o Debug::x=1",))
    with pytest.raises(BuildError, match="not a Debian package"):
        asyncio.run(docker_runtime.ensure_env(spec, lambda line: None))


def test_configured_base_image_must_exist(docker_runtime: DockerRuntime, dsettings: Settings,
                                          docker_client: Any, tmp_path: Path) -> None:
    custom = DockerRuntime(dataclasses.replace(
        dsettings, docker_base_images="3.12=stcloud-no-such-image:latest"), docker_client)
    spec = EnvSpec("3.12", {"requirements.txt": REQUIREMENTS.encode()}, "1.67.0")
    with pytest.raises(BuildError, match="docker_base_images"):
        asyncio.run(custom.ensure_env(spec, lambda line: None))
    with pytest.raises(BuildError, match="not offered"):
        asyncio.run(custom.ensure_env(dataclasses.replace(spec, python_version="2.7"),
                                      lambda line: None))


def test_a_scoped_build_uses_a_package_cache_of_its_own(
        docker_runtime: DockerRuntime, dsettings: Settings, tmp_path: Path) -> None:
    """env_sharing = workspace: the build container gets the scope's own uv cache, not the
    shared one (package build code of one workspace cannot write where another's builds
    read)."""
    scope = f"workspace-test-{uuid.uuid4().hex[:8]}"
    cache = dsettings.uv_cache_for(scope)
    path = checkout(tmp_path, "scoped", {"requirements.txt": "stcloud-no-such-distribution\n"})
    spec = dataclasses.replace(EnvSpec.from_checkout(path, "3.11", "1.67.0"), scope=scope)
    assert spec.dep_hash != EnvSpec.from_checkout(path, "3.11", "1.67.0").dep_hash
    try:
        with pytest.raises(BuildError, match="stcloud-no-such-distribution"):
            asyncio.run(docker_runtime.ensure_env(spec, lambda line: None))
        assert (cache / "CACHEDIR.TAG").is_file(), "uv did not use the scope's cache"
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_a_container_that_died_at_start_is_reported_by_its_own_output(
        docker_client: Any) -> None:
    """What start() quotes when the new container is not running: its own exit code and
    last output lines (bounded), not the app log, which the instance serving alongside
    writes too."""
    from supervisor.runtimes.docker_api import exit_report
    script = ("exec >&2; for i in $(seq 1 50); do echo line$i; done; "  # one stream: ordered
              "echo 'exec: streamlit: not found' >&2; exit 127")
    container = docker_client.containers.run(
        "stcloud-base:py3.11", ["sh", "-c", script], detach=True,
        labels={"stcloud.test": "exit-report"})
    try:
        assert container.wait(timeout=60)["StatusCode"] == 127
        report = exit_report(container, "app log: traceback")
    finally:
        remove_containers(docker_client, "stcloud.test=exit-report")
    assert report.startswith("status=exited exit_code=127"), report
    assert "exec: streamlit: not found" in report
    assert "line50" in report and "line10\n" not in report, "the last lines only"
    assert report.endswith("app log: traceback"), report


class ExitsBeforeReload(DockerAPI):
    """start()'s look at the new container happens only once the container has exited:
    the order a loaded host produces when the app dies at once."""

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "reload" and not args and not kwargs:
            await super().call(fn.__self__.wait, timeout=60)
        return await super().call(fn, *args, **kwargs)


def test_a_new_container_that_dies_at_once_is_reported_by_its_own_state(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    """An instance started alongside a serving one dies at once (here: its image has no
    Streamlit): StartError names its exit code, never the serving instance's log lines."""
    from supervisor.runtimes.base import StartError
    docker_runtime = DockerRuntime(dsettings, api=ExitsBeforeReload(docker_client))
    spec = app(dsettings, checkout(tmp_path, "dies"), 31, alongside=True)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    spec.log_path.write_text("OLD INSTANCE: Uvicorn server started on 0.0.0.0:8501\n")
    env = EnvRef("none", "3.11", "stcloud-base:py3.11")  # no venv, no streamlit
    try:
        with pytest.raises(StartError) as failed:
            asyncio.run(docker_runtime.start(spec, env))
    finally:
        remove_docker_installation(docker_client, docker_runtime)
    message = str(failed.value)
    assert "OLD INSTANCE" not in message, message
    assert "status=exited exit_code=127" in message, message
    assert "not found" in message, "its own lines of the app log"
    assert not app_containers(docker_client, docker_runtime, 31), "the failed container is removed"


def test_an_env_image_without_a_shell_is_reported_as_broken(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    """An env image with no /bin/sh (tini: "exec sh failed", exit 127): StartError says the
    environment image is broken and that a Reboot rebuilds it, before Docker's report; the
    image is untagged, so that reboot (or the next deploy) builds it instead of reusing it."""
    import contextlib
    import io
    import tarfile

    import docker.errors

    from supervisor.runtimes.base import StartError
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:  # one empty file: no shell at all
        tar.addfile(tarfile.TarInfo("etc/stcloud-empty"), io.BytesIO(b""))
    image = "stcloud-test-noshell:latest"
    docker_client.api.import_image_from_data(data.getvalue(), repository="stcloud-test-noshell",
                                             tag="latest")
    docker_runtime = DockerRuntime(dsettings, api=ExitsBeforeReload(docker_client))
    spec = app(dsettings, checkout(tmp_path, "noshell"), 32)
    try:
        with pytest.raises(StartError) as failed:
            asyncio.run(docker_runtime.start(spec, EnvRef("none", "3.11", image)))
        left = docker_client.images.list(name="stcloud-test-noshell")
    finally:
        remove_docker_installation(docker_client, docker_runtime)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image, force=True)
    assert not left, "the broken image is still tagged: the next start would reuse it"
    message = str(failed.value)
    assert message.startswith(f"The environment image {image} is broken"), message
    assert "Reboot the app" in message, message
    assert "exit_code=127" in message and "exec sh failed" in message, message
