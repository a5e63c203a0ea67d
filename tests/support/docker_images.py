"""What the env-image tests share: the docker command line, an env image that cannot start
an app (no shell), the Docker runtime's image builder on its own, and an environment of a
dependency set no other test has, so its image tag is that test's alone."""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes import docker_available
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.docker_api import DockerAPI
from supervisor.runtimes.docker_images import COMPLETE_LABEL, ENV_REPO, ImageBuilder
from tests.conftest import require_docker

BASE = "stcloud-base:py3.11"


def docker(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """`docker *args` (stdin from `stdin`), its output captured, never raising."""
    return subprocess.run(["docker", *args], capture_output=True, input=stdin, check=False,
                          timeout=300)


def image_without_sh(tag: str, dep_hash: str) -> None:
    """An image under `tag` carrying the completed-build label whose filesystem has no shell
    (one file only): what a start found as `stcloud-env:<hash>` once."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"not an environment\n"
        info = tarfile.TarInfo("README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    made = docker("import", "--change", f"LABEL {COMPLETE_LABEL}={dep_hash}",
                  "--change", "ENV PATH=/opt/venv/bin:/usr/bin:/bin", "-", tag,
                  stdin=buf.getvalue())
    assert made.returncode == 0, made.stderr


def image_builder(settings: Settings) -> ImageBuilder:
    """The Docker runtime's image builder on its own (a client, calls in a thread)."""
    if not docker_available():
        if require_docker():
            pytest.fail("REQUIRE_DOCKER=1 but no Docker daemon answers")
        pytest.skip("no Docker daemon")
    return ImageBuilder(settings, DockerAPI(), f"t{uuid.uuid4().hex[:7]}")


def unique_env(settings: Settings, tmp_path: Path) -> tuple[ImageBuilder, EnvSpec, str]:
    """(builder, spec, its image tag) for a checkout whose dependency set is this test's
    alone; skips when the base image is not built."""
    builder = image_builder(settings)
    if docker("image", "inspect", BASE).returncode != 0:
        pytest.skip(f"{BASE} is not built (scripts/ci-docker.sh)")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "streamlit_app.py").write_text("import streamlit as st\nst.write('hi')\n")
    # A dependency set of this test alone, so its image tag is nobody else's.
    (checkout / "requirements.txt").write_text(f"# {uuid.uuid4().hex}\nstreamlit\n")
    spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
    return builder, spec, f"{ENV_REPO}:{spec.dep_hash}"
