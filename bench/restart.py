"""Restart of a platform with 20 running apps until all serve again, against a cold start
(deploy) of the same 20 apps, in one run (process runtime, the default settings: at most
`start_concurrency` = the number of cores start at once).

Cold: an empty data dir and environments dir (uv's cache warm, as on a platform that has
built before); the clock starts when the supervisor is launched, the 20 deploys are made
as soon as its proxy listens (backend.apps.service.deploy_app), and stops when every app's
`/_stcore/health` answers through the proxy. Restart: the same supervisor is stopped the
Ctrl-C way (SIGINT: the apps stop too) and launched again; the clock runs from the launch
until every app answers again. Also counted: build records made by the restart.

    .venv/bin/python bench/restart.py [--apps 20] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import func, select  # noqa: E402

from backend.accounts import auth  # noqa: E402
from backend.apps import service as apps  # noqa: E402
from backend.context import Context, open_context  # noqa: E402
from backend.platform.settings import Settings  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import healthy  # noqa: E402
from models import Build, session_scope  # noqa: E402
from supervisor.control.restart import start_limit  # noqa: E402
from supervisor.runtimes.process import free_port  # noqa: E402
from tests.conftest import CACHE_ROOT, EXAMPLE_APP, GitRepo  # noqa: E402
from tests.support.supervisor_harness import SupervisorProcess  # noqa: E402


def all_healthy(port: int, subs: list[str], timeout: float = 900) -> None:
    """Poll every app's health through the proxy (20 ms between rounds) until all answer."""
    waiting = list(subs)
    deadline = time.monotonic() + timeout
    while waiting:
        waiting = [s for s in waiting if not healthy(port, f"{s}.localhost:{port}")]
        if time.monotonic() > deadline:
            raise RuntimeError(f"never healthy: {waiting}")
        if waiting:
            time.sleep(0.02)


def builds(ctx: Context) -> int:
    with session_scope(ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(Build)).one())


def one_run(work: Path, repo: GitRepo, count: int) -> dict[str, float]:
    settings: Settings = load_settings(env={}, data_dir=work / "data", envs_dir=work / "envs",
                                       uv_cache_dir=CACHE_ROOT / "uv", port=free_port(),
                                       runtime="process", git_poll_interval=0.0)
    ctx = open_context(settings)
    auth.ensure_first_admin(ctx)
    admin = auth.get_user(ctx, settings.admin_username)
    subs = [f"b{i:02d}" for i in range(count)]
    start = time.monotonic()
    sup = SupervisorProcess(settings, work / "sup-cold.log").start()
    try:
        for sub in subs:
            apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain=sub)
        all_healthy(settings.port, subs)
        cold = time.monotonic() - start
    finally:
        sup.stop()  # SIGINT, as Ctrl-C
    made = builds(ctx)
    start = time.monotonic()
    sup = SupervisorProcess(settings, work / "sup-restart.log").start()
    try:
        all_healthy(settings.port, subs)
        again = time.monotonic() - start
    finally:
        sup.stop()
    return {"cold": cold, "restart": again, "restart_builds": builds(ctx) - made,
            "start_concurrency": start_limit(settings)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = GitRepo(root / "repo", "main")
        repo.commit({p.name: p.read_text() for p in EXAMPLE_APP.iterdir() if p.is_file()})
        for i in range(args.runs):
            work = root / f"run-{i}"
            work.mkdir()
            results.append(one_run(work, repo, args.apps))
    cold = statistics.median(r["cold"] for r in results)
    again = statistics.median(r["restart"] for r in results)
    print(f"{args.apps} apps, {os.cpu_count()} CPUs, start_concurrency "
          f"{results[0]['start_concurrency']:.0f}, {args.runs} run(s)")
    print("| cold start (deploy) | restart | restart ÷ cold | builds made by the restart |")
    print("|---|---|---|---|")
    print(f"| {cold:.1f} s | {again:.1f} s | {again / cold:.2f}× | "
          f"{sum(r['restart_builds'] for r in results):.0f} |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "restart.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
