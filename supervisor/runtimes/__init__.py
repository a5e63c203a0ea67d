"""Runtime engines behind one contract (`base.Runtime`)."""

from __future__ import annotations

import logging

from backend.platform.settings import Settings
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
    except Exception:  # any failure means "not available"
        return False


def swarm_available() -> bool:
    """True when a Docker daemon answers and is a swarm manager."""
    from supervisor.runtimes.swarm_spec import swarm_problem
    return not swarm_problem()


class RuntimeUnavailable(RuntimeError):
    """The engine the settings ask for cannot run here; the message says what to do."""


ENGINES = ("process", "docker", "swarm")


def engine_problem(engine: str) -> str:
    """Why `engine` cannot run here, for a person; "" when it can."""
    if engine == "docker" and not docker_available():
        return "no Docker daemon answers (is it running, and may this user reach its socket?)"
    if engine == "swarm":
        from supervisor.runtimes.swarm_spec import swarm_problem
        return swarm_problem()
    return ""


def auto_engine() -> str:
    """What `runtime = auto` means on a host where nothing was recorded yet: Docker when a
    daemon answers, else the process runtime (never the swarm)."""
    return "docker" if docker_available() else "process"


def make_runtime(engine: str, settings: Settings) -> Runtime:
    """The runtime object of a named engine (process, docker or swarm)."""
    if engine == "swarm":
        from supervisor.runtimes.swarm import SwarmRuntime
        from supervisor.runtimes.swarm_spec import swarm_problem
        problem = swarm_problem()
        if problem:
            raise RuntimeUnavailable(problem)
        return SwarmRuntime(settings)
    if engine == "docker":
        from supervisor.runtimes.docker import DockerRuntime
        return DockerRuntime(settings)
    if engine == "process":
        from supervisor.runtimes.process import ProcessRuntime
        return ProcessRuntime(settings)
    raise RuntimeUnavailable(f"Unknown engine {engine!r}: use one of {', '.join(ENGINES)}.")


def select_runtime(settings: Settings) -> Runtime:
    """The engine the `runtime` setting asks for; `auto` prefers Docker when it answers.
    Swarm is never chosen by `auto`: only `runtime = "swarm"` selects it. The supervisor
    starts through supervisor/control/engine_choice.py instead, which keeps the recorded engine."""
    choice = auto_engine() if settings.runtime == "auto" else settings.runtime
    return make_runtime(choice, settings)
