"""`Runtime.existing_env` on the process runtime: the environment of a dependency set when
it is complete and has its Streamlit, without building anything; None when it is missing
or half there (a restart then deploys afresh). Engines that cannot tell answer None."""

from __future__ import annotations

import asyncio
import dataclasses

from backend.platform.settings import Settings
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from supervisor.runtimes.process_builders import READY_MARKER
from tests.support.runtimes import DictEngine


def spec(scope: str) -> EnvSpec:
    return EnvSpec(python_version="3.11", files={"requirements.txt": b"streamlit\n"},
                   default_streamlit="1.67.0", scope=scope)


def test_only_a_complete_environment_is_reused(settings: Settings, tmp_path) -> None:
    settings = dataclasses.replace(settings, envs_dir=tmp_path / "envs")
    runtime = ProcessRuntime(settings)
    wanted = spec("restart-test")
    env_dir = settings.envs_path / wanted.dep_hash

    async def found() -> str | None:
        env = await runtime.existing_env(wanted)
        return env.location if env is not None else None

    assert asyncio.run(found()) is None, "nothing built"
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "streamlit").write_text("#!/bin/sh\n")
    assert asyncio.run(found()) is None, "a build that never finished (no ready marker)"
    (env_dir / READY_MARKER).write_text(wanted.dep_hash)
    assert asyncio.run(found()) == str(env_dir)
    (env_dir / "bin" / "streamlit").unlink()
    assert asyncio.run(found()) is None, "an environment without its streamlit"
    assert not list(settings.envs_path.glob("*.building-*")), "nothing was built"
    assert asyncio.run(runtime.existing_env(spec("another"))) is None


def test_an_engine_that_cannot_tell_answers_none() -> None:
    assert asyncio.run(DictEngine().existing_env(spec("x"))) is None
