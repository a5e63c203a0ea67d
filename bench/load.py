"""Bounded load test: many viewers across many apps through the proxy, against the same load
sent straight to the apps (the baseline, measured in the same run), plus a few dashboard
users in both phases (straight to the dashboard's port in the baseline); the supervisor's
own memory and CPU sampled the whole time.

A viewer is a browser stand-in: it loads the app page (GET / with a browser's Accept, so
the proxy's page path runs: "page load"), opens a real Streamlit session on
`/_stcore/stream` and runs the script ("session open": websocket connect → first
`script_finished`), then reruns it every `rerun_every` s and reloads
(closes, GET /, new session) every `reload_every` s, until the end. Viewers start at
`ramp` per second, because Streamlit itself opens only ~6–13 new sessions/s on 2 cores
(docs/benchmarks.md). A dashboard user GETs the dashboard and opens a dashboard session
every few seconds. Errors: any non-200, failed websocket, session without `new_session`,
script that does not finish within 30 s.

    .venv/bin/python bench/load.py [--apps 20 --viewers 200 --duration 60 --ramp 8]
                                   [--dashboard-users 3 --rounds 2]

Each phase is `duration` s; with `--rounds 2` (default) they run direct, proxy, proxy,
direct, and each side's samples are pooled, so drift of the shared machine during the run
weighs on both alike (counts are then per two phases).

Writes bench/results/load.json and prints the tables of docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from tests.support.streamlit_client import rerun_message  # noqa: E402

STREAM_PATH = "/_stcore/stream"
RERUN = rerun_message()
EARLY = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_EARLY_FOR_RERUN")
SCRIPT_TIMEOUT = 30.0
# A browser's navigation Accept: through the proxy the GET takes the page path (identity,
# the overlay injected, the visitor cookie), not the asset path. No Sec-Fetch-* and no
# Upgrade-Insecure-Requests, so the once-per-browser silent sign-in bounce is not measured.
PAGE_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
APP_PAGE = "import streamlit as st\nst.title('Load')\nst.write(sum(range(1000)))\n"


@dataclass
class Target:
    """Where a viewer goes: the TCP port and the Host header (an app via the proxy, or an
    app's own port for the baseline)."""
    port: int
    host: str


@dataclass
class LoadStats:
    page_load: list[float] = field(default_factory=list)
    session_open: list[float] = field(default_factory=list)
    rerun: list[float] = field(default_factory=list)
    dashboard: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sessions: int = 0

    def merge(self, other: LoadStats) -> None:
        for name in ("page_load", "session_open", "rerun", "dashboard", "errors"):
            getattr(self, name).extend(getattr(other, name))
        self.sessions += other.sessions

    @property
    def requests(self) -> int:
        return len(self.page_load) + len(self.session_open) + len(self.rerun) + \
            len(self.dashboard) + len(self.errors)

    @property
    def error_rate(self) -> float:
        return len(self.errors) / max(1, self.requests)


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of samples in seconds, in milliseconds (nan when empty)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1e3


async def _script_finished(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Read ForwardMsgs until the script finished; True if a new_session came by."""
    new_session = False
    deadline = time.monotonic() + SCRIPT_TIMEOUT
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"websocket ended: {msg.type.name}")
        fwd = ForwardMsg()
        fwd.ParseFromString(msg.data)
        kind = fwd.WhichOneof("type")
        new_session = new_session or kind == "new_session"
        if kind == "script_finished" and fwd.script_finished != EARLY:
            return new_session


async def _page(http: aiohttp.ClientSession, target: Target, stats_list: list[float],
                stats: LoadStats, what: str) -> None:
    start = time.monotonic()
    async with http.get(f"http://127.0.0.1:{target.port}/", headers={
            "Host": target.host, "Accept": PAGE_ACCEPT}) as resp:
        await resp.read()
        if resp.status != 200:
            raise ConnectionError(f"{what} GET / -> {resp.status}")
    stats_list.append(time.monotonic() - start)


async def viewer(target: Target, stop_at: float, stats: LoadStats, rng: random.Random,
                 rerun_every: float, reload_every: float) -> None:
    """One browser: page, session, reruns, reload; until `stop_at` (monotonic)."""
    headers = {"Host": target.host, "Origin": f"http://{target.host}"}
    url = f"ws://127.0.0.1:{target.port}{STREAM_PATH}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        while time.monotonic() < stop_at:
            reload_at = time.monotonic() + reload_every * rng.uniform(0.8, 1.2)
            try:
                await _page(http, target, stats.page_load, stats, "app")
                start = time.monotonic()
                async with http.ws_connect(url, protocols=("streamlit",), headers=headers,
                                           max_msg_size=0) as ws:
                    await ws.send_bytes(RERUN)
                    if not await _script_finished(ws):
                        raise ConnectionError("no new_session")
                    stats.session_open.append(time.monotonic() - start)
                    stats.sessions += 1
                    while time.monotonic() < min(reload_at, stop_at):
                        await asyncio.sleep(min(rerun_every * rng.uniform(0.8, 1.2),
                                                max(0.0, stop_at - time.monotonic())))
                        if time.monotonic() >= stop_at:
                            break
                        start = time.monotonic()
                        await ws.send_bytes(RERUN)
                        await _script_finished(ws)
                        stats.rerun.append(time.monotonic() - start)
            except (TimeoutError, aiohttp.ClientError, ConnectionError, OSError) as exc:
                stats.errors.append(f"{target.host}: {exc!r}"[:300])
                await asyncio.sleep(1.0)  # a failing browser retries after a second


async def dashboard_user(target: Target, stop_at: float, stats: LoadStats, every: float
                         ) -> None:
    headers = {"Host": target.host, "Origin": f"http://{target.host}"}
    url = f"ws://127.0.0.1:{target.port}{STREAM_PATH}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        while time.monotonic() < stop_at:
            try:
                await _page(http, target, stats.dashboard, stats, "dashboard")
                start = time.monotonic()
                async with http.ws_connect(url, protocols=("streamlit",), headers=headers,
                                           max_msg_size=0) as ws:
                    await ws.send_bytes(RERUN)
                    await _script_finished(ws)
                stats.dashboard.append(time.monotonic() - start)
            except (TimeoutError, aiohttp.ClientError, ConnectionError, OSError) as exc:
                stats.errors.append(f"dashboard: {exc!r}"[:300])
            await asyncio.sleep(every)  # the user's think time


async def run_load(targets: list[Target], viewers: int, duration: float, ramp: float,
                   rerun_every: float = 5.0, reload_every: float = 30.0,
                   dashboard: Target | None = None, dashboard_users: int = 0,
                   seed: int = 1) -> LoadStats:
    """`viewers` browsers spread round-robin over `targets`, started at `ramp`/s, all
    stopping `duration` s after the first started (so the ramp is part of the duration)."""
    stats = LoadStats()
    rng = random.Random(seed)
    stop_at = time.monotonic() + duration
    tasks = [asyncio.create_task(dashboard_user(dashboard, stop_at, stats, 3.0))
             for _ in range(dashboard_users if dashboard else 0)]
    for i in range(viewers):
        tasks.append(asyncio.create_task(viewer(
            targets[i % len(targets)], stop_at, stats, random.Random(rng.random()),
            rerun_every, reload_every)))
        await asyncio.sleep(1.0 / ramp)  # the ramp's pacing
    await asyncio.wait_for(asyncio.gather(*tasks), duration + SCRIPT_TIMEOUT + 60)
    return stats


class RssSampler:
    """Samples a process's RSS (MiB) every `interval` s in a thread: (seconds, MiB)."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.cpu: list[float] = []  # % of one core over each interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss / 2**20
                times = self.proc.cpu_times()
            except psutil.Error:
                return
            now = time.monotonic()
            busy = times.user + times.system
            if last is not None:
                self.cpu.append(100.0 * (busy - last[1]) / max(1e-6, now - last[0]))
            last = (now, busy)
            self.samples.append((now - self._t0, rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def window_mean(self, start: float, end: float) -> float:
        values = [m for t, m in self.samples if start <= t < end]
        return statistics.fmean(values) if values else float("nan")

    def flatness(self, warmup: float, window: float = 10.0) -> tuple[float, float, float]:
        """(mean of the first `window` s after `warmup`, mean of the last `window` s,
        their ratio last/first)."""
        end = self.samples[-1][0] if self.samples else 0.0
        first = self.window_mean(warmup, warmup + window)
        last = self.window_mean(end - window, end + 1)
        return first, last, last / first if first else float("nan")


# The benchmark ---------------------------------------------------------------------------
def summary(stats: LoadStats) -> dict[str, float]:
    return {"requests": stats.requests, "sessions": stats.sessions,
            "errors": len(stats.errors), "error_rate": stats.error_rate,
            "page_p50_ms": pct(stats.page_load, 0.5), "page_p99_ms": pct(stats.page_load, 0.99),
            "session_p50_ms": pct(stats.session_open, 0.5),
            "session_p99_ms": pct(stats.session_open, 0.99),
            "rerun_p50_ms": pct(stats.rerun, 0.5), "rerun_p99_ms": pct(stats.rerun, 0.99),
            "dashboard_p50_ms": pct(stats.dashboard, 0.5),
            "dashboard_p99_ms": pct(stats.dashboard, 0.99)}


def main() -> None:
    from backend.accounts import auth
    from backend.apps import service as app_service
    from backend.context import open_context
    from backend.platform.settings_load import load_settings
    from supervisor.routes import dashboard_addresses
    from supervisor.runtimes.process import free_port
    from tests.conftest import CACHE_ROOT, GitRepo
    from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--ramp", type=float, default=8.0, help="new viewers per second")
    parser.add_argument("--dashboard-users", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2,
                        help="2: phases in ABBA order (direct, proxy, proxy, direct)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stcloud-load-"))
    settings = load_settings(env={}, data_dir=work / "data", port=free_port(),
                             runtime="process", envs_dir=CACHE_ROOT / "bench-envs",
                             uv_cache_dir=CACHE_ROOT / "uv", reconcile_interval=0.5,
                             git_poll_interval=0)
    ctx = open_context(settings)
    auth.ensure_first_admin(ctx)
    admin = auth.get_user(ctx, settings.admin_username)
    repo = GitRepo(work / "repos" / "load")
    repo.commit({"streamlit_app.py": APP_PAGE}, "initial")
    sup = SupervisorProcess(settings, work / "supervisor.log").start(timeout=120)
    results: dict[str, object] = {"args": vars(args), "started": time.strftime("%FT%T")}
    try:
        ids = [app_service.deploy_app(ctx, admin, repo_url=repo.url, subdomain=f"load{i}").id
               for i in range(args.apps)]
        rows = [wait_for_state(ctx, i, {"running"}, timeout=600, sup=sup) for i in ids]
        direct = [Target(json.loads(a.runtime_state)["address"][1],
                         f"127.0.0.1:{json.loads(a.runtime_state)['address'][1]}")
                  for a in rows]
        proxied = [Target(settings.port, f"load{i}.localhost:{settings.port}")
                   for i in range(args.apps)]
        dash = Target(settings.port, f"localhost:{settings.port}")
        # The baseline carries the same dashboard users, straight to the dashboard's own
        # port: both phases then load the machine alike (the dashboard's Streamlit process
        # is one of the busiest), and only the proxy hop differs.
        dash_address = wait_until(lambda: dashboard_addresses(ctx)[0], 60,
                                  "the dashboard address", sup)
        dash_direct = Target(dash_address[1], f"{dash_address[0]}:{dash_address[1]}")
        print(f"{args.apps} apps running; load: {args.viewers} viewers, {args.duration:.0f} s,"
              f" ramp {args.ramp}/s", flush=True)
        def phase(proxy: bool) -> LoadStats:
            if proxy:
                return asyncio.run(run_load(proxied, args.viewers, args.duration, args.ramp,
                                            dashboard=dash,
                                            dashboard_users=args.dashboard_users))
            return asyncio.run(run_load(direct, args.viewers, args.duration, args.ramp,
                                        dashboard=dash_direct,
                                        dashboard_users=args.dashboard_users))

        # Phases in ABBA order (direct, proxy, proxy, direct) with --rounds 2: the shared
        # machine's drift during the run then weighs on both sides alike.
        base, ours = LoadStats(), LoadStats()
        base.merge(phase(False))
        print("direct:", json.dumps(summary(base)), flush=True)
        with RssSampler(sup.pid) as rss:
            for _ in range(args.rounds):
                ours.merge(phase(True))
                print("proxy:", json.dumps(summary(ours)), flush=True)
        for _ in range(args.rounds - 1):
            base.merge(phase(False))
            print("direct:", json.dumps(summary(base)), flush=True)
        results["direct"] = summary(base)
        results["proxy"] = summary(ours)
        warmup = args.viewers / args.ramp  # the ramp is the warm-up
        first, last, ratio = rss.flatness(warmup)
        results["supervisor_rss"] = {"samples": rss.samples, "first10_mib": first,
                                     "last10_mib": last, "ratio": ratio,
                                     "max_mib": max(m for _, m in rss.samples),
                                     "cpu_mean_pct": statistics.fmean(rss.cpu or [0.0]),
                                     "cpu_max_pct": max(rss.cpu or [0.0])}
        results["errors_sample"] = (base.errors + ours.errors)[:20]
        print_tables(results)
    finally:
        sup.stop()
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "load.json").write_text(json.dumps(results, indent=2, default=str))


def print_tables(results: dict[str, Any]) -> None:
    d, p, r = results["direct"], results["proxy"], results["supervisor_rss"]
    print("\n| measure | direct (baseline) | through the proxy | proxy/direct |")
    print("|---|---|---|---|")
    for key, label in [("requests", "requests (pages, sessions, reruns)"),
                       ("sessions", "Streamlit sessions opened"),
                       ("errors", "errors")]:
        ratio = p[key] / d[key] if d[key] else float("nan")
        print(f"| {label} | {d[key]} | {p[key]} | {ratio:.2f}× |")
    print(f"| error rate | {d['error_rate']:.2%} | {p['error_rate']:.2%} | |")
    for key, label in [("page", "page load"), ("session", "session open"),
                       ("rerun", "rerun")]:
        for q in ("p50", "p99"):
            a, b = d[f"{key}_{q}_ms"], p[f"{key}_{q}_ms"]
            print(f"| {label} {q} | {a:.1f} ms | {b:.1f} ms | {b / a:.2f}× |")
    print(f"| dashboard (page + session) p50 / p99 | {d['dashboard_p50_ms']:.0f} / "
          f"{d['dashboard_p99_ms']:.0f} ms | {p['dashboard_p50_ms']:.0f} / "
          f"{p['dashboard_p99_ms']:.0f} ms | "
          f"{p['dashboard_p50_ms'] / d['dashboard_p50_ms']:.2f}× |")
    print(f"\nsupervisor RSS: first 10 s after warm-up {r['first10_mib']:.1f} MiB, last 10 s "
          f"{r['last10_mib']:.1f} MiB ({r['ratio']:.2f}×), max {r['max_mib']:.1f} MiB; "
          f"supervisor CPU mean {r['cpu_mean_pct']:.0f}% of a core, max {r['cpu_max_pct']:.0f}%")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
