"""SwarmRuntime against DockerRuntime in one run, and idle memory per hosted app.

Times (alternating engines, same env image, the example app, 1 GiB limit):
- deploy → healthy: `ensure_env` (image reused) + `start` + `/_stcore/health` answering;
- stop: `stop()` until it returns (instance stopped);
- wake → healthy: `start` again after that stop (what waking a sleeping app costs) + health.
Health client: HTTP/1.1 GET every 20 ms on a new connection, to the instance's own address
(127.0.0.1:port for a container, the task's bridge address for a service).

Idle memory per hosted app, for the capacity model: one instance per engine (process,
container, service) of the example app, one Streamlit session opened and closed, then
`--settle` seconds idle. Columns: the app's own processes' RSS (psutil, host view); what
the engine's `usage()` reports (process: RSS; container/service: cgroup usage minus inactive
file); and the host-side cost per instance outside the app (containerd-shim, docker-proxy).

    .venv/bin/python bench/swarm.py [--runs 5] [--settle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings_load import load_settings  # noqa: E402
from supervisor.runtimes.base import AppSpec, EnvSpec, Instance, Runtime  # noqa: E402
from supervisor.runtimes.docker import DockerRuntime  # noqa: E402
from supervisor.runtimes.process import ProcessRuntime  # noqa: E402
from supervisor.runtimes.swarm import SwarmRuntime  # noqa: E402
from tests.support.streamlit_client import open_streamlit_session  # noqa: E402

EXAMPLE = ROOT / "examples" / "hello"
MIB = 1 << 20


def healthy(address: tuple[str, int]) -> bool:
    try:
        conn = http.client.HTTPConnection(address[0], address[1], timeout=2)
        conn.request("GET", "/_stcore/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


async def wait_health(address: tuple[str, int], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(address):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{address} never healthy")
        await asyncio.sleep(0.02)


def app_processes(runtime: Runtime, inst: Instance) -> list[psutil.Process]:
    """The app's processes as the host sees them."""
    import docker
    if runtime.name == "process":
        root = psutil.Process(inst.state["pid"])
        return [root, *root.children(recursive=True)]
    client = docker.from_env()
    if runtime.name == "docker":
        ids = [inst.state["container_id"]]
    else:
        ids = [c.id for c in client.containers.list(filters={
            "label": f"com.docker.swarm.service.id={inst.state['service_id']}"})]
    procs = []
    for cid in ids:
        root = psutil.Process(client.containers.get(cid).attrs["State"]["Pid"])
        procs += [root, *root.children(recursive=True)]
    return procs


def host_overhead(runtime: Runtime, inst: Instance) -> tuple[int, list[str]]:
    """RSS of what the host runs per instance besides the app: the container's shim, and
    docker-proxy for a published port."""
    if runtime.name == "process":
        return 0, []
    import docker
    client = docker.from_env()
    if runtime.name == "docker":
        ids = [inst.state["container_id"]]
    else:
        ids = [c.id for c in client.containers.list(filters={
            "label": f"com.docker.swarm.service.id={inst.state['service_id']}"})]
    total, names = 0, []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        mine = any(cid in cmd for cid in ids) and "shim" in (proc.info["name"] or "")
        proxy = (runtime.name == "docker" and proc.info["name"] == "docker-proxy"
                 and f"-host-port {inst.state['port']} " in cmd + " ")
        if mine or proxy:
            try:
                total += proc.memory_info().rss
                names.append(proc.info["name"])
            except psutil.Error:
                pass
    return total, names


