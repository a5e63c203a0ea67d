"""Streamlit's static files through our proxy (served from the app's environment,
supervisor/proxy/static_files.py) against direct Streamlit and nginx in front of the same
Streamlit 1.67 server, in one run.

    .venv/bin/python bench/proxy_static.py [--seconds 6] [--skip-install]

What runs (127.0.0.1, each on its own port): `streamlit run` of a one-file app; ours:
`start_proxy` (this file's `--serve` mode) with the route `bench` → Streamlit whose
`static_env` is this checkout's .venv (the environment that Streamlit runs from, linked
under a temporary `envs_dir`), so the proxy answers the index shell and bundles itself;
nginx (nginx-light, bench/proxy.py's configuration: 1 worker, upstream keepalive 64).

Measured with wrk (1 thread, 32 keep-alive connections for the index, 8 for the main JS
bundle, ~480 KB), each load in two halves (targets in order, then reversed, so drift of
the shared machine weighs on all alike), without and with `Accept-Encoding: gzip`: req/s
and p50 per target, and ours and nginx as ratios to direct. Prints a Markdown table and
writes bench/results/proxy_static.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from proxy import (  # noqa: E402
    APP,
    NGINX_CONF,
    PYTHON,
    STREAMLIT,
    Procs,
    ensure_tools,
    free_port,
    http_get,
    loadavg,
    parse_wrk,
    wait_http,
)

RESULTS = ROOT / "bench" / "results" / "proxy_static.json"
TARGETS = ("direct", "ours", "nginx")
ENV_NAME = "bench"


async def serve(port: int, upstream: int, envs: Path, data_dir: Path) -> None:
    """Our proxy with one route whose static files come from `envs/ENV_NAME`."""
    from backend.platform.settings_load import load_settings
    from supervisor.proxy import start_proxy
    from supervisor.routes import Route, RouteTable

    settings = load_settings(env={}, data_dir=data_dir, port=port, envs_dir=envs)
    routes = RouteTable()
    routes.set(Route(app_id=1, subdomain="bench", state="running",
                     address=("127.0.0.1", upstream), static_env=ENV_NAME))
    runner = await start_proxy(settings, routes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def wrk(tool: str, port: int, path: str, headers: list[str], connections: int,
        seconds: float) -> dict:
    cmd = [tool, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "10s"]
    for header in headers:
        cmd += ["-H", header]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True,
                         text=True, timeout=seconds + 30).stdout
    return parse_wrk(out)


def measure(tool: str, endpoints: dict[str, dict], path: str, connections: int,
            seconds: float, gzip: bool) -> dict[str, dict]:
    """wrk against every endpoint in two halves (in order, then reversed); the mean."""
    halves: dict[str, list[dict]] = {name: [] for name in endpoints}
    order = list(endpoints)
    for names in (order, order[::-1]):
        for name in names:
            ep = endpoints[name]
            headers = [f"Host: {ep['host']}"] + (["Accept-Encoding: gzip"] if gzip else [])
            halves[name].append(wrk(tool, ep["port"], path, headers, connections,
                                    seconds / 2))
    out = {}
    for name, runs in halves.items():
        out[name] = {"rps": sum(r["rps"] for r in runs) / len(runs),
                     "p50_ms": sum(r.get("p50_ms", 0.0) for r in runs) / len(runs),
                     "non_2xx": sum(r["non_2xx"] for r in runs),
                     "socket_errors": sum(r["socket_errors"] for r in runs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0, help="per load and target")
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument("--serve", nargs=4, metavar=("PORT", "UPSTREAM", "ENVS", "DATA"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        port, upstream, envs, data = args.serve
        asyncio.run(serve(int(port), int(upstream), Path(envs), Path(data)))
        return
    tools = ensure_tools(not args.skip_install)
    if not tools["wrk"]:
        sys.exit("wrk is required (apt-get install -y wrk)")
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg()},
                     "missing": [], "loads": {}}
    procs = Procs()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="stcloud-bench-static-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            run(tools, procs, tmp, results, args.seconds)
        finally:
            procs.stop_all()
    results["machine"]["loadavg_end"] = loadavg()
    results["wall_s"] = time.monotonic() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(markdown(results))


def run(tools: dict[str, str], procs: Procs, tmp: Path, results: dict,
        seconds: float) -> None:
    app_file = tmp / "bench_app.py"
    app_file.write_text(APP)
    st_port = free_port()
    st_proc = procs.start("streamlit", [
        str(STREAMLIT), "run", str(app_file), "--server.port", str(st_port),
        "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false"], tmp / "streamlit.log", cwd=tmp)
    wait_http(st_port, "/_stcore/health", f"127.0.0.1:{st_port}", 60, st_proc)
    envs = tmp / "envs"
    envs.mkdir()
    os.symlink(ROOT / ".venv", envs / ENV_NAME)  # the environment Streamlit runs from
    ours_port = free_port()
    ours = procs.start("ours", [str(PYTHON), str(Path(__file__).resolve()), "--serve",
                                str(ours_port), str(st_port), str(envs), str(tmp / "data")],
                       tmp / "ours.log")
    wait_http(ours_port, "/_stcore/health", f"bench.localhost:{ours_port}", 30, ours)
    endpoints: dict[str, dict] = {
        "direct": {"port": st_port, "host": f"127.0.0.1:{st_port}"},
        "ours": {"port": ours_port, "host": f"bench.localhost:{ours_port}"}}
    if tools["nginx"]:
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=st_port, port=port))
        proc = procs.start("nginx", [tools["nginx"], "-e", str(tmp / "nginx-error.log"),
                                     "-p", str(tmp), "-c", str(conf)], tmp / "nginx.log")
        wait_http(port, "/_stcore/health", f"127.0.0.1:{port}", 15, proc)
        endpoints["nginx"] = {"port": port, "host": f"127.0.0.1:{port}"}
    else:
        results["missing"].append("nginx: not installed")
    # Every target answers the same bytes (uncompressed) before anything is measured.
    _, index = http_get(st_port, "/", f"127.0.0.1:{st_port}")
    start = index.index(b"static/js/index.")
    bundle_path = "/" + index[start:index.index(b".js", start) + 3].decode()
    _, bundle = http_get(st_port, bundle_path, f"127.0.0.1:{st_port}")
    for name, ep in endpoints.items():
        for path, body in (("/", index), (bundle_path, bundle)):
            status, got = http_get(ep["port"], path, ep["host"])
            if status != 200 or got != body:
                raise RuntimeError(f"{name} answered {path} with {status}, {len(got)} bytes")
    results["paths"] = {"bundle": bundle_path, "index_bytes": len(index),
                        "bundle_bytes": len(bundle)}
    for label, path, conns in (("index", "/", 32), ("bundle", bundle_path, 8)):
        for gzip in (False, True):
            key = f"{label}{' gzip' if gzip else ''}"
            results["loads"][key] = measure(tools["wrk"], endpoints, path, conns, seconds,
                                            gzip)


def markdown(r: dict) -> str:
    names = [n for n in TARGETS if n in next(iter(r["loads"].values()), {})]
    head = "| load | " + " | ".join(f"{n} req/s, p50" for n in names) + \
        " | ours ÷ direct (req/s, p50) | nginx ÷ direct (req/s, p50) |"
    lines = [head, "|" + "---|" * (len(names) + 3)]
    for load, by in r["loads"].items():
        cells = [f"{by[n]['rps']:.0f}, {by[n]['p50_ms']:.2f} ms" for n in names]
        d = by["direct"]
        ratios = []
        for n in ("ours", "nginx"):
            ratios.append(f"{by[n]['rps'] / d['rps']:.2f}×, {by[n]['p50_ms'] / d['p50_ms']:.2f}×"
                          if n in by and d["rps"] and d["p50_ms"] else "–")
        lines.append(f"| {load} | " + " | ".join(cells + ratios) + " |")
    m = r["machine"]
    lines.append(f"\n{m['cpus']} CPUs, load average {m['loadavg_start']:.1f} → "
                 f"{m['loadavg_end']:.1f}; wall {r['wall_s']:.0f} s; missing: "
                 f"{', '.join(r['missing']) or 'none'}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
