"""A Streamlit page through our proxy while a slowloris holds the proxy, against the same
page through the same proxy idle, in the same run.

    .venv/bin/python bench/slowloris.py [--half-open 12000] [--addresses 48] [--samples 200]

What runs (all on 127.0.0.1 and other loopback addresses):
- Streamlit: `streamlit run <one-file app>`, the page (`/`) and its upstream;
- ours: bench/proxy_runner.py (`start_proxy`, default settings: per-client cap 256, total
  cap derived from the open-file limit, 15 s header timeout), route `bench` → Streamlit;
- the attacker: a child process of this script (`--attack`) opening `--half-open`
  connections from `--addresses` source addresses (127.0.1.1, ...), each sending a
  request line and then nothing, and opening a new one whenever the proxy closes one
  (until it has opened 3 × `--half-open`);
- the visitor: this process, from 127.0.0.2, `GET /` with `Host: bench.localhost:P` on a
  new connection per request (a new visitor has to get through accept()).

Measured: the visitor's p50 and p99 latency for `--samples` requests idle, then again with
the attacker's connections all open (one load every 20 ms, so the attacker keeps
replacing the connections the proxy closes while it is measured); the ratio of the p50s
(target ≤ 2×), failed requests, and how many of the attacker's connections the proxy
refused or closed. Loopback only, bounded in count (`--half-open`, at most 3× that many
connects) and time (about 1 min).
Prints a Markdown table and writes bench/results/slowloris.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from proxy import Procs, free_port, wait_http  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
STREAMLIT = ROOT / ".venv" / "bin" / "streamlit"
APP = 'import streamlit as st\nst.title("Slowloris bench")\nst.write("hello")\n'
HALF_OPEN = b"GET / HTTP/1.1\r\nHost: bench.localhost\r\n"
VISITOR = "127.0.0.2"
PACE = 0.02


# The attacker (child process) -------------------------------------------------------------
async def attack(port: int, count: int, addresses: int, ready_file: Path) -> None:
    """Hold `count` half-open connections, replacing closed ones, until stdin closes."""
    loop = asyncio.get_running_loop()
    sources = [f"127.0.1.{1 + i % 250}" if i < 250 else f"127.0.2.{1 + i % 250}"
               for i in range(addresses)]
    opened = closed = failed = 0
    budget = 3 * count
    live: set[asyncio.Task] = set()
    connecting = asyncio.Semaphore(100)  # the proxy's listen backlog is 128

    async def hold(source: str) -> None:
        nonlocal opened, closed, failed
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            async with connecting:
                await loop.sock_connect(sock, ("127.0.0.1", port))
            opened += 1
        except OSError:
            failed += 1
            sock.close()
            return
        try:
            await loop.sock_sendall(sock, HALF_OPEN)
            await loop.sock_recv(sock, 1)  # returns when the proxy closes or answers 503
        except OSError:
            pass
        finally:
            closed += 1
            sock.close()

    def start(i: int) -> None:
        task = asyncio.create_task(hold(sources[i % len(sources)]))
        live.add(task)
        task.add_done_callback(live.discard)

    for started in range(count):
        start(started)
    while opened + failed < count:
        await asyncio.sleep(0.05)  # polling interval
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    ready_file.write_text(json.dumps({"connects_at_ready": started + 1}))
    while not stop.is_set():
        while len(live) < count and started < budget:
            started += 1
            start(started)
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except TimeoutError:
            pass
    at_ready = json.loads(ready_file.read_text())["connects_at_ready"]
    ready_file.write_text(json.dumps({"opened": opened, "closed_by_proxy": closed,
                                      "connect_failed": failed, "connects": started + 1,
                                      "connects_while_measured": started + 1 - at_ready}))
    for task in list(live):
        task.cancel()


# The visitor ------------------------------------------------------------------------------
def visit(port: int, samples: int) -> tuple[list[float], int]:
    """Latencies (s) of `samples` page loads from VISITOR, and the failures."""
    times: list[float] = []
    failures = 0
    host = f"bench.localhost:{port}"
    for _ in range(samples):
        time.sleep(PACE)  # one page load every PACE seconds, both phases alike
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                              source_address=(VISITOR, 0))
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status != 200:
                failures += 1
                continue
        except OSError:
            failures += 1
            continue
        times.append(time.perf_counter() - t0)
    return times, failures


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--half-open", type=int, default=12000)
    parser.add_argument("--addresses", type=int, default=48)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--attack", nargs=2, metavar=("PORT", "READY_FILE"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.attack:
        asyncio.run(attack(int(args.attack[0]), args.half_open, args.addresses,
                           Path(args.attack[1])))
        return
    procs = Procs()
    results: dict = {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "python": platform.python_version(), "half_open": args.half_open,
                     "addresses": args.addresses, "samples": args.samples}
    with tempfile.TemporaryDirectory(prefix="stcloud-bench-slowloris-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            run(args, procs, tmp, results)
        finally:
            procs.stop_all()
    out = ROOT / "bench" / "results" / "slowloris.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(markdown(results))


def run(args: argparse.Namespace, procs: Procs, tmp: Path, results: dict) -> None:
    app_file = tmp / "bench_app.py"
    app_file.write_text(APP)
    st_port, port = free_port(), free_port()
    st = procs.start("streamlit", [
        str(STREAMLIT), "run", str(app_file), "--server.port", str(st_port),
        "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false"], tmp / "streamlit.log", cwd=tmp)
    wait_http(st_port, "/_stcore/health", f"127.0.0.1:{st_port}", 60, st)
    proxy = procs.start("proxy", [str(PYTHON), str(ROOT / "bench" / "proxy_runner.py"),
                                  "--port", str(port), "--route", f"bench=127.0.0.1:{st_port}",
                                  "--log", str(tmp / "proxy.log")], tmp / "proxy.out")
    wait_http(port, "/", f"bench.localhost:{port}", 30, proxy)
    visit(port, 20)  # warm the upstream pool
    idle, idle_failed = visit(port, args.samples)

    ready = tmp / "attacker.ready"
    attacker = subprocess.Popen(
        [str(PYTHON), __file__, "--attack", str(port), str(ready), "--half-open",
         str(args.half_open), "--addresses", str(args.addresses)],
        stdin=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if attacker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the attacker did not open its connections")
            time.sleep(0.05)  # polling interval
        t0 = time.monotonic()
        loaded, loaded_failed = visit(port, args.samples)
        results["load_seconds"] = time.monotonic() - t0
    finally:
        assert attacker.stdin is not None
        attacker.stdin.close()
        attacker.wait(timeout=30)
    results["attacker"] = json.loads(ready.read_text())
    results.update(
        idle_p50_ms=1000 * statistics.median(idle), idle_p99_ms=1000 * pct(idle, 0.99),
        load_p50_ms=1000 * statistics.median(loaded), load_p99_ms=1000 * pct(loaded, 0.99),
        idle_failed=idle_failed, load_failed=loaded_failed,
        proxy_log_bytes=(tmp / "proxy.log").stat().st_size,
        proxy_alive=proxy.poll() is None)
    results["ratio_p50"] = results["load_p50_ms"] / results["idle_p50_ms"]


def markdown(r: dict) -> str:
    a = r["attacker"]
    return "\n".join([
        f"`bench/slowloris.py` ({r['machine']}, {r['cpus']} CPUs, Python {r['python']}): "
        f"{r['half_open']} half-open connections from {r['addresses']} addresses; "
        f"{r['samples']} page loads per phase.", "",
        "| phase | p50 | p99 | failed |", "|---|---|---|---|",
        f"| idle | {r['idle_p50_ms']:.1f} ms | {r['idle_p99_ms']:.1f} ms | "
        f"{r['idle_failed']} |",
        f"| slowloris | {r['load_p50_ms']:.1f} ms | {r['load_p99_ms']:.1f} ms | "
        f"{r['load_failed']} |", "",
        f"p50 ratio {r['ratio_p50']:.2f}× (target ≤ 2×). Attacker: {a['connects']} "
        f"connects ({a['connects_while_measured']} while measured), {a['opened']} "
        f"connected, {a['closed_by_proxy']} refused or closed by the proxy, "
        f"{a['connect_failed']} failed to connect; proxy log {r['proxy_log_bytes']} "
        f"bytes; proxy alive: {r['proxy_alive']}."])


if __name__ == "__main__":
    main()
