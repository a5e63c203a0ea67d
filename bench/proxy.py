"""Our proxy against direct Streamlit access, with nginx and configurable-http-proxy as
reference points, all in front of the same Streamlit 1.67 server in the same run.

    .venv/bin/python bench/proxy.py [--quick] [--sessions 1000] [--ramp 110]
                                    [--echo-sessions 2000] [--skip-install] [--skip-http]

What runs (all on 127.0.0.1, each on its own port):
- Streamlit: `streamlit run <one-file app>` (uvicorn), the upstream of everything below.
- ours: bench/proxy_runner.py → `start_proxy` with the route `bench` → Streamlit (and
  `echo` → a trivial aiohttp websocket echo server); clients send `Host: bench.localhost:P`.
- nginx (nginx-light): 1 worker, upstream keepalive 64, HTTP/1.1 upstream, websocket
  upgrade headers, access log off.
- configurable-http-proxy (npm, JupyterHub's proxy), default target = Streamlit.
- ours + QUICKACK: an experiment, our proxy with TCP_QUICKACK re-armed on every upstream
  read (see proxy_runner.py): what fixing the delayed-ACK stall would give.
A missing wrk, nginx or chp is installed once (apt-get / npm into
~/.cache/stcloud-bench/node); a reference that still cannot run is reported as missing.

Measured (wrk, 1 thread, keep-alive connections, --latency):
- index page, 32 connections, 10 s per target, as two 5 s halves (targets in order, then
  in reverse order, so drift of the shared machine weighs on all alike): req/s, p50, p99;
- the main JS bundle (~480 KB, path read from the index HTML), 8 connections, 5 s;
- `/_stcore/health`, 1 connection, 3 s: p50;
with the CPU used by Streamlit and by each proxy during each run. Then, direct vs ours:
websocket round trips (a rerun BackMsg → script_finished on a held session; a fresh session
open → first script_finished; a 64-byte echo through the echo upstream), and concurrency:
Streamlit sessions direct (a few) and through ours (up to --sessions within --ramp
seconds), idle echo websockets through a fresh proxy (its RSS before/after → memory per
relayed websocket), and the same with the proxy's soft RLIMIT_NOFILE at 1024.

Prints a Markdown table and writes bench/results/proxy.json. Every load is bounded in
count and time; the whole run takes about 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import proxy_ws  # noqa: E402

from bench.proxy_procs import (  # noqa: E402
    NGINX_CONF,
    Procs,
    ensure_tools,
    free_port,
    http_get,
    tree_cpu,
    wait_http,
    wait_port,
    wrk,
)
from bench.proxy_report import markdown  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
STREAMLIT = ROOT / ".venv" / "bin" / "streamlit"
RESULTS = ROOT / "bench" / "results" / "proxy.json"

APP = '''import streamlit as st

st.title("Proxy benchmark")
st.write("Hello from a one-file app.")
'''

# Run ----------------------------------------------------------------------------------------
def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short runs, for the harness")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument("--ramp", type=float, default=110,
                        help="deadline in seconds for opening the Streamlit sessions via ours")
    parser.add_argument("--echo-sessions", type=int, default=2000,
                        help="idle websockets held through ours to the echo upstream")
    parser.add_argument("--skip-http", action="store_true",
                        help="websocket parts only (for iterating on the harness)")
    parser.add_argument("--profile", action="store_true",
                        help="run our proxy under cProfile (slower; for finding hot spots)")
    args = parser.parse_args()
    index_s, bundle_s, health_s, warm_s = (3, 2, 2, 1) if args.quick else (10, 5, 3, 1)
    rtt_count = 15 if args.quick else 50
    sessions = min(args.sessions, 200) if args.quick else args.sessions

    tools = ensure_tools(not args.skip_install)
    if not tools["wrk"]:
        sys.exit("wrk is required (apt-get install -y wrk)")
    started = time.monotonic()
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": loadavg()},
        "tools": {k: bool(v) for k, v in tools.items()}, "missing": [], "http": {},
    }
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="stcloud-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            run(args, tools, procs, tmp, results, index_s, bundle_s, health_s, warm_s,
                rtt_count, sessions)
        finally:
            procs.stop_all()
    results["machine"]["loadavg_end"] = loadavg()
    results["wall_s"] = time.monotonic() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    print(f"\nwrote {RESULTS.relative_to(ROOT)} in {results['wall_s']:.0f} s")


def run(args, tools, procs: Procs, tmp: Path, results: dict, index_s: float,
        bundle_s: float, health_s: float, warm_s: float, rtt_count: int,
        sessions: int) -> None:
    ramp_s = 25 if args.quick else args.ramp
    # 1. Streamlit ---------------------------------------------------------------------------
    app_file = tmp / "bench_app.py"
    app_file.write_text(APP)
    st_port = free_port()
    st_proc = procs.start("streamlit", [
        str(STREAMLIT), "run", str(app_file), "--server.port", str(st_port),
        "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false"], tmp / "streamlit.log", cwd=tmp)
    t0 = time.monotonic()
    wait_http(st_port, "/_stcore/health", f"127.0.0.1:{st_port}", 60, st_proc)
    results["streamlit_start_s"] = time.monotonic() - t0

    # 2. Proxies ------------------------------------------------------------------------------
    echo_port = free_port()
    echo_proc = procs.start("echo", [str(PYTHON), str(ROOT / "bench" / "proxy_ws.py"), "echo",
                                     "--port", str(echo_port)], tmp / "echo.log")
    def start_ours(name: str, *extra: str, nofile: int = 0) -> tuple[int, subprocess.Popen]:
        port = free_port()
        cmd = [str(PYTHON), str(ROOT / "bench" / "proxy_runner.py"), "--port", str(port),
               "--route", f"bench=127.0.0.1:{st_port}",
               "--route", f"echo=127.0.0.1:{echo_port}", "--log", str(tmp / f"{name}-proxy.log"),
               *extra]

        def limit_files() -> None:  # a soft RLIMIT_NOFILE, as a service manager may set
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
        proc = procs.start(name, cmd, tmp / f"{name}.log",
                           preexec_fn=limit_files if nofile else None)
        wait_http(port, "/_stcore/health", f"bench.localhost:{port}", 30, proc)
        return port, proc

    wait_port(echo_port, 30, echo_proc)
    ours_port, ours_proc = start_ours(
        "ours", *(["--profile", str(RESULTS.parent / "proxy.prof")] if args.profile else []))
    qa_port, qa_proc = start_ours("ours_qa", "--quickack")
    results["proxy_rss_kib_idle_start"] = proxy_ws.rss_kib(ours_proc.pid)
    endpoints: dict[str, dict] = {
        "direct": {"port": st_port, "host": f"127.0.0.1:{st_port}", "pid": None},
        "ours": {"port": ours_port, "host": f"bench.localhost:{ours_port}",
                 "pid": ours_proc.pid},
    }

    if tools["nginx"]:
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=st_port, port=port))
        proc = procs.start("nginx", [tools["nginx"], "-e", str(tmp / "nginx-error.log"),
                                     "-p", str(tmp), "-c", str(conf)], tmp / "nginx.log")
        try:
            wait_http(port, "/_stcore/health", f"127.0.0.1:{port}", 15, proc)
            endpoints["nginx"] = {"port": port, "host": f"127.0.0.1:{port}", "pid": proc.pid}
        except RuntimeError as exc:
            results["missing"].append(f"nginx: {exc}")
    else:
        results["missing"].append("nginx: not installed")
    if tools["chp"]:
        port, api_port = free_port(), free_port()
        proc = procs.start("chp", [
            tools["chp"], "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
            "--api-port", str(api_port), "--default-target", f"http://127.0.0.1:{st_port}",
            "--log-level", "warn"], tmp / "chp.log",
            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": os.urandom(16).hex()})
        try:
            wait_http(port, "/_stcore/health", f"127.0.0.1:{port}", 20, proc)
            endpoints["chp"] = {"port": port, "host": f"127.0.0.1:{port}", "pid": proc.pid}
        except RuntimeError as exc:
            results["missing"].append(f"chp: {exc}")
    else:
        results["missing"].append("configurable-http-proxy: not installed")
    endpoints["ours_qa"] = {"port": qa_port, "host": f"bench.localhost:{qa_port}",
                            "pid": qa_proc.pid}

    # Same bytes through every endpoint, and the bundle's path from the index HTML.
    status, index = http_get(st_port, "/", f"127.0.0.1:{st_port}")
    scripts = re.findall(rb'<script[^>]+src="\.?/?([^"]+\.js)"', index)
    if status != 200 or not scripts:
        raise RuntimeError("no script in Streamlit's index page")
    bundle_path = "/" + scripts[0].decode()
    _, bundle = http_get(st_port, bundle_path, f"127.0.0.1:{st_port}")
    results["paths"] = {"index": "/", "index_bytes": len(index), "bundle": bundle_path,
                        "bundle_bytes": len(bundle)}
    for name, ep in endpoints.items():
        for path, body in (("/", index), (bundle_path, bundle)):
            got_status, got = http_get(ep["port"], path, ep["host"])
            if got_status != 200 or got != body:
                raise RuntimeError(f"{name} answered {path} with {got_status}, "
                                   f"{len(got)} bytes (direct: {len(body)})")

    # 3. HTTP load -----------------------------------------------------------------------------
    # The index load runs in two halves, targets in order then in reverse order (ABCDE
    # EDCBA), so a drift of the shared machine weighs on every target alike; its figures
    # are the mean of the two halves. Bundle and health run once per target.
    def measure(name: str, path: str, conns: int, seconds: float) -> dict:
        ep = endpoints[name]
        cpu0 = (tree_cpu(st_proc.pid), tree_cpu(ep["pid"]))
        la = loadavg()
        res = wrk(tools["wrk"], ep["port"], path, ep["host"], conns, seconds)
        cpu1 = (tree_cpu(st_proc.pid), tree_cpu(ep["pid"]))
        res["streamlit_cpu_pct"] = 100 * (cpu1[0] - cpu0[0]) / seconds
        res["proxy_cpu_pct"] = 100 * (cpu1[1] - cpu0[1]) / seconds if ep["pid"] else None
        res["loadavg_before"] = la
        return res

    def show(load: str, name: str, res: dict) -> None:
        print(f"{load:8} {name:7} {res['rps']:8.1f} req/s  p50 {res.get('p50_ms', 0):7.2f}"
              f" ms  p99 {res.get('p99_ms', 0):7.2f} ms  streamlit cpu "
              f"{res['streamlit_cpu_pct']:3.0f}%  proxy cpu "
              f"{res['proxy_cpu_pct'] or 0:3.0f}%", flush=True)

    names = list(endpoints)
    loads = [("index", "/", 32, index_s), ("bundle", bundle_path, 8, bundle_s),
             ("health", "/_stcore/health", 1, health_s)] if not args.skip_http else []
    for load, path, conns, seconds in loads:
        results["http"][load] = {"connections": conns, "seconds": seconds}
        halves = 2 if load == "index" else 1
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for half in range(halves):
            for name in (names if half == 0 else list(reversed(names))):
                if half == 0:  # warm the proxies' upstream pools and wrk's connections
                    wrk(tools["wrk"], endpoints[name]["port"], path, endpoints[name]["host"],
                        conns, warm_s)
                res = measure(name, path, conns, seconds / halves)
                runs[name].append(res)
                show(f"{load}/{half + 1}" if halves > 1 else load, name, res)
        for name, parts in runs.items():
            merged = {key: sum(p[key] or 0 for p in parts) / len(parts)
                      for key in ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms",
                                  "streamlit_cpu_pct", "proxy_cpu_pct") if key in parts[0]}
            if parts[0]["proxy_cpu_pct"] is None:
                merged["proxy_cpu_pct"] = None
            for key in ("requests", "socket_errors", "non_2xx"):
                merged[key] = sum(p[key] for p in parts)
            merged["halves"] = parts if halves > 1 else None
            results["http"][load][name] = merged

    # 4. Websocket round trips -----------------------------------------------------------------
    ws_targets = {"direct": (proxy_ws.ws_url(st_port), endpoints["direct"]["host"]),
                  "ours": (proxy_ws.ws_url(ours_port), endpoints["ours"]["host"]),
                  "ours_qa": (proxy_ws.ws_url(qa_port), endpoints["ours_qa"]["host"])}
    results["ws"] = asyncio.run(proxy_ws.roundtrips(ws_targets, "streamlit", rtt_count))
    echo_targets = {"direct": (proxy_ws.ws_url(echo_port), f"127.0.0.1:{echo_port}"),
                    "ours": (proxy_ws.ws_url(ours_port), f"echo.localhost:{ours_port}"),
                    "ours_qa": (proxy_ws.ws_url(qa_port), f"echo.localhost:{qa_port}")}
    results["ws_echo"] = asyncio.run(proxy_ws.roundtrips(echo_targets, "echo", rtt_count * 4))
    print("ws", json.dumps({k: v["roundtrip"].get("p50_ms") for k, v in results["ws"].items()}),
          "echo", json.dumps({k: v["roundtrip"].get("p50_ms")
                              for k, v in results["ws_echo"].items()}), flush=True)

    # 5. Concurrency ---------------------------------------------------------------------------
    # a) Streamlit sessions direct, a few, on the still clean Streamlit: its session rate
    #    without a proxy. b) Streamlit sessions through ours (the proxy that served the HTTP
    #    load), up to `sessions` within the ramp deadline. c) Idle websockets to the echo
    #    upstream through a fresh proxy process (so its RSS delta is not hidden by memory the
    #    first one freed and reuses): the proxy's own cost per relayed websocket. d) The same
    #    with the proxy's soft RLIMIT_NOFILE at 1024 (a common service default): each relayed
    #    websocket holds two descriptors.
    conc: dict[str, dict] = {}
    conc["streamlit_direct"] = asyncio.run(proxy_ws.hold_sessions(
        proxy_ws.ws_url(st_port), endpoints["direct"]["host"], "streamlit",
        max(20, sessions // 10), proxy_pid=None, upstream_pid=st_proc.pid,
        ramp_deadline=30))
    _print_conc("streamlit direct", conc["streamlit_direct"])
    conc["streamlit_ours"] = asyncio.run(proxy_ws.hold_sessions(
        proxy_ws.ws_url(ours_port), endpoints["ours"]["host"], "streamlit", sessions,
        proxy_pid=ours_proc.pid, upstream_pid=st_proc.pid, ramp_deadline=ramp_s))
    _print_conc("streamlit via ours", conc["streamlit_ours"])
    echo_proxy_port, echo_proxy = start_ours("ours_echo")
    conc["echo_ours"] = asyncio.run(proxy_ws.hold_sessions(
        proxy_ws.ws_url(echo_proxy_port), f"echo.localhost:{echo_proxy_port}", "echo",
        min(args.echo_sessions, 300) if args.quick else args.echo_sessions,
        proxy_pid=echo_proxy.pid, upstream_pid=echo_proc.pid,
        concurrency=100, ramp_deadline=30))
    _print_conc("echo via ours", conc["echo_ours"])
    low_port, low_proxy = start_ours("ours_nofile", nofile=1024)
    conc["echo_ours_nofile_1024"] = asyncio.run(proxy_ws.hold_sessions(
        proxy_ws.ws_url(low_port), f"echo.localhost:{low_port}", "echo", 1000,
        proxy_pid=low_proxy.pid, upstream_pid=echo_proc.pid, concurrency=100,
        ramp_deadline=12, first_timeout=5, hold=2))
    _print_conc("echo via ours, nofile 1024", conc["echo_ours_nofile_1024"])
    results["nofile_proxy_log"] = _grep(tmp / "ours_nofile-proxy.log",
                                        (" WARNING ", " ERROR "))[:5]
    results["nofile_proxy_stderr"] = _grep(tmp / "ours_nofile.log", ("Error", "error"))[:5]
    results["concurrency"] = conc
    results["proxy_log_lines"] = _count_lines(tmp / "ours-proxy.log")
    results["proxy_rss_kib_end"] = proxy_ws.rss_kib(ours_proc.pid)
    results["proxy_log_warnings"] = _grep(tmp / "ours-proxy.log", (" WARNING ", " ERROR "))[:10]


def _print_conc(label: str, r: dict) -> None:
    print(f"{label}: alive {r['alive_after_hold']}/{r['target']} in {r['ramp_s']:.1f} s, "
          f"probes {r['probes_answered']}, proxy KiB/session "
          f"{r.get('proxy_kib_per_session', 0):.1f}, upstream KiB/session "
          f"{r.get('upstream_kib_per_session', 0):.1f}, failures {r['failures']}", flush=True)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


def _grep(path: Path, needles: tuple[str, ...]) -> list[str]:
    try:
        return [line.rstrip() for line in path.read_text(errors="replace").splitlines()
                if any(n in line for n in needles)]
    except OSError:
        return []


if __name__ == "__main__":
    main()
