"""A hostile app attacks the platform from inside its runtime, and every attempt must fail.

The app (HOSTILE below) runs its attacks when its script runs (a Streamlit session opened
by the test) and shows what it managed as one `RESULT {json}` text. It tries to read the
data directory (keys, database, initial admin password), the supervisor's and pid 1's
environment, another app's checkout and secrets; to connect to a port the test listens on
at the host's 127.0.0.1 (standing in for the API, the dashboard and PostgreSQL); to signal a
process of the host; and it must still reach an address outside the host (a listener in a
network namespace the test made). Separate tests fork-bomb (the pids limit holds, the host
and another app keep answering) and allocate past the memory limit (oom), and check that a
symlinked `.streamlit/secrets.toml` in the repository is neither written through nor read.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from tests.support.runtimes import app_dir, make_app, make_runtime, run_script, start_healthy
from tests.support.streamlit_client import open_streamlit_session

pytestmark = pytest.mark.no_database

HOSTILE = r'''
import json, os, signal, socket
import streamlit as st

def attempt(fn):
    try:
        return "OK " + str(fn())[:200]
    except BaseException as exc:
        return f"FAILED {type(exc).__name__}: {exc}"[:200]

def read(path):
    with open(path, "rb") as fh:
        return fh.read(100)

def connect(host, port):
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        return sock.recv(100)

targets = json.loads(os.environ["ATTACK_TARGETS"])
results = {}
for path in targets["files"]:
    results["read " + path] = attempt(lambda p=path: read(p))
for host, port in targets["loopback"]:
    results[f"connect {host}:{port}"] = attempt(lambda h=host, p=port: connect(h, p))
for pid in targets["signal"]:
    results[f"kill {pid}"] = attempt(lambda p=pid: os.kill(int(p), signal.SIGKILL))
outbound = targets.get("outbound")
own_secret = attempt(lambda: st.secrets["own"])
reach = attempt(lambda: connect(*outbound)) if outbound else "SKIPPED"
st.text("RESULT " + json.dumps({"attacks": results, "own_secret": own_secret,
                                "outbound": reach, "uid": os.getuid()}))
'''

FORK_BOMB = r'''
import os, threading, time
import streamlit as st

def bomb():
    children = 0
    while True:
        try:
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
            children += 1
        except OSError:
            time.sleep(0.01)

if "started" not in st.session_state:
    st.session_state.started = True
    for _ in range(4):
        threading.Thread(target=bomb, daemon=True).start()
st.text("RESULT bombing")
'''

HOG = r'''
import streamlit as st
blocks = []
while True:
    blocks.append(bytearray(16 << 20))
'''

ENGINES = ["process", "docker", "swarm"]


def platform_files(settings: Any) -> list[Path]:
    """Stand-ins for what the platform keeps in its data directory."""
    made = {settings.data_dir / "keys" / "secrets.key": "KEY-MATERIAL",
            settings.data_dir / "cloud.db": "SQLite format 3",
            settings.data_dir / "initial_admin_password": "hunter2"}
    for path, text in made.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o600)
    return list(made)


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    """A port on the host's 127.0.0.1 that answers "PLATFORM" (API, dashboard, PostgreSQL)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"PLATFORM")
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


