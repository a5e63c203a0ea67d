"""SwarmRuntime on the three-node swarm of scripts/multinode-swarm.sh against the host's
single-node swarm, in one run.

Placements (the example app, 1 GiB limit, its env image present everywhere):
- single node: the host's own single-node swarm (bridge network, the task's bridge address);
- same node: the three-node swarm's manager (`node.hostname==stcmn-n1`), overlay address;
- remote node: a worker (`node.role==worker`): the runtime talks to the manager, the task
  runs on another daemon, reached over the overlay (through the script's gateway).

Measures:
- deploy → healthy: `ensure_env` (image reused) + `start` + `/_stcore/health` answering,
  polled every 20 ms with HTTP/1.1 on new connections (placements alternate);
- request p50: 200 GET /_stcore/health on new connections to the healthy task, direct;
- node loss → serving elsewhere: an app on a worker, that worker's link cut; `poll` every
  0.2 s until it reports the task lost (the manager marks the node down), then what the
  supervisor does (stop, start: the other worker) until healthy. Compared with a cold
  deploy on a worker (the remote deploy → healthy above). The supervisor adds its crash
  backoff (`crash_backoff`, first 1 s) and `reconcile_interval` to this. How soon the
  manager marks a silent node down follows the swarm's dispatcher heartbeat (5 s by
  default); `--heartbeat S` sets it for the run (`docker swarm update
  --dispatcher-heartbeat`) and puts the previous value back.

    bash scripts/multinode-swarm.sh up
    .venv/bin/python bench/multinode.py [--runs 5] [--losses 3] [--heartbeat 2]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from backend.platform.settings import Settings  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from supervisor.runtimes.base import AppSpec, EnvRef, EnvSpec  # noqa: E402
from supervisor.runtimes.swarm import SwarmRuntime  # noqa: E402
from tests.support.multinode import (  # noqa: E402
    Multinode,
    node_client,
    running_tasks_on,
    set_link,
    swarm_env,
    task_nodes,
)

EXAMPLE = ROOT / "examples" / "hello"


def get_ok(address: tuple[str, int], timeout: float = 2) -> bool:
    try:
        conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout)
        conn.request("GET", "/_stcore/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


async def wait_health(address: tuple[str, int], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not get_ok(address, 1):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{address} never healthy")
        await asyncio.sleep(0.02)


def request_p50(address: tuple[str, int], count: int = 200) -> float:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        if not get_ok(address):
            raise RuntimeError(f"{address} failed a request")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclasses.dataclass
class Placement:
    runtime: SwarmRuntime
    env: EnvRef | None = None


async def deploys(places: dict[str, Placement], app: AppSpec, spec: EnvSpec, runs: int
                  ) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {
        name: {"deploy → healthy": [], "request p50": []} for name in places}
    for i in range(runs):
        order = list(places) if i % 2 == 0 else list(reversed(places))
        for name in order:
            rt = places[name].runtime
            start = time.monotonic()
            env = await rt.ensure_env(spec, lambda line: None)
            inst = await rt.start(app, env)
            await wait_health(inst.address)
            out[name]["deploy → healthy"].append(time.monotonic() - start)
            out[name]["request p50"].append(await asyncio.to_thread(request_p50, inst.address))
            await rt.stop(app.app_id, inst.state)
    return out


async def node_losses(mn: Multinode, rt: SwarmRuntime, manager: docker.DockerClient,
                      app: AppSpec, env: EnvRef, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"lost → seen": [], "lost → serving elsewhere": []}
    for _ in range(rounds):
        inst = await rt.start(app, env)
        await wait_health(inst.address)
        [lost] = task_nodes(manager, inst.state["service_id"])
        start = time.monotonic()
        set_link(lost, up=False)
        try:
            while (await rt.poll(app.app_id, inst.state)).alive:
                await asyncio.sleep(0.2)
            out["lost → seen"].append(time.monotonic() - start)
            await rt.stop(app.app_id, inst.state)
            moved = await rt.start(app, env)
            await wait_health(moved.address)
            out["lost → serving elsewhere"].append(time.monotonic() - start)
            assert task_nodes(manager, moved.state["service_id"]) != [lost]
        finally:
            set_link(lost, up=True)
        returned = node_client(mn, lost)
        deadline = time.monotonic() + 120
        while running_tasks_on(returned, inst.state["service_id"]):  # its copy stops
            if time.monotonic() > deadline:
                raise RuntimeError(f"{lost} kept its copy of the app")
            await asyncio.sleep(0.5)
        returned.close()
        await rt.stop(app.app_id, moved.state)
        while len([n for n in manager.nodes.list() if n.attrs["Status"]["State"] == "ready"]) < 3:
            await asyncio.sleep(0.5)  # the returned node is back before the next round
    return out


def placements(settings: Settings, mn: Multinode, manager: docker.DockerClient
               ) -> dict[str, Placement]:
    swarm = dataclasses.replace(settings, runtime="swarm")
    multi = mn.settings(settings)
    return {
        "single node (host's swarm)": Placement(SwarmRuntime(swarm)),
        "same node (manager)": Placement(SwarmRuntime(dataclasses.replace(
            multi, swarm_placement_constraints="node.hostname==stcmn-n1"), manager)),
        "remote node (worker)": Placement(SwarmRuntime(dataclasses.replace(
            multi, swarm_placement_constraints="node.role==worker"), manager)),
    }


def report(times: dict[str, dict[str, list[float]]], losses: dict[str, list[float]],
           runs: int) -> None:
    single = "single node (host's swarm)"
    print(f"Median of {runs} runs per placement (placements alternated):\n")
    print("| measure | " + " | ".join(times) + " | remote ÷ single | remote ÷ same |")
    print("|---|" + "---|" * (len(times) + 2))
    for measure, unit, scale in (("deploy → healthy", "s", 1.0), ("request p50", "ms", 1e3)):
        med = {name: statistics.median(t[measure]) for name, t in times.items()}
        cells = " | ".join(f"{v * scale:.2f} {unit}" for v in med.values())
        remote = med["remote node (worker)"]
        print(f"| {measure} | {cells} | {remote / med[single]:.2f}× "
              f"| {remote / med['same node (manager)']:.2f}× |")
    cold = statistics.median(times["remote node (worker)"]["deploy → healthy"])
    print(f"\nNode loss (link cut), {len(losses['lost → seen'])} rounds:\n")
    print("| measure | median | each | ÷ cold deploy on a worker |")
    print("|---|---|---|---|")
    for measure, values in losses.items():
        print(f"| {measure} | {statistics.median(values):.2f} s | "
              + ", ".join(f"{v:.2f}" for v in values)
              + f" | {statistics.median(values) / cold:.2f}× |")


def set_heartbeat(manager: docker.DockerClient, seconds: float | None) -> int:
    """Set the dispatcher heartbeat (None: leave it); returns the previous one, in ns."""
    spec = manager.api.inspect_swarm()["Spec"]
    before = int(spec.get("Dispatcher", {}).get("HeartbeatPeriod", 5 * 10**9))
    if seconds is not None:
        manager.swarm.update(dispatcher_heartbeat_period=int(seconds * 1e9))
    return before


async def main(runs: int, rounds: int, heartbeat: float | None) -> None:
    env_vars = swarm_env()
    if env_vars is None:
        sys.exit("the three-node swarm is not up: bash scripts/multinode-swarm.sh up")
    mn = Multinode(env_vars["STCLOUD_MULTINODE_MANAGER"],
                   tuple(env_vars["STCLOUD_MULTINODE_NODES"].split()),
                   env_vars["STCLOUD_MULTINODE_REGISTRY"], env_vars["STCLOUD_MULTINODE_NETWORK"])
    manager = mn.client()
    before = set_heartbeat(manager, heartbeat)
    try:
        name = "multinode.json" if heartbeat is None else f"multinode-heartbeat-{heartbeat:g}s.json"
        await measure(mn, manager, runs, rounds, name)
    finally:
        set_heartbeat(manager, before / 1e9)
        manager.close()
    print(f"\n(dispatcher heartbeat {heartbeat if heartbeat is not None else before / 1e9:g} s)")


async def measure(mn: Multinode, manager: docker.DockerClient, runs: int, rounds: int,
                  name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkout = root / "src"
        shutil.copytree(EXAMPLE, checkout)
        settings = load_settings(env={}, data_dir=root / "data", runtime="docker",
                                 uv_cache_dir=Path.home() / ".cache" / "stcloud-tests" / "uv")
        spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
        places = placements(settings, mn, manager)
        for place in places.values():  # built or pulled once, outside the timings
            place.env = await place.runtime.ensure_env(spec, lambda line: None)
        app = AppSpec(app_id=1, name="bench", checkout=checkout, main_file="streamlit_app.py",
                      log_path=root / "app.log", memory_limit_mb=1024)
        times = await deploys(places, app, spec, runs)
        worker = places["remote node (worker)"]
        assert worker.env is not None
        losses = await node_losses(mn, worker.runtime, manager, app, worker.env, rounds)
        for place in places.values():
            await place.runtime.close()
    report(times, losses, runs)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps({"times": times, "losses": losses},
                                                   indent=2, ensure_ascii=False))


def _args() -> Any:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--losses", type=int, default=3)
    parser.add_argument("--heartbeat", type=float, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    args = _args()
    asyncio.run(main(args.runs, args.losses, args.heartbeat))
