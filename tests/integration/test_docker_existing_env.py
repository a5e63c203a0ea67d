"""`existing_env` on the Docker engines (what a platform restart starts an app with): the
env image of a dependency set only when a completed build committed it and its container
runs `sh` and the environment's Python; an image under that tag without `sh` is not
answered, and nothing is ever built by the question."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.docker_images import ENV_REPO
from tests.integration.test_docker_env_reuse import _docker, _image_without_sh, image_builder

pytestmark = pytest.mark.no_database


def test_only_a_complete_env_image_is_answered(settings, tmp_path: Path) -> None:
    builder = image_builder(settings)
    if _docker("image", "inspect", "stcloud-base:py3.11").returncode != 0:
        pytest.skip("stcloud-base:py3.11 is not built (scripts/ci-docker.sh)")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "streamlit_app.py").write_text("import streamlit as st\nst.write('hi')\n")
    (checkout / "requirements.txt").write_text(f"# {uuid.uuid4().hex}\nstreamlit\n")
    spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
    tag = f"{ENV_REPO}:{spec.dep_hash}"

    async def found() -> str | None:
        env = await builder.existing_env(spec)
        return env.location if env is not None else None

    try:
        assert asyncio.run(found()) is None, "no image yet"
        assert _docker("image", "inspect", tag).returncode != 0, "the question built nothing"
        _image_without_sh(tag, spec.dep_hash)
        assert asyncio.run(found()) is None, "an image that cannot start an app"
        _docker("image", "rm", "-f", tag)
        built = asyncio.run(builder.ensure_env(spec, [].append))
        assert not built.reused
        assert asyncio.run(found()) == built.location == tag
    finally:
        _docker("image", "rm", "-f", tag)
