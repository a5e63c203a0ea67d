"""An env image is reused by dependency hash only when it is one a completed build committed
and a container of it runs `sh` and the environment's Python as an app start will: an image
under that tag without `sh` (the "[FATAL tini] exec sh failed" start failure), or one without
the completed-build label, is removed and built again, and the rebuilt image is reused."""

from __future__ import annotations

import asyncio
import io
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from supervisor.runtimes import docker_available
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.docker_api import DockerAPI
from supervisor.runtimes.docker_images import COMPLETE_LABEL, ENV_REPO, ImageBuilder
from tests.conftest import require_docker

pytestmark = pytest.mark.no_database


def _docker(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], capture_output=True, input=stdin, check=False,
                          timeout=300)


def _image_without_sh(tag: str, dep_hash: str) -> None:
    """An image under `tag` carrying the completed-build label whose filesystem has no shell
    (one file only): what a start found as `stcloud-env:<hash>` once."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"not an environment\n"
        info = tarfile.TarInfo("README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    made = _docker("import", "--change", f"LABEL {COMPLETE_LABEL}={dep_hash}",
                   "--change", "ENV PATH=/opt/venv/bin:/usr/bin:/bin", "-", tag,
                   stdin=buf.getvalue())
    assert made.returncode == 0, made.stderr


def image_builder(settings) -> ImageBuilder:  # type: ignore[no-untyped-def]
    """The Docker runtime's image builder on its own (a client, calls in a thread)."""
    if not docker_available():
        if require_docker():
            pytest.fail("REQUIRE_DOCKER=1 but no Docker daemon answers")
        pytest.skip("no Docker daemon")
    return ImageBuilder(settings, DockerAPI(), f"t{uuid.uuid4().hex[:7]}")


def _runs_sh(tag: str) -> bool:
    return _docker("run", "--rm", "--network", "none", tag, "sh", "-c", "true").returncode == 0


@pytest.mark.parametrize("broken", ["no-sh", "unlabelled"])
def test_a_broken_env_image_is_rebuilt_not_reused(broken: str, settings, tmp_path: Path
                                                  ) -> None:
    builder = image_builder(settings)
    if _docker("image", "inspect", "stcloud-base:py3.11").returncode != 0:
        pytest.skip("stcloud-base:py3.11 is not built (scripts/ci-docker.sh)")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "streamlit_app.py").write_text("import streamlit as st\nst.write('hi')\n")
    # A dependency set of this test alone, so its image tag is nobody else's.
    (checkout / "requirements.txt").write_text(f"# {uuid.uuid4().hex}\nstreamlit\n")
    spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
    tag = f"{ENV_REPO}:{spec.dep_hash}"
    if broken == "no-sh":
        _image_without_sh(tag, spec.dep_hash)
    else:  # a working shell, but no build of ours committed it
        assert _docker("tag", "stcloud-base:py3.11", tag).returncode == 0
    assert _docker("image", "inspect", tag).returncode == 0

    async def scenario() -> tuple[list[str], bool, bool]:
        lines: list[str] = []
        env = await builder.ensure_env(spec, lines.append)
        again = await builder.ensure_env(spec, [].append)
        return lines, env.reused, again.reused

    try:
        lines, reused, reused_again = asyncio.run(scenario())
        assert not reused, lines[-5:]
        assert any("is not usable" in ln for ln in lines), lines[:5]
        assert reused_again  # the rebuilt image passes the check
        assert _runs_sh(tag)
    finally:
        _docker("image", "rm", "-f", tag)
