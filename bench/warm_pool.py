"""A wake from the process runtime's warm pool against a cold start, the real path, in one
run, alternating (the supervisor as root, the bubblewrap sandbox, examples/hello).

- cold: `runtime.start()` with no slot ready: the sandbox is launched and `streamlit run`
  imports everything (what a wake costs without the pool);
- warm: a slot of the environment was filled beforehand (not timed), then `runtime.start()`
  takes it: mounts, limits, log switch, the go line, then Streamlit's start in the waiting
  interpreter.

Both are timed from the call of `runtime.start()` until the first session's script run has
finished: `/_stcore/health` is polled every 2 ms, then a Streamlit session is opened over the
websocket as a browser would and the clock stops when its `script_finished` arrives (the
example's chart rendered; the websocket's closing handshake is not counted). Memory: the
waiting slot's PSS (its process tree), against a running app's (the woken instance's,
after its first run).

    sudo .venv/bin/python bench/warm_pool.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import wait_health  # noqa: E402
from supervisor.runtimes.base import AppSpec, EnvRef, EnvSpec  # noqa: E402
from supervisor.runtimes.process import ProcessRuntime  # noqa: E402
from supervisor.runtimes.process_state import tree_memory  # noqa: E402
from tests.support.streamlit_client import (  # noqa: E402
    STREAM_PATH,
    ForwardMsg,
    parse_forward,
    rerun_message,
)

EXAMPLE = ROOT / "examples" / "hello"


async def script_finished(port: int) -> float:
    """Open a session as a browser would and run the script; the monotonic time its
    `script_finished` arrived (the websocket's closing handshake is not counted)."""
    host = f"127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"ws://{host}{STREAM_PATH}", protocols=("streamlit",),
            headers={"Host": host, "Origin": f"http://{host}"}, max_msg_size=0) as ws:
        await ws.send_bytes(rerun_message())
        while True:
            msg = await ws.receive(timeout=60)
            assert msg.type is aiohttp.WSMsgType.BINARY, msg
            fwd = parse_forward(msg.data)
            if fwd.WhichOneof("type") == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(fwd.script_finished)
                if status != "FINISHED_EARLY_FOR_RERUN":
                    assert status == "FINISHED_SUCCESSFULLY", status
                    return time.monotonic()


async def first_run(runtime: ProcessRuntime, app: AppSpec, env: EnvRef
                    ) -> tuple[float, dict[str, object]]:
    """(seconds from start() to the first script run's end, the instance's state)."""
    began = time.monotonic()
    inst = await runtime.start(app, env)
    port = inst.address[1]
    await wait_health(port, step=0.002)
    return await script_finished(port) - began, inst.state


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkout = root / "apps" / "1" / "src"
        shutil.copytree(EXAMPLE, checkout)
        settings = load_settings(env={}, data_dir=root / "data", runtime="process",
                                 uv_cache_dir=Path.home() / ".cache" / "stcloud-tests" / "uv")
        runtime = ProcessRuntime(dataclasses.replace(settings, warm_pool_memory_mb=1024))
        assert runtime._warm is not None, "the warm pool needs root and the sandbox"
        spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
        env = await runtime.ensure_env(spec, lambda line: None)
        app = AppSpec(app_id=1, name="hello", checkout=checkout, main_file="streamlit_app.py",
                      log_path=settings.logs_path / "1" / "app.log", memory_limit_mb=1024)
        results: dict[str, list[float]] = {"cold": [], "warm": [], "slot pss MiB": [],
                                           "app pss MiB": []}
        try:
            for _ in range(runs):
                took, state = await first_run(runtime, app, env)
                assert "warm_slot" not in state
                results["cold"].append(took)
                await runtime.stop(1, state)
                runtime.prepare_wakes([env.dep_hash])
                await runtime._warm.settle()
                slot = runtime._warm.slots[env.location]
                results["slot pss MiB"].append(tree_memory(psutil.Process(slot.pid)) / 2**20)
                took, state = await first_run(runtime, app, env)
                assert "warm_slot" in state
                results["warm"].append(took)
                results["app pss MiB"].append(
                    tree_memory(psutil.Process(int(str(state["pid"])))) / 2**20)
                runtime.prepare_wakes([])  # the app is awake: no slot kept meanwhile
                await runtime.stop(1, state)
        finally:
            await runtime.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    print("| measure | cold start | pool wake | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| start() → first script run (p50 of {runs}) | {med['cold']:.2f} s | "
          f"{med['warm']:.2f} s | {med['warm'] / med['cold']:.2f}× | ≤ 0.3 s |")
    print(f"| memory | running app PSS {med['app pss MiB']:.0f} MiB | waiting slot PSS "
          f"{med['slot pss MiB']:.0f} MiB | {med['slot pss MiB'] / med['app pss MiB']:.2f}× "
          "| |")
    print("runs:", json.dumps({k: [round(x, 3) for x in v] for k, v in results.items()}))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "warm_pool.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
