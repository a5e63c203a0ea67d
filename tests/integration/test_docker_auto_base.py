"""The Docker runtime offers the Python versions no Debian release ships (3.10, 3.12) from the
host's own interpreters and builds their base image by itself on first use: no
`docker_base_images` set-up. The image is built once (two environments asking at the same
time share one build), runs that interpreter, and the build log names no host path."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import uuid

import pytest

from supervisor.runtimes import docker_base
from tests.support.pythons import DEBIAN_BASE, interpreter_version
from tests.support.runtimes import make_runtime

pytestmark = pytest.mark.no_database


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False,
                          timeout=120)


def test_a_host_python_base_image_is_built_on_first_use(settings) -> None:
    minor = "3.12"
    expected = interpreter_version(minor)
    if docker_base.host_suite_version() is None:
        pytest.skip("this host is not a Debian release with a base image")
    # Only the Debian image of the host's release is named; 3.12 is not configured anywhere.
    settings = dataclasses.replace(settings, docker_base_images=f"3.11={DEBIAN_BASE}")
    runtime = make_runtime("docker", settings)
    if _docker("image", "inspect", DEBIAN_BASE).returncode != 0:
        pytest.skip(f"{DEBIAN_BASE} is not built (scripts/build-base-image.sh bookworm ...)")
    repo = f"stcloud-test-base-{uuid.uuid4().hex[:8]}"  # other tests use stcloud-base:py3.12
    runtime.images.bases.repo = repo
    image = f"{repo}:py{minor}"
    assert minor in runtime.python_versions()

    async def scenario() -> tuple[list[str], list[str]]:
        first: list[str] = []
        second: list[str] = []
        built = await asyncio.gather(runtime.images.base_image(minor, first.append),
                                     runtime.images.base_image(minor, second.append))
        assert built == [image, image]
        again: list[str] = []
        assert await runtime.images.base_image(minor, again.append) == image
        assert again == []
        await runtime.close()
        return first, second

    try:
        first, second = asyncio.run(scenario())
        building = [ln for ln in first + second if "Building the base image" in ln]
        assert len(building) == 1, first + second
        assert f"CPython {expected.split()[0]}" in building[0]
        assert not any(".pyenv" in ln or "/root" in ln for ln in first + second), first
        ran = _docker("run", "--rm", "--network", "none", image, "python3", "-c",
                      "import sys; print(sys.version)")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == expected
    finally:
        _docker("image", "rm", "-f", image)
