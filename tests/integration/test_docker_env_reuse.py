"""An env image is reused by dependency hash only when it is one a completed build committed
and a container of it runs `sh` and the environment's Python as an app start will: an image
under that tag without `sh` (the "[FATAL tini] exec sh failed" start failure), or one without
the completed-build label, is removed and built again, and the rebuilt image is reused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.docker_images import BASE, docker, image_without_sh, unique_env

pytestmark = pytest.mark.no_database


def _runs_sh(tag: str) -> bool:
    return docker("run", "--rm", "--network", "none", tag, "sh", "-c", "true").returncode == 0


@pytest.mark.parametrize("broken", ["no-sh", "unlabelled"])
def test_a_broken_env_image_is_rebuilt_not_reused(broken: str, settings, tmp_path: Path
                                                  ) -> None:
    builder, spec, tag = unique_env(settings, tmp_path)
    if broken == "no-sh":
        image_without_sh(tag, spec.dep_hash)
    else:  # a working shell, but no build of ours committed it
        assert docker("tag", BASE, tag).returncode == 0
    assert docker("image", "inspect", tag).returncode == 0

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
        docker("image", "rm", "-f", tag)