@pytest.fixture
def outside_listener() -> Iterator[tuple[str, int] | None]:
    """A listener in a network namespace of the test's own, joined to the host by a veth
    pair: an address that is not the host's loopback. None where `ip netns` is refused."""
    name = f"stct{uuid.uuid4().hex[:6]}"
    host_if, ns_if = f"{name}h", f"{name}n"
    octet = 100 + int(uuid.uuid4().hex[:2], 16) % 100
    host_ip, ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    steps = [["ip", "netns", "add", name],
             ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if,
              "netns", name],
             ["ip", "addr", "add", f"{host_ip}/24", "dev", host_if],
             ["ip", "link", "set", host_if, "up"],
             ["ip", "-n", name, "addr", "add", f"{ns_ip}/24", "dev", ns_if],
             ["ip", "-n", name, "link", "set", ns_if, "up"],
             ["ip", "-n", name, "link", "set", "lo", "up"]]
    server = None
    try:
        for step in steps:
            if subprocess.run(step, capture_output=True).returncode != 0:
                yield None
                return
        code = ("import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,"
                f"socket.SO_REUSEADDR,1)\ns.bind(('{ns_ip}',9099))\ns.listen(8)\nprint('up',"
                "flush=True)\nwhile True:\n c,_=s.accept()\n c.sendall(b'OUTSIDE')\n c.close()")
        server = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", code],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        yield (ns_ip, 9099)
    finally:
        if server is not None:
            server.kill()
            server.wait(10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait(10)


@pytest.mark.parametrize("engine", ENGINES)
def test_hostile_app_reaches_nothing_of_the_platform(
        engine: str, settings: Any, loopback_listener: int, sleeper: subprocess.Popen[bytes],
        outside_listener: tuple[str, int] | None) -> None:
    runtime = make_runtime(engine, settings)
    victim = make_app(settings, 42, "import streamlit as st\nst.write('victim')\n",
                      secrets='victim_token = "VICTIM-SECRET"\n',
                      files={"private.txt": "VICTIM-CODE"})
    # pid 1 of a container is the app itself; in the process sandbox it is bwrap's (root)
    own_pid1 = [] if engine != "process" else [Path("/proc/1/environ")]
    files = [*platform_files(settings), Path(f"/proc/{os.getpid()}/environ"), *own_pid1,
             app_dir(settings, 42) / "src-0000" / "private.txt",
             app_dir(settings, 42) / "secrets.toml",
             settings.run_path / "sandbox" / "uid-1800000042" / "secrets.toml"]
    targets = {"files": [str(p) for p in files],
               "loopback": [["127.0.0.1", loopback_listener], ["10.0.2.2", loopback_listener],
                            ["172.17.0.1", loopback_listener]],
               "signal": [sleeper.pid, os.getpid()] if engine == "process" else [],
               "outbound": list(outside_listener) if outside_listener else None}
    hostile = make_app(settings, 41, HOSTILE, secrets='own = "MINE"\n',
                       env_vars={"ATTACK_TARGETS": json.dumps(targets)})

    async def scenario() -> dict[str, Any]:
        victim_inst = await start_healthy(runtime, victim)
        inst = await start_healthy(runtime, hostile)
        try:
            return json.loads(await run_script(inst.address))
        finally:
            await runtime.stop(41, inst.state)
            await runtime.stop(42, victim_inst.state)
            await runtime.close()

    report = asyncio.run(scenario())
    succeeded = {k: v for k, v in report["attacks"].items() if not v.startswith("FAILED")}
    assert not succeeded, f"{engine}: the hostile app managed {succeeded}"
    assert report["own_secret"] == "OK MINE", "the app still reads its own secrets"
    assert sleeper.poll() is None, "the host's process is alive"
    if engine == "process":
        assert report["uid"] == 1_800_000_041 or os.geteuid() != 0, report["uid"]
    if outside_listener is None:
        pytest.skip("ip netns refused here: outbound reachability not checked")
    if engine == "process":  # containers' routes to a test namespace are not ours to set
        assert report["outbound"] == "OK b'OUTSIDE'", report["outbound"]


@pytest.mark.parametrize("engine", ENGINES)
def test_fork_bomb_stops_at_the_pids_limit(engine: str, settings: Any) -> None:
    import dataclasses
    settings = dataclasses.replace(settings, process_pids_limit=64, docker_pids_limit=64)
    runtime = make_runtime(engine, settings)
    bystander = make_app(settings, 52, "import streamlit as st\nst.text('RESULT calm')\n")
    bomb = make_app(settings, 51, FORK_BOMB)

    async def scenario() -> None:
        calm = await start_healthy(runtime, bystander)
        inst = await start_healthy(runtime, bomb)
        try:
            assert await run_script(inst.address) == "bombing"
            deadline = time.monotonic() + 20
            refused = 0
            while time.monotonic() < deadline and refused == 0:
                refused = _refused_forks(engine, inst.state)
                await asyncio.sleep(0.2)
            if engine == "process":
                assert refused > 0, "the pids limit never refused a fork"
                assert _pids_current(inst.state) <= 64
            started = time.monotonic()
            assert await run_script(calm.address) == "calm", "another app keeps answering"
            subprocess.run(["true"], check=True, timeout=10)  # the host can still fork
            assert time.monotonic() - started < 30
        finally:
            await runtime.stop(51, inst.state)
            await runtime.stop(52, calm.state)
            await runtime.close()

    asyncio.run(scenario())


def _refused_forks(engine: str, state: dict[str, Any]) -> int:
    if engine != "process":
        return 1  # Docker's pids limit is its own; the bystander check below still holds
    from supervisor.runtimes.cgroups import PidsCgroup
    return PidsCgroup(Path(state["pids_cgroup"])).refused_forks()


def _pids_current(state: dict[str, Any]) -> int:
    from supervisor.runtimes.cgroups import PidsCgroup
    return PidsCgroup(Path(state["pids_cgroup"])).current()


@pytest.mark.parametrize("engine", ENGINES)
def test_allocating_past_the_memory_limit_is_an_oom(engine: str, settings: Any) -> None:
    runtime = make_runtime(engine, settings)
    hog = make_app(settings, 61, HOG, memory_mb=150)

    async def scenario() -> str:
        inst = await start_healthy(runtime, hog)
        try:
            host = f"{inst.address[0]}:{inst.address[1]}"
            await open_streamlit_session(f"ws://{host}", host, timeout=20)
            deadline = time.monotonic() + 60
            while (status := await runtime.poll(61, inst.state)).alive:
                assert time.monotonic() < deadline, "the hog was never stopped"
                await runtime.maintain(61, inst.state)  # as the reconciler does after poll
                await asyncio.sleep(0.2)
            return status.kind
        finally:
            await runtime.stop(61, inst.state)
            await runtime.close()

    assert asyncio.run(scenario()) == "oom"


@pytest.mark.parametrize("sandboxed", [True, False], ids=["bubblewrap", "single-tenant"])
def test_symlinked_secrets_in_the_repository_are_not_written_through_nor_read(
        settings: Any, tmp_path: Path, sandboxed: bool) -> None:
    import dataclasses
    settings = dataclasses.replace(settings, process_sandbox="auto" if sandboxed else "off")
    host_file = tmp_path / "host-file.toml"
    host_file.write_text('stolen = "HOST-FILE"\n')
    main = ("import json, streamlit as st\n"
            "st.text('RESULT ' + json.dumps({k: str(v) for k, v in st.secrets.items()}))\n")
    app = make_app(settings, 71, main, secrets='own = "MINE"\n')
    tree = app_dir(settings, 71) / "src-0000"
    (tree / ".streamlit").mkdir()
    os.symlink(host_file, tree / ".streamlit" / "secrets.toml")
    runtime = make_runtime("process", settings)

    async def scenario() -> dict[str, str]:
        inst = await start_healthy(runtime, app)
        try:
            return json.loads(await run_script(inst.address))
        finally:
            await runtime.stop(71, inst.state)

    seen = asyncio.run(scenario())
    assert host_file.read_text() == 'stolen = "HOST-FILE"\n', "written through the link"
    assert seen == {"own": "MINE"}, seen


def test_without_a_sandbox_apps_are_refused_unless_single_tenant(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from supervisor.runtimes import sandbox
    from supervisor.runtimes.base import BuildError, StartError
    monkeypatch.setattr(sandbox, "find_tools", lambda: (None, ["bwrap"]))
    runtime = make_runtime("process", settings)
    assert isinstance(runtime, ProcessRuntime)
    assert runtime.isolation == "unavailable"
    app = make_app(settings, 81, "import streamlit as st\n")
    spec = EnvSpec.from_checkout(app.checkout, "3.11", "1.67.0")
    with pytest.raises(BuildError, match="cannot sandbox apps.*bubblewrap.*process_sandbox"):
        asyncio.run(runtime.ensure_env(spec, lambda line: None))
    with pytest.raises(StartError, match="cannot sandbox apps"):
        asyncio.run(runtime.start(app, None))  # type: ignore[arg-type]  # refused before any env
    off = make_runtime("process", dataclasses.replace(settings, process_sandbox="off"))
    assert isinstance(off, ProcessRuntime)
    assert off.isolation == "single-tenant"
