"""Starting an app again from what it has on disk: its current checkout and its built
environment, no clone and no build (after a platform restart that stopped the apps, or when
an app wakes up from sleep).

What is on disk is checked first (`on_disk`): the checkout must be there with the app's main
file, and the engine must still hold the environment of the checkout's dependency set, intact
(`Runtime.existing_env`, which never builds). When something is missing the caller deploys
afresh instead and says why.

Such starts are staggered (`StartSlots`): at most `start_concurrency` apps (default: the
number of CPU cores) start at once, from the runtime's start until the app answers its health
check, so that a platform with many apps does not start them all in the same second.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from backend import validation
from backend.errors import ValidationError
from backend.platform.settings import Settings
from supervisor.runtimes.base import BuildError, EnvRef, EnvSpec, Runtime


def start_limit(settings: Settings) -> int:
    """How many apps may start at once: `start_concurrency`, else the number of cores."""
    return max(settings.start_concurrency, 0) or os.cpu_count() or 1


class StartSlots:
    """At most `limit` holders at once (`async with slots:`); `busy` counts them now."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self._semaphore: asyncio.Semaphore | None = None  # made in the running loop

    async def __aenter__(self) -> StartSlots:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limit)
        await self._semaphore.acquire()
        self.busy += 1
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.busy -= 1
        assert self._semaphore is not None
        self._semaphore.release()


def checkout_problem(checkout: Path, main_file: str) -> str:
    """What is wrong with the checkout to start `main_file` from ("" nothing)."""
    if not checkout.is_dir():
        return "its checkout is missing"
    try:
        found = validation.main_file_in_checkout(checkout, main_file)
    except ValidationError:
        return f"its main file {main_file} is not in its checkout"
    return "" if found.is_file() else f"its main file {main_file} is not in its checkout"


async def on_disk(checkout: Path, main_file: str, env_spec: Callable[[], EnvSpec],
                  runtime: Runtime) -> tuple[EnvRef | None, str]:
    """(the environment to start the app with, "") when the checkout holds `main_file` and
    the engine holds the environment `env_spec()` names, intact; else (None, what is
    missing, for the logs)."""
    missing = await asyncio.to_thread(checkout_problem, checkout, main_file)
    if missing:
        return None, missing
    try:
        spec = await asyncio.to_thread(env_spec)
    except (BuildError, OSError) as e:
        return None, f"its dependency files could not be read ({e})"
    env = await runtime.existing_env(spec)
    if env is None:
        return None, "its environment is missing or unusable"
    return env, ""
