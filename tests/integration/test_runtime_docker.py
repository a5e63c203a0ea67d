"""DockerRuntime against the real daemon (supervisor/runtimes/docker.py, docker_images.py).

Skipped without a daemon, failed instead under REQUIRE_DOCKER=1 (CI). Apps are tiny
checkouts in tmp dirs that share the example app's requirements, so they share one env image
(`stcloud-env:<hash>`, also the contract suite's) that is built once and then reused. Each
test's settings have their own data dir, hence their own installation id: tests see only
their own containers, and the finalizer removes them. Images are removed only where a test
made one on purpose to fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes import workdir
from supervisor.runtimes.base import AppSpec, BuildError, EnvRef, EnvSpec, Runtime
from supervisor.runtimes.docker import DockerRuntime, container_name, install_id
from supervisor.runtimes.docker_api import DockerAPI
from supervisor.runtimes.docker_base import base_image_overrides, offered_versions
from supervisor.runtimes.docker_images import build_script
from supervisor.runtimes.docker_spec import dns_label
from tests.conftest import EXAMPLE_APP
from tests.integration.test_runtime_contract import wait_healthy as contract_wait_healthy
from tests.support.streamlit_client import open_streamlit_session

# Engines only: no database is opened, so the PostgreSQL pass skips this module.
pytestmark = pytest.mark.no_database

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


# Without a daemon ----------------------------------------------------------------------
def test_install_id_names_and_versions(tmp_path: Path) -> None:
    a = Settings(data_dir=tmp_path / "a")
    assert install_id(a) == install_id(Settings(data_dir=tmp_path / "a"))
    assert install_id(a) != install_id(Settings(data_dir=tmp_path / "b"))
    assert dns_label("My_App.v2") == "my-app-v2"
    long = container_name("abcd1234", "x" * 100, 123456)
    assert len(long) == 63 and long.startswith("stcloud-abcd1234-xxx") and long.endswith("-123456")
    assert offered_versions(a, host_minors=()) == ["3.9", "3.11", "3.13"]
    assert offered_versions(a, host_minors=["3.12"]) == ["3.9", "3.11", "3.12", "3.13"]
    custom = dataclasses.replace(a, docker_base_images="3.12=reg/py:3.12, 3.11.4=mine:311")
    assert base_image_overrides(custom) == {"3.12": "reg/py:3.12", "3.11": "mine:311"}
    assert offered_versions(custom, host_minors=()) == ["3.9", "3.11", "3.12", "3.13"]
    assert DockerRuntime(custom).python_versions() == offered_versions(custom)


def test_build_script_steps() -> None:
    plain = build_script(EnvSpec("3.11", {"requirements.txt": b"x"}, "1.67.0"), {}, False)
    assert "apt-get" not in plain and "requirements.txt" in plain
    assert "streamlit==1.67.0" in plain  # installed only when the files bring none
    locked = build_script(EnvSpec("3.11", {"uv.lock": b"", "pyproject.toml": b"",
                                           "requirements.txt": b""}, "1.67.0",
                                  packages=("libmagic1", "sqlite3")),
                          {"UV_INDEX_URL": "https://idx/simple"}, True)
    assert "apt-get -o Acquire::https::CAInfo=/etc/stcloud/ca.crt install" in locked
    assert "libmagic1 sqlite3" in locked and "uv export" in locked
    assert "requirements.txt" not in locked  # uv.lock comes first, as on Community Cloud
    assert "export UV_INDEX_URL=https://idx/simple" in locked


# Against the daemon --------------------------------------------------------------------
@pytest.fixture
def dsettings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, runtime="docker")


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


def remove_installation(client: Any, runtime: DockerRuntime) -> None:
    for label in (f"stcloud.install={runtime.install_id}", f"stcloud.build={runtime.install_id}"):
        remove_containers(client, label)


@pytest.fixture
def runtime(dsettings: Settings, docker_client: Any) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(dsettings, docker_client)
    yield rt
    remove_installation(docker_client, rt)


def checkout(root: Path, name: str, files: dict[str, str] | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True)
    for fname, content in {"streamlit_app.py": APP, "requirements.txt": REQUIREMENTS,
                           **(files or {})}.items():
        (path / fname).write_text(content)
    return path


def app(settings: Settings, path: Path, app_id: int, **kw: Any) -> AppSpec:
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


async def wait_healthy(runtime: Runtime, app_id: int, state: dict, timeout: float = 60) -> None:
    await contract_wait_healthy(("127.0.0.1", state["port"]), runtime, app_id, state, timeout)


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def session(state: dict) -> dict[str, Any]:
    port = state["port"]
    return await open_streamlit_session(f"ws://127.0.0.1:{port}", f"127.0.0.1:{port}")


def app_containers(client: Any, runtime: DockerRuntime, app_id: int) -> list[Any]:
    return client.containers.list(all=True, filters={"label": [
        f"stcloud.install={runtime.install_id}", f"stcloud.app_id={app_id}"]})


def test_lifecycle(runtime: DockerRuntime, dsettings: Settings, docker_client: Any,
                   tmp_path: Path) -> None:
    path = checkout(tmp_path, "life")

    async def scenario() -> None:
        assert (await runtime.poll(1, {})).kind == "missing"
        await runtime.stop(1, {})  # nothing there: a no-op
        lines: list[str] = []
        env = await env_for(runtime, path, lines)
        again = await env_for(runtime, path)
        assert again.reused and again.location == env.location
        assert env.location.startswith("stcloud-env:") and env.python_version == "3.11"
        if not env.reused:
            assert "==> Environment ready" in lines
        # The env image keeps nothing of its build: no build settings, mounts or command.
        config = docker_client.images.get(env.location).attrs["Config"]
        assert not [e for e in config["Env"] if e.startswith(("UV_", "SSL_", "PIP_"))]
        assert not config.get("Volumes") and config["Cmd"] == ["/bin/sh"]
        assert config["Labels"]["stcloud.dep_hash"] == env.dep_hash
        inst = await runtime.start(app(dsettings, path, 1, generation=3), env)
        assert set(inst.state) == {"container_id", "name", "port"}
        assert inst.address == ("127.0.0.1", inst.state["port"]) and inst.generation == 3
        assert inst.state["name"] == f"stcloud-{runtime.install_id}-life-1"
        ports = docker_client.containers.get(inst.state["container_id"]).attrs[
            "NetworkSettings"]["Ports"]["8501/tcp"]
        assert {p["HostIp"] for p in ports} == {"127.0.0.1"}
        await wait_healthy(runtime, 1, inst.state)
        assert (await runtime.poll(1, inst.state)).kind == "running"
        usage = await runtime.usage(1, inst.state)
        assert usage is not None and usage.memory_bytes > 10_000_000
        assert 0.0 <= usage.cpu_percent < 200.0
        await assert_poll_observes_and_maintain_caps_the_log(runtime, dsettings, 1, inst.state)
        # Starting again replaces the instance: one container, a new one.
        second = await runtime.start(app(dsettings, path, 1, generation=4), env)
        assert second.state["container_id"] != inst.state["container_id"]
        assert [c.id for c in app_containers(docker_client, runtime, 1)] == \
            [second.state["container_id"]]
        await wait_healthy(runtime, 1, second.state)
        assert (await runtime.poll(1, inst.state)).kind == "running"  # found by label
        await runtime.stop(1, second.state)
        assert (await runtime.poll(1, second.state)).kind == "missing"
        await runtime.stop(1, second.state)  # twice is fine
        assert await runtime.usage(1, second.state) is None
        assert await runtime.list() == []

    asyncio.run(scenario())


def test_adoption_by_a_new_runtime(runtime: DockerRuntime, dsettings: Settings,
                                   docker_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "adopt")

    async def scenario() -> None:
        inst = await runtime.start(app(dsettings, path, 2, generation=1),
                                   await env_for(runtime, path))
        await wait_healthy(runtime, 2, inst.state)
        fresh = DockerRuntime(dsettings)  # a restarted supervisor: own client, no memory
        try:
            adopted = await fresh.list()
            assert [(i.app_id, i.address, i.state, i.generation) for i in adopted] == \
                [(2, inst.address, inst.state, 1)]
            assert (await fresh.poll(2, adopted[0].state)).kind == "running"
            assert (await fresh.usage(2, adopted[0].state)) is not None
        finally:
            await fresh.close()
        assert len(app_containers(docker_client, runtime, 2)) == 1
        other = DockerRuntime(dataclasses.replace(dsettings, data_dir=tmp_path / "other"),
                              docker_client)
        assert await other.list() == []  # another installation on the same daemon
        assert (await other.poll(2, {})).kind == "missing"
        assert (await other.poll(2, inst.state)).kind == "missing"

    asyncio.run(scenario())


def test_output_reaches_the_log_file_without_a_supervisor(
        runtime: DockerRuntime, dsettings: Settings, tmp_path: Path) -> None:
    path = checkout(tmp_path, "logs")
    first = uuid.uuid4().hex

    async def scenario() -> None:
        spec = app(dsettings, path, 3, env_vars={"MARKER": first})
        inst = await runtime.start(spec, await env_for(runtime, path))
        await wait_healthy(runtime, 3, inst.state)
        seen = await session(inst.state)
        assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", seen
        assert "Hello from a container" in seen["texts"]

        def runs() -> int:
            return spec.log_path.read_text().count(f"MARKER {first}")

        async def ran(times: int) -> bool:
            return runs() >= times
        await wait_for(lambda: ran(1), 15, "the marker in the log file")
        assert "You can now view your Streamlit app" in spec.log_path.read_text()
        # No runtime object lives now (a supervisor restart): output still arrives, once.
        await runtime.close()
        await session(inst.state)
        await wait_for(lambda: ran(2), 15, "the second run's marker")
        await asyncio.sleep(0.5)
        assert runs() == 2

    asyncio.run(scenario())


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


def test_isolation(runtime: DockerRuntime, dsettings: Settings, docker_client: Any,
                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STCLOUD_TEST_PLANTED", "leak")
    dsettings.data_dir.mkdir(parents=True, exist_ok=True)
    (dsettings.data_dir / "cloud.db").write_text("the database")
    mine = checkout(tmp_path, "mine", {"streamlit_app.py": "import streamlit as st\n"
                                       "st.write(st.secrets['greeting'])\n"})
    theirs = checkout(tmp_path, "theirs", {"private.txt": "their file"})
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('greeting = "secret hello"\n')

    async def scenario() -> None:
        env = await env_for(runtime, mine)
        a = await runtime.start(app(dsettings, mine, 5, secrets_file=secrets,
                                    env_vars={"APP_VAR": "mine"}), env)
        b = await runtime.start(app(dsettings, theirs, 6), env)
        await wait_healthy(runtime, 5, a.state)
        await wait_healthy(runtime, 6, b.state)
        seen = await session(a.state)
        assert "secret hello" in seen["texts"], seen  # st.secrets reads the mounted file
        container = docker_client.containers.get(a.state["container_id"])
        peer = docker_client.containers.get(b.state["container_id"])
        peer_ip = next(iter(peer.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        paths = [str(dsettings.data_dir), str(dsettings.data_dir / "cloud.db"), str(theirs),
                 str(theirs / "private.txt"), str(dsettings.uv_cache_path)]
        code, out = container.exec_run(["/opt/venv/bin/python", "-c", PROBE, peer_ip, *paths])
        assert code == 0, out
        probe = json.loads(out)
        assert probe["socket"] is False
        assert not any(probe["paths"].values()), probe["paths"]
        assert "STCLOUD_TEST_PLANTED" not in probe["environ"]
        assert probe["environ"]["APP_VAR"] == "mine" and probe["environ"]["HOME"] == "/tmp"
        assert int(probe["caps"], 16) == 0  # every capability dropped
        # /app is the instance's writable copy; the checkout under it stays read-only.
        assert (probe["root_writable"], probe["app_writable"], probe["checkout_writable"],
                probe["tmp_writable"]) == (False, True, False, True)
        assert "secret hello" in probe["secrets"]
        assert probe["peer"] is False  # apps cannot reach each other
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False and host["ReadonlyRootfs"] is True
        assert host["Memory"] == host["MemorySwap"] == 512 << 20
        sources = {m["Source"] for m in container.attrs["Mounts"]}
        assert sources <= {str(mine.resolve()), str(secrets.resolve()),
                           str((dsettings.logs_path / "5.log").resolve()),
                           str(dsettings.ca_bundle_path), workdir.SCRIPT}
        script = [m for m in container.attrs["Mounts"] if m["Source"] == workdir.SCRIPT]
        assert all(not m["RW"] for m in script), script  # our copy script, read-only

    asyncio.run(scenario())


def test_packages_txt_installs_debian_packages(runtime: DockerRuntime, dsettings: Settings,
                                               docker_client: Any, tmp_path: Path) -> None:
    path = checkout(tmp_path, "sqlite", {
        "packages.txt": "# the sqlite3 command line\nsqlite3\n",
        "streamlit_app.py": "import subprocess\nimport streamlit as st\n"
                            "out = subprocess.run(['sqlite3', ':memory:', 'select 6*7'],\n"
                            "                     capture_output=True, text=True).stdout\n"
                            "st.write(f'answer {out.strip()}')\n"})

    async def scenario() -> None:
        lines: list[str] = []
        env = await env_for(runtime, path, lines)
        if not env.reused:
            assert any("apt-get install sqlite3" in line for line in lines)
        inst = await runtime.start(app(dsettings, path, 7), env)
        await wait_healthy(runtime, 7, inst.state)
        seen = await session(inst.state)
        assert "answer 42" in seen["texts"], seen

    asyncio.run(scenario())


def assert_no_image(client: Any, env_image: str) -> None:
    import docker.errors
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(env_image)


@pytest.mark.parametrize("files, expected", [
    ({"packages.txt": "stcloud-no-such-debian-package\n"},
     ["packages.txt", "Unable to locate package stcloud-no-such-debian-package"]),
    ({"requirements.txt": "stcloud-no-such-distribution==0.0.1\n"},
     ["Python dependencies", "stcloud-no-such-distribution"]),
])
def test_bad_input_raises_build_error_and_leaves_no_image(
        runtime: DockerRuntime, docker_client: Any, tmp_path: Path,
        files: dict[str, str], expected: list[str]) -> None:
    path = checkout(tmp_path, "bad", files)
    spec = EnvSpec.from_checkout(path, "3.11", "1.67.0")
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        asyncio.run(runtime.ensure_env(spec, lines.append))
    for text in expected:
        assert text in str(info.value)
    assert lines, "build output was not streamed"
    assert_no_image(docker_client, f"stcloud-env:{spec.dep_hash}")
    assert not docker_client.containers.list(
        all=True, filters={"label": f"stcloud.build={runtime.install_id}"})


def test_cancelled_build_kills_its_container(runtime: DockerRuntime, docker_client: Any,
                                             tmp_path: Path) -> None:
    path = checkout(tmp_path, "cancel",
                    {"requirements.txt": f"# {uuid.uuid4().hex}\n{REQUIREMENTS}"})
    spec = EnvSpec.from_checkout(path, "3.11", "1.67.0")

    async def scenario() -> None:
        started = asyncio.Event()

        def log(line: str) -> None:
            if line.startswith("==> uv venv"):
                started.set()
        task = asyncio.ensure_future(runtime.ensure_env(spec, log))
        await asyncio.wait_for(started.wait(), 60)
        assert docker_client.containers.list(
            filters={"label": f"stcloud.build={runtime.install_id}"})
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert not docker_client.containers.list(
        all=True, filters={"label": f"stcloud.build={runtime.install_id}"})
    assert_no_image(docker_client, f"stcloud-env:{spec.dep_hash}")


def test_packages_txt_must_name_packages(runtime: DockerRuntime) -> None:
    spec = EnvSpec("3.11", {"packages.txt": b"-o Debug::x=1\n"}, "1.67.0",
                   packages=("-o Debug::x=1",))
    with pytest.raises(BuildError, match="not a Debian package"):
        asyncio.run(runtime.ensure_env(spec, lambda line: None))


def test_configured_base_image_must_exist(runtime: DockerRuntime, dsettings: Settings,
                                          docker_client: Any, tmp_path: Path) -> None:
    custom = DockerRuntime(dataclasses.replace(
        dsettings, docker_base_images="3.12=stcloud-no-such-image:latest"), docker_client)
    spec = EnvSpec("3.12", {"requirements.txt": REQUIREMENTS.encode()}, "1.67.0")
    with pytest.raises(BuildError, match="docker_base_images"):
        asyncio.run(custom.ensure_env(spec, lambda line: None))
    with pytest.raises(BuildError, match="not offered"):
        asyncio.run(custom.ensure_env(dataclasses.replace(spec, python_version="2.7"),
                                      lambda line: None))



def test_a_scoped_build_uses_a_package_cache_of_its_own(
        runtime: DockerRuntime, dsettings: Settings, tmp_path: Path) -> None:
    """env_sharing = workspace: the build container gets the scope's own uv cache, not the
    shared one (package build code of one workspace cannot write where another's builds
    read)."""
    scope = f"workspace-test-{uuid.uuid4().hex[:8]}"
    cache = dsettings.uv_cache_for(scope)
    path = checkout(tmp_path, "scoped", {"requirements.txt": "stcloud-no-such-distribution\n"})
    spec = dataclasses.replace(EnvSpec.from_checkout(path, "3.11", "1.67.0"), scope=scope)
    assert spec.dep_hash != EnvSpec.from_checkout(path, "3.11", "1.67.0").dep_hash
    try:
        with pytest.raises(BuildError, match="stcloud-no-such-distribution"):
            asyncio.run(runtime.ensure_env(spec, lambda line: None))
        assert (cache / "CACHEDIR.TAG").is_file(), "uv did not use the scope's cache"
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_a_container_that_died_at_start_is_reported_by_its_own_output(
        docker_client: Any) -> None:
    """What start() quotes when the new container is not running: its own exit code and
    last output lines (bounded), not the app log, which the instance serving alongside
    writes too."""
    from supervisor.runtimes.docker_api import exit_report
    script = ("exec >&2; for i in $(seq 1 50); do echo line$i; done; "  # one stream: ordered
              "echo 'exec: streamlit: not found' >&2; exit 127")
    container = docker_client.containers.run(
        "stcloud-base:py3.11", ["sh", "-c", script], detach=True,
        labels={"stcloud.test": "exit-report"})
    try:
        assert container.wait(timeout=60)["StatusCode"] == 127
        report = exit_report(container, "app log: traceback")
    finally:
        remove_containers(docker_client, "stcloud.test=exit-report")
    assert report.startswith("status=exited exit_code=127"), report
    assert "exec: streamlit: not found" in report
    assert "line50" in report and "line10\n" not in report, "the last lines only"
    assert report.endswith("app log: traceback"), report


class ExitsBeforeReload(DockerAPI):
    """start()'s look at the new container happens only once the container has exited:
    the order a loaded host produces when the app dies at once."""

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "reload" and not args and not kwargs:
            await super().call(fn.__self__.wait, timeout=60)
        return await super().call(fn, *args, **kwargs)


def test_a_new_container_that_dies_at_once_is_reported_by_its_own_state(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    """An instance started alongside a serving one dies at once (here: its image has no
    Streamlit): StartError names its exit code, never the serving instance's log lines."""
    from supervisor.runtimes.base import StartError
    runtime = DockerRuntime(dsettings, api=ExitsBeforeReload(docker_client))
    spec = app(dsettings, checkout(tmp_path, "dies"), 31, alongside=True)
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    spec.log_path.write_text("OLD INSTANCE: Uvicorn server started on 0.0.0.0:8501\n")
    env = EnvRef("none", "3.11", "stcloud-base:py3.11")  # no venv, no streamlit
    try:
        with pytest.raises(StartError) as failed:
            asyncio.run(runtime.start(spec, env))
    finally:
        remove_installation(docker_client, runtime)
    message = str(failed.value)
    assert "OLD INSTANCE" not in message, message
    assert "status=exited exit_code=127" in message, message
    assert "not found" in message, "its own lines of the app log"
    assert not app_containers(docker_client, runtime, 31), "the failed container is removed"


