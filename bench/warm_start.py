"""How fast a pre-warmed interpreter could wake an app, against a cold `streamlit run`, in
one run, alternating (the floor of a warm-pool wake on the process runtime, unsandboxed).

- cold: `streamlit run` of examples/hello in its built environment, from exec until
  `/_stcore/health` answers (what a wake costs today, less the supervisor's steps).
- warm: an interpreter of the same environment that has already imported Streamlit, its
  server and script runner, and the app's heavy dependencies (pandas), waiting on a pipe;
  timed from the "go" written to the pipe until `/_stcore/health` answers. That is what a
  pool of such interpreters per environment would cost at wake.
- idle memory of one warm interpreter (PSS), the pool's price per environment.

    .venv/bin/python bench/warm_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import wait_health  # noqa: E402
from supervisor.runtimes.base import EnvSpec  # noqa: E402
from supervisor.runtimes.process import ProcessRuntime  # noqa: E402

EXAMPLE = ROOT / "examples" / "hello"
ZYGOTE = """
import sys
import streamlit, streamlit.web.cli, streamlit.web.bootstrap, streamlit.web.server
import streamlit.runtime.scriptrunner, streamlit.elements
import pandas
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.argv = ["streamlit", "run"] + sys.stdin.readline().split()
streamlit.web.cli.main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_args(checkout: Path, port: int) -> list[str]:
    return [str(checkout / "streamlit_app.py"), "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def cold(venv: Path, checkout: Path) -> float:
    port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen([str(venv / "bin" / "streamlit"), "run", *run_args(checkout, port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        await wait_health(port)
        return time.monotonic() - start
    finally:
        stop(proc)


async def warm(venv: Path, checkout: Path) -> tuple[float, int]:
    """(go → healthy in s, the waiting interpreter's PSS in KiB)."""
    port = free_port()
    proc = subprocess.Popen([str(venv / "bin" / "python"), "-c", ZYGOTE],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=checkout)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        pss = psutil.Process(proc.pid).memory_full_info().pss >> 10
        start = time.monotonic()
        proc.stdin.write(" ".join(run_args(checkout, port)) + "\n")
        proc.stdin.flush()
        await wait_health(port, step=0.002)
        return time.monotonic() - start, pss
    finally:
        stop(proc)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkout = root / "src"
        shutil.copytree(EXAMPLE, checkout)
        settings = load_settings(env={}, data_dir=root / "data", runtime="process",
                                 uv_cache_dir=Path.home() / ".cache" / "stcloud-tests" / "uv")
        runtime = ProcessRuntime(settings)
        spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
        env = await runtime.ensure_env(spec, lambda line: None)
        venv = Path(env.location)
        results: dict[str, list[float]] = {"cold": [], "warm": [], "warm pss KiB": []}
        for _ in range(runs):
            results["cold"].append(await cold(venv, checkout))
            took, pss = await warm(venv, checkout)
            results["warm"].append(took)
            results["warm pss KiB"].append(pss)
    med = {k: statistics.median(v) for k, v in results.items()}
    print("| measure | cold `streamlit run` | warm interpreter | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| start → healthy (p50 of {runs}) | {med['cold']:.2f} s | {med['warm']:.2f} s | "
          f"{med['warm'] / med['cold']:.2f}× | ≤ 0.3 s |")
    print(f"| idle memory of one warm interpreter | | PSS {med['warm pss KiB'] / 1024:.0f} MiB "
          "| | |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "warm_start.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
