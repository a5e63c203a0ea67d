"""What the runtime tests share: a runtime of each engine (skipped, or failed under
REQUIRE_DOCKER=1, without its daemon), tiny checkouts that share the example app's
requirements (so one env image serves them all), app specs, waits for health, the cleanup of
an installation's containers and services, and `DictEngine`, an engine of plain objects for
the start and adopt templates of `Runtime`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from backend.platform.settings import Settings
from supervisor.runtimes import docker_available, swarm_available
from supervisor.runtimes.base import (
    AppSpec,
    EnvRef,
    EnvSpec,
    Instance,
    Runtime,
    Status,
    TryAgain,
    Usage,
)
from tests.conftest import EXAMPLE_APP, require_docker
from tests.support.streamlit_client import open_streamlit_session

if TYPE_CHECKING:
    from supervisor.runtimes.docker import DockerRuntime

REQUIREMENTS = (EXAMPLE_APP / "requirements.txt").read_text()
APP = """\
import os
import streamlit as st
print("MARKER", os.environ.get("MARKER", ""), flush=True)
st.title("Hello from a container")
if os.environ.get("ALLOCATE_MB"):
    hog = b"x" * (int(os.environ["ALLOCATE_MB"]) << 20)
    st.write(len(hog))
"""


PROBE = """
import json, os, socket, sys

def writable(p):
    try:
        open(p, "w").close()
        return True
    except OSError:
        return False
def reachable(ip):
    try:
        socket.create_connection((ip, 8501), timeout=2).close()
        return True
    except OSError:
        return False
caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
print(json.dumps({
    "socket": any(os.path.exists(p) for p in ("/var/run/docker.sock", "/run/docker.sock")),
    "paths": {p: os.path.exists(p) for p in sys.argv[2:]},
    "environ": dict(os.environ), "caps": caps,
    "root_writable": writable("/etc/probe"), "app_writable": writable("/app/probe"),
    "checkout_writable": writable("/run/checkout/probe"),
    "tmp_writable": writable("/tmp/probe"),
    "secrets": open("/tmp/.streamlit/secrets.toml").read(),
    "peer": reachable(sys.argv[1]),
}))
"""


def make_runtime(engine: str, settings: Settings) -> Runtime:
    if engine == "docker":
        if not docker_available():
            if require_docker():
                pytest.fail("REQUIRE_DOCKER=1 but no Docker daemon answers")
            pytest.skip("no Docker daemon")
        from supervisor.runtimes.docker import DockerRuntime
        return DockerRuntime(dataclasses.replace(settings, runtime="docker"))
    if engine == "swarm":  # CI makes a single-node swarm (scripts/ci-swarm.sh)
        if not swarm_available():
            if require_docker():
                pytest.fail("REQUIRE_DOCKER=1 but the Docker daemon is not a swarm manager "
                            "(bash scripts/ci-swarm.sh init)")
            pytest.skip("no swarm manager")
        from supervisor.runtimes.swarm import SwarmRuntime
        return SwarmRuntime(dataclasses.replace(settings, runtime="swarm"))
    from supervisor.runtimes.process import ProcessRuntime
    return ProcessRuntime(settings)


async def wait_healthy(address: tuple[str, int], runtime: Runtime, app_id: int,
                       state: dict, timeout: float = 60) -> None:
    """Returns once `address` answers /_stcore/health; fails if the instance dies first."""
    url = f"http://{address[0]}:{address[1]}/_stcore/health"
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while asyncio.get_running_loop().time() < deadline:
            assert (await runtime.poll(app_id, state)).alive, "instance died while starting"
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("instance never answered /_stcore/health")


def app_spec(settings: Settings, checkout: Path, app_id: int = 7) -> AppSpec:
    return AppSpec(app_id=app_id, name="hello", checkout=checkout,
                   main_file="streamlit_app.py",
                   log_path=settings.logs_path / str(app_id) / "app.log", memory_limit_mb=512)


def remove_containers(client: Any, label: str, timeout: float = 60) -> None:
    """Force-remove the containers with `label` and wait until they are gone; sparse (no
    inspect each). One that went by itself meanwhile, or that the daemon is already removing
    (a swarm agent removes its task containers: 409 "already in progress"), is fine."""
    import docker.errors
    for container in client.containers.list(all=True, sparse=True, filters={"label": label}):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409 or "in progress" not in str(exc):
                raise
    deadline = time.monotonic() + timeout
    while client.containers.list(all=True, sparse=True, filters={"label": label}):
        assert time.monotonic() < deadline, f"containers {label} still there after {timeout} s"
        time.sleep(0.2)


def remove_docker_installation(client: Any, runtime: DockerRuntime) -> None:
    """Removes the app and build containers of `runtime`'s installation."""
    for label in (f"stcloud.install={runtime.install_id}", f"stcloud.build={runtime.install_id}"):
        remove_containers(client, label)


