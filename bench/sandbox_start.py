"""Process runtime start and request latency, sandboxed (bubblewrap + slirp4netns) against
unsandboxed (process_sandbox = "off"), in one run, alternating.

- start: `ProcessRuntime.start` of examples/hello (environment built once, not timed) until
  `/_stcore/health` answers on the instance's address (the proxy's path).
- health p50/p95: 200 GETs of `/_stcore/health`, a new connection each (http.client, as a
  proxy without keep-alive would), then 200 on one kept-alive connection.
- idle memory of the network helper: PSS and RSS of the instance's slirp4netns process.

    .venv/bin/python bench/sandbox_start.py [--runs 5]
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

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import wait_health  # noqa: E402
from supervisor.runtimes.base import AppSpec, EnvSpec  # noqa: E402
from supervisor.runtimes.process import ProcessRuntime  # noqa: E402

EXAMPLE = ROOT / "examples" / "hello"



def latencies(port: int, n: int = 200, reuse: bool = False) -> list[float]:
    out, conn = [], None
    for _ in range(n):
        start = time.perf_counter()
        if conn is None or not reuse:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/_stcore/health")
        conn.getresponse().read()
        if not reuse:
            conn.close()
        out.append((time.perf_counter() - start) * 1000)
    return out


def helper_memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in KiB of the slirp4netns process of the instance whose leader is `pid`."""
    leader = psutil.Process(pid)
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "slirp4netns":
            try:
                if proc.cmdline()[-2].isdigit() and \
                        psutil.Process(int(proc.cmdline()[-2])).ppid() in \
                        {leader.pid, *(c.pid for c in leader.children(recursive=True))}:
                    info = proc.memory_full_info()
                    return info.pss >> 10, info.rss >> 10
            except (psutil.Error, IndexError):
                continue
    return 0, 0


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(int(len(values) * q), len(values) - 1)]


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkout = root / "apps" / "1" / "src"
        shutil.copytree(EXAMPLE, checkout)
        base = load_settings(env={}, data_dir=root / "data", runtime="process",
                             uv_cache_dir=Path.home() / ".cache" / "stcloud-tests" / "uv")
        engines = {"sandboxed": ProcessRuntime(base),
                   "unsandboxed": ProcessRuntime(dataclasses.replace(base,
                                                                     process_sandbox="off"))}
        assert engines["sandboxed"].isolation == "bubblewrap", engines["sandboxed"].isolation
        spec = EnvSpec.from_checkout(checkout, "3.11", base.default_streamlit)
        envs = {name: await rt.ensure_env(spec, lambda line: None)
                for name, rt in engines.items()}
        app = AppSpec(app_id=1, name="bench", checkout=checkout, main_file="streamlit_app.py",
                      log_path=root / "app.log", memory_limit_mb=1024)
        results: dict[str, dict[str, list[float]]] = {
            name: {"start": [], "new conn p50": [], "new conn p95": [], "keep-alive p50": [],
                   "helper pss KiB": [], "helper rss KiB": []} for name in engines}
        for _ in range(runs):
            for name, runtime in engines.items():
                start = time.monotonic()
                inst = await runtime.start(app, envs[name])
                await wait_health(inst.address[1])
                results[name]["start"].append(time.monotonic() - start)
                fresh = latencies(inst.address[1])
                kept = latencies(inst.address[1], reuse=True)
                results[name]["new conn p50"].append(statistics.median(fresh))
                results[name]["new conn p95"].append(pct(fresh, 0.95))
                results[name]["keep-alive p50"].append(statistics.median(kept))
                if name == "sandboxed":
                    pss, rss = helper_memory(inst.state["pid"])
                    results[name]["helper pss KiB"].append(pss)
                    results[name]["helper rss KiB"].append(rss)
                await runtime.stop(1, inst.state)
    med = {name: {k: statistics.median(v) for k, v in r.items() if v}
           for name, r in results.items()}
    s, u = med["sandboxed"], med["unsandboxed"]
    print("| measure | unsandboxed | sandboxed | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| start → healthy | {u['start']:.2f} s | {s['start']:.2f} s | "
          f"{s['start'] / u['start']:.2f}× | ≤ 1.1× |")
    for key in ("new conn p50", "new conn p95", "keep-alive p50"):
        print(f"| /_stcore/health, {key} | {u[key]:.2f} ms | {s[key]:.2f} ms | "
              f"{s[key] / u[key]:.2f}× | |")
    print(f"| slirp4netns idle memory per app | | PSS {s['helper pss KiB']:.0f} KiB, RSS "
          f"{s['helper rss KiB']:.0f} KiB | | |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "sandbox_start.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