def test_an_env_image_without_a_shell_is_reported_as_broken(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    """An env image with no /bin/sh (tini: "exec sh failed", exit 127): StartError says the
    environment image is broken and that a Reboot rebuilds it, before Docker's report; the
    image is untagged, so that reboot (or the next deploy) builds it instead of reusing it."""
    import contextlib
    import io
    import tarfile

    import docker.errors

    from supervisor.runtimes.base import StartError
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:  # one empty file: no shell at all
        tar.addfile(tarfile.TarInfo("etc/stcloud-empty"), io.BytesIO(b""))
    image = "stcloud-test-noshell:latest"
    docker_client.api.import_image_from_data(data.getvalue(), repository="stcloud-test-noshell",
                                             tag="latest")
    runtime = DockerRuntime(dsettings, api=ExitsBeforeReload(docker_client))
    spec = app(dsettings, checkout(tmp_path, "noshell"), 32)
    try:
        with pytest.raises(StartError) as failed:
            asyncio.run(runtime.start(spec, EnvRef("none", "3.11", image)))
        left = docker_client.images.list(name="stcloud-test-noshell")
    finally:
        remove_installation(docker_client, runtime)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image, force=True)
    assert not left, "the broken image is still tagged: the next start would reuse it"
    message = str(failed.value)
    assert message.startswith(f"The environment image {image} is broken"), message
    assert "Reboot the app" in message, message
    assert "exit_code=127" in message and "exec sh failed" in message, message
