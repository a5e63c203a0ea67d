"""Runtime engines behind one contract (`base.Runtime`)."""

from __future__ import annotations

import logging

from backend.settings import Settings
from supervisor.runtimes.base import Runtime

log = logging.getLogger(__name__)


def docker_available() -> bool:
    """True when a Docker daemon answers on this host."""
    try:
        import docker
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def swarm_available() -> bool:
    """True when a Docker daemon answers and is a swarm manager."""
    from supervisor.runtimes.swarm import swarm_problem
    return not swarm_problem()


class RuntimeUnavailable(RuntimeError):
    """The engine the settings ask for cannot run here; the message says what to do."""


def select_runtime(settings: Settings) -> Runtime:
    """The engine the `runtime` setting asks for; `auto` prefers Docker when it answers.
    Swarm is never chosen by `auto`: only `runtime = "swarm"` selects it."""
    choice = settings.runtime
    if choice == "auto":
        choice = "docker" if docker_available() else "process"
    if choice == "swarm":
        from supervisor.runtimes.swarm import SwarmRuntime, swarm_problem
        problem = swarm_problem()
        if problem:
            raise RuntimeUnavailable(problem)
        return SwarmRuntime(settings)
    if choice == "docker":
        from supervisor.runtimes.docker import DockerRuntime
        return DockerRuntime(settings)
    from supervisor.runtimes.process import ProcessRuntime
    return ProcessRuntime(settings)
