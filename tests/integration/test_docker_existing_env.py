"""`existing_env` on the Docker engines (what a platform restart starts an app with): the
env image of a dependency set only when a completed build committed it and its container
runs `sh` and the environment's Python; an image under that tag without `sh` is not
answered, and nothing is ever built by the question."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.docker_images import docker, image_without_sh, unique_env

pytestmark = pytest.mark.no_database


def test_only_a_complete_env_image_is_answered(settings, tmp_path: Path) -> None:
    builder, spec, tag = unique_env(settings, tmp_path)

    async def found() -> str | None:
        env = await builder.existing_env(spec)
        return env.location if env is not None else None

    try:
        assert asyncio.run(found()) is None, "no image yet"
        assert docker("image", "inspect", tag).returncode != 0, "the question built nothing"
        image_without_sh(tag, spec.dep_hash)
        assert asyncio.run(found()) is None, "an image that cannot start an app"
        docker("image", "rm", "-f", tag)
        built = asyncio.run(builder.ensure_env(spec, [].append))
        assert not built.reused
        assert asyncio.run(found()) == built.location == tag
    finally:
        docker("image", "rm", "-f", tag)
