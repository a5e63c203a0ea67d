"""Idle memory of the platform itself, for the capacity model in docs/scale-out.md.

Starts `python -m supervisor` (process runtime, SQLite, no apps) and one standalone proxy
(`python -m supervisor proxy`) on a temporary data dir, waits until the proxy answers and
the dashboard and panel processes are healthy, lets everything settle for `--settle`
seconds, then reports the RSS (psutil, host view) of each of the platform's processes:
the supervisor (reconciler, proxy, API, jobs), the dashboard's and the panel's Streamlit
processes, and the standalone proxy. Baseline in the same run: a bare `streamlit run` of
the example app (what one hosted app costs at least), so each figure is also a ratio.

    .venv/bin/python bench/platform_memory.py [--settle 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import healthy  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def mib(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def label(proc: psutil.Process) -> str:
    cmd = " ".join(proc.cmdline())
    if "Home.py" in cmd and "panel" in cmd:
        return "panel (Streamlit)"
    if "Home.py" in cmd:
        return "dashboard (Streamlit)"
    if "-m supervisor proxy" in cmd:
        return "standalone proxy"
    if "-m supervisor" in cmd:
        return "supervisor (reconciler + proxy + API + jobs)"
    return proc.name()


def bare_streamlit(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run",
                             str(ROOT / "examples" / "hello" / "streamlit_app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stcloud-platmem-"))
    settings = load_settings(env={}, data_dir=work / "data", port=free_port(),
                             runtime="process")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STCLOUD_")}
    env.pop("DATABASE_URL", None)
    env.update(settings.to_env())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sup = subprocess.Popen([sys.executable, "-m", "supervisor"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        procs.append(sup)
        wait(lambda: healthy(settings.port, f"localhost:{settings.port}"), 120,
             "the dashboard through the proxy")
        proxy_port = free_port()
        proxy = subprocess.Popen([sys.executable, "-m", "supervisor", "proxy"], cwd=ROOT,
                                 env={**env, "STCLOUD_PORT": str(proxy_port)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        procs.append(proxy)
        wait(lambda: healthy(proxy_port, f"localhost:{proxy_port}"), 120,
             "the standalone proxy")
        bare_port = free_port()
        bare = bare_streamlit(bare_port)
        procs.append(bare)
        wait(lambda: healthy(bare_port), 120, "the bare streamlit run")
        time.sleep(args.settle)  # settle: what idle costs, not what start-up peaks at
        baseline = mib(psutil.Process(bare.pid))
        rows = [(label(p), mib(p)) for p in tree(sup.pid) + tree(proxy.pid)]
        total = sum(r for name, r in rows if name != "standalone proxy")
        print(f"baseline: bare `streamlit run` of examples/hello, idle: {baseline:.1f} MiB\n")
        print("| process | RSS | ÷ bare streamlit |")
        print("|---|---|---|")
        for name, rss in rows:
            print(f"| {name} | {rss:.1f} MiB | {rss / baseline:.2f}× |")
        print(f"| **one supervisor node in all** (supervisor + dashboard + panel + helpers) "
              f"| **{total:.1f} MiB** | {total / baseline:.2f}× |")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 2)
                p.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, 9)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