async def timings(engines: dict[str, Runtime], env: dict[str, Any], app: AppSpec,
                  spec: EnvSpec, runs: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {
        name: {"deploy → healthy": [], "stop": [], "wake → healthy": []} for name in engines}
    for i in range(runs):
        order = list(engines) if i % 2 == 0 else list(reversed(engines))
        for name in order:
            rt = engines[name]
            start = time.monotonic()
            ref = await rt.ensure_env(spec, lambda line: None)
            inst = await rt.start(app, ref)
            await wait_health(inst.address)
            out[name]["deploy → healthy"].append(time.monotonic() - start)
            start = time.monotonic()
            await rt.stop(app.app_id, inst.state)
            out[name]["stop"].append(time.monotonic() - start)
            start = time.monotonic()
            inst = await rt.start(app, env[name])
            await wait_health(inst.address)
            out[name]["wake → healthy"].append(time.monotonic() - start)
            await rt.stop(app.app_id, inst.state)
    return out


async def idle_memory(engines: dict[str, Runtime], env: dict[str, Any], app: AppSpec,
                      settle: float) -> dict[str, dict[str, float]]:
    insts: dict[str, Instance] = {}
    for name, rt in engines.items():
        insts[name] = await rt.start(dataclasses.replace(app, app_id=100 + len(insts)),
                                     env[name])
    try:
        for inst in insts.values():
            await wait_health(inst.address)
            host, port = inst.address
            seen = await open_streamlit_session(f"ws://{host}:{port}", f"{host}:{port}")
            assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", seen
        await asyncio.sleep(settle)  # idle time being measured, not synchronisation
        out: dict[str, dict[str, float]] = {}
        for name, inst in insts.items():
            rt = engines[name]
            rss = sum(p.memory_info().rss for p in app_processes(rt, inst))
            usage = await rt.usage(inst.app_id, inst.state)
            overhead, what = host_overhead(rt, inst)
            out[name] = {"rss": rss / MIB, "usage": (usage.memory_bytes if usage else 0) / MIB,
                         "overhead": overhead / MIB, "overhead_what": " + ".join(what) or "–"}
        return out
    finally:
        for name, inst in insts.items():
            await engines[name].stop(inst.app_id, inst.state)


async def main(runs: int, settle: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkout = root / "src"
        shutil.copytree(EXAMPLE, checkout)
        settings = load_settings(env={}, data_dir=root / "data", runtime="docker",
                                 uv_cache_dir=Path.home() / ".cache" / "stcloud-tests" / "uv")
        spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
        engines: dict[str, Runtime] = {
            "container (DockerRuntime)": DockerRuntime(settings),
            "service (SwarmRuntime)": SwarmRuntime(dataclasses.replace(settings,
                                                                       runtime="swarm"))}
        env = {name: await rt.ensure_env(spec, lambda line: None)
               for name, rt in engines.items()}
        app = AppSpec(app_id=1, name="bench", checkout=checkout, main_file="streamlit_app.py",
                      log_path=root / "app.log", memory_limit_mb=1024)
        times = await timings(engines, env, app, spec, runs)
        process = ProcessRuntime(dataclasses.replace(settings, runtime="process"))
        env["process (ProcessRuntime)"] = await process.ensure_env(spec, lambda line: None)
        memory = await idle_memory({"process (ProcessRuntime)": process, **engines}, env,
                                   app, settle)
        for rt in engines.values():
            await rt.close()
    docker_name, swarm_name = list(times)
    print(f"Times, median of {runs} runs per engine (engines alternated):\n")
    print("| measure | DockerRuntime | SwarmRuntime | swarm ÷ docker |")
    print("|---|---|---|---|")
    for measure in times[docker_name]:
        d = statistics.median(times[docker_name][measure])
        s = statistics.median(times[swarm_name][measure])
        print(f"| {measure} | {d:.2f} s | {s:.2f} s | {s / d:.2f}× |")
    base = memory["process (ProcessRuntime)"]["rss"]
    print(f"\nIdle memory per hosted app (one session opened and closed, {settle:g} s idle):\n")
    print("| engine | app processes' RSS | ÷ process | engine's usage() | host-side per "
          "instance | RSS + host-side |")
    print("|---|---|---|---|---|---|")
    for name, m in memory.items():
        print(f"| {name} | {m['rss']:.1f} MiB | {m['rss'] / base:.2f}× | {m['usage']:.1f} MiB "
              f"| {m['overhead']:.1f} MiB ({m['overhead_what']}) "
              f"| {m['rss'] + m['overhead']:.1f} MiB |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "swarm.json").write_text(json.dumps({"times": times, "memory": memory}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.settle))