def remove_swarm_installation(client: Any, install: str) -> None:
    """Removes the services and task containers of installation `install`."""
    for service in client.services.list(filters={"label": f"stcloud.install={install}"}):
        service.remove()
    remove_containers(client, f"stcloud.install={install}")


def checkout(root: Path, name: str, files: dict[str, str] | None = None) -> Path:
    """A checkout `root/name` of APP with the example app's requirements, plus `files`."""
    path = root / name
    path.mkdir(parents=True)
    for fname, content in {"streamlit_app.py": APP, "requirements.txt": REQUIREMENTS,
                           **(files or {})}.items():
        (path / fname).write_text(content)
    return path


def app(settings: Settings, path: Path, app_id: int, **kw: Any) -> AppSpec:
    """The spec of the checkout `path` as app `app_id` (512 MiB unless `kw` says)."""
    kw.setdefault("memory_limit_mb", 512)
    return AppSpec(app_id=app_id, name=path.name, checkout=path, main_file="streamlit_app.py",
                   log_path=settings.logs_path / f"{app_id}.log", **kw)


def oversized_app_log(settings: Settings, app_id: int, size: int) -> Path:
    """The app's log file, grown to `size` bytes."""
    from backend.apps.log_files import app_log_path
    log_file = app_log_path(settings, app_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as f:
        f.truncate(size)
    return log_file


async def assert_poll_observes_and_maintain_caps_the_log(
        runtime: Runtime, settings: Settings, app_id: int, state: dict[str, Any]) -> None:
    """`poll` of a running instance leaves its app log as it is; `maintain` (the
    reconciler's housekeeping step) rotates it in place once it passes the cap."""
    cap = settings.app_log_max_bytes
    log_file = oversized_app_log(settings, app_id, cap + 1)
    assert (await runtime.poll(app_id, state)).kind == "running"
    assert log_file.stat().st_size == cap + 1, "poll changed the app log"
    await runtime.maintain(app_id, state)
    assert log_file.stat().st_size < cap, "maintain did not cap the app log"
    assert log_file.with_name(log_file.name + ".1").stat().st_size == cap


async def env_for(runtime: Runtime, path: Path, lines: list[str] | None = None) -> EnvRef:
    spec = EnvSpec.from_checkout(path, "3.11", "1.67.0")
    return await runtime.ensure_env(spec, (lines if lines is not None else []).append)


async def wait_state_healthy(runtime: Runtime, app_id: int, state: dict,
                             timeout: float = 60) -> None:
    """wait_healthy on the loopback port an engine's `state` names."""
    await wait_healthy(("127.0.0.1", state["port"]), runtime, app_id, state, timeout)


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


class DictEngine(Runtime):
    """Instances are dicts in `self.running`; `conflicts` creates fail with TryAgain first
    (an old instance of that name still being removed)."""

    name = "dicts"

    def __init__(self, conflicts: int = 0) -> None:
        self.running: list[dict[str, Any]] = []
        self.conflicts = conflicts
        self.creates = 0

    async def ensure_env(self, spec: EnvSpec, log: Any) -> EnvRef:
        return EnvRef(spec.dep_hash, spec.python_version, "nowhere")

    async def current_instances(self, app_id: int) -> list[Any]:
        return [i for i in self.running if i["app_id"] == app_id]

    async def remove_instances(self, app: AppSpec, found: list[Any]) -> None:
        self.running = [i for i in self.running if i not in found]

    async def create_instance(self, app: AppSpec, env: EnvRef, token: str) -> Any:
        self.creates += 1
        if self.creates <= self.conflicts:
            raise TryAgain("Docker could not create the container: name in use", delay=0)
        return {"app_id": app.app_id, "instance": token}

    async def run_instance(self, app: AppSpec, created: Any, token: str) -> Instance:
        self.running.append(created)
        return Instance(app.app_id, ("127.0.0.1", 1), dict(created), app.generation)

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        self.running = [i for i in self.running if i != state]

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        return Status("running" if state in self.running else "missing")

    async def find_live(self) -> list[Any]:
        return list(self.running)

    async def adopt(self, found: Any) -> Instance | None:
        return Instance(found["app_id"], ("127.0.0.1", 1), dict(found))

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        return None


async def state_session(state: dict) -> dict[str, Any]:
    """A Streamlit session with the instance on the loopback port its `state` names."""
    port = state["port"]
    return await open_streamlit_session(f"ws://127.0.0.1:{port}", f"127.0.0.1:{port}")


def app_containers(client: Any, runtime: DockerRuntime, app_id: int) -> list[Any]:
    """The containers of app `app_id` in `runtime`'s installation, stopped ones too."""
    return client.containers.list(all=True, filters={"label": [
        f"stcloud.install={runtime.install_id}", f"stcloud.app_id={app_id}"]})


class StubRuntime(Runtime):
    """A runtime of no engine, for control-loop tests: every environment is already there,
    `poll` says `status`, nothing is listed or measured; subclasses fill in `start`."""

    name = "stub"
    status = Status("running")

    async def ensure_env(self, spec: EnvSpec, log: Any) -> EnvRef:
        return EnvRef("h", "3.11", "/nowhere", reused=True)

    async def start(self, app: AppSpec, env: EnvRef) -> Instance:
        raise NotImplementedError(f"{type(self).__name__} does not start instances")

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        pass

    async def poll(self, app_id: int, state: dict[str, Any]) -> Status:
        return self.status

    async def list(self) -> list[Instance]:
        return []

    async def usage(self, app_id: int, state: dict[str, Any]) -> Usage | None:
        return None


class GatedRuntime(StubRuntime):
    """Records starts and stops; `start` waits for `gate` (the leader "frozen" mid-start)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.started: list[dict[str, Any]] = []
        self.stopped: list[dict[str, Any]] = []

    async def start(self, app: AppSpec, env: EnvRef) -> Instance:
        self.entered.set()
        await self.gate.wait()
        state = {"pid": 1000 + len(self.started)}
        self.started.append(state)
        return Instance(app.app_id, ("127.0.0.1", 9), state, app.generation)

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        self.stopped.append(state)


def app_dir(settings: Any, app_id: int) -> Path:
    """apps/<id> of the data dir, as the lifecycle names it."""
    return settings.apps_path / str(app_id)


def make_app(settings: Any, app_id: int, main: str, secrets: str = "",
             files: dict[str, str] | None = None, memory_mb: int = 512,
             env_vars: dict[str, str] | None = None) -> AppSpec:
    """An app laid out as the lifecycle lays it out: apps/<id>/src-…, src, secrets.toml."""
    folder = app_dir(settings, app_id)
    tree = folder / "src-0000"
    tree.mkdir(parents=True)
    (tree / "streamlit_app.py").write_text(main)
    (tree / "requirements.txt").write_text("streamlit==1.67.0\n")
    for name, text in (files or {}).items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    os.symlink(tree.name, folder / "src")
    secrets_file = None
    if secrets:
        secrets_file = folder / "secrets.toml"
        secrets_file.write_text(secrets)
        secrets_file.chmod(0o600)
    return AppSpec(app_id=app_id, name=f"app{app_id}", checkout=folder / "src",
                   main_file="streamlit_app.py",
                   log_path=settings.logs_path / str(app_id) / "app.log",
                   memory_limit_mb=memory_mb, secrets_file=secrets_file,
                   env_vars=env_vars or {})


async def run_script(inst_address: tuple[str, int]) -> str:
    """What the app at `inst_address` showed after "RESULT " in a session's texts."""
    host = f"{inst_address[0]}:{inst_address[1]}"
    seen = await open_streamlit_session(f"ws://{host}", host, timeout=60)
    results = [t for t in seen["texts"] if t.startswith("RESULT ")]
    assert results, f"the app showed no result: {seen}"
    return results[0][len("RESULT "):]


async def start_healthy(runtime: Runtime, app: AppSpec) -> Any:
    """Builds the app's environment, starts it and waits until it is healthy."""
    spec = EnvSpec.from_checkout(app.checkout, "3.11", "1.67.0")
    env = await runtime.ensure_env(spec, lambda line: None)
    inst = await runtime.start(app, env)
    await wait_healthy(inst.address, runtime, app.app_id, inst.state, timeout=90)
    return inst
