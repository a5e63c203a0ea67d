"""Failover time: two supervisors on one database, the leader stopped during a deploy.

    .venv/bin/python bench/failover.py [--rounds 3] [--postgres URL] [--lease 3,6]

For each database (SQLite in the shared data dir; PostgreSQL when `--postgres` names a
server URL, a fresh database is made on it) two real supervisors (`python -m supervisor`)
share one data dir. Each round deploys a new app (hello example: clone, environment reused,
start) and, as soon as it is `building`, signals the leader:

- `kill`: SIGKILL (the process is gone: a follower on the same host sees its pid gone,
  on PostgreSQL its advisory lock is free too), whatever `lease_seconds`;
- `hang`: SIGSTOP (alive but silent, like a partitioned or frozen host): only the lease's
  expiry lets a follower in; run for each `--lease` value. Once the deploy is done the
  stopped leader is resumed (SIGCONT): fenced, it must step down without touching the app
  (`resumed_ok`: it logged the step-down and the app still runs exactly its one recorded
  instance), and is then killed.

Measured from the signal: `lease` (the follower holds the lease) and `deploy` (the app
is running, served by the new leader, exactly one instance). Baseline: the same deploy on
an undisturbed leader, in the same run. The stopped or killed supervisor is started again
as follower, so rounds alternate direction. Prints a JSON summary; medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from backend.context import Context
from backend.platform.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from backend.accounts import auth  # noqa: E402
from backend.apps import service as apps  # noqa: E402
from backend.context import open_context  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from supervisor.control.leader import current_leader  # noqa: E402
from supervisor.runtimes.process import free_port  # noqa: E402
from tests.conftest import CACHE_ROOT, EXAMPLE_APP, GitRepo  # noqa: E402
from tests.support.instances import instance_id, running_instances  # noqa: E402
from tests.support.supervisor_harness import (  # noqa: E402
    SupervisorProcess,
    load_app,
    stored_app,
    wait_until,
)

STEP_DOWN = "not the leader any more"  # supervisor/control/reconciler.py logs it on stepping down


def _pg_database(server: str) -> str:
    name = f"stcloud_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


def _drop(server: str, name: str) -> None:
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _running(ctx: Context, app_id: int) -> bool:
    app = load_app(ctx, app_id)
    if app is not None and app.state in ("build_failed", "crashed"):
        raise RuntimeError(f"app {app_id}: {app.state}: {app.state_reason}")
    return app is not None and app.state == "running"


def _resume_steps_down(ctx: Context, settings: Settings, sup: SupervisorProcess,
                       app_id: int) -> bool:
    """SIGCONT the frozen ex-leader: it must step down, and the app keep its one instance."""
    assert sup.proc is not None
    def steps_down() -> int:
        return sup.log_path.read_text(errors="replace").count(STEP_DOWN)
    seen = steps_down()
    sup.proc.send_signal(signal.SIGCONT)
    try:
        wait_until(lambda: steps_down() > seen, 60, "the step-down")
        one = running_instances(settings, app_id) == [instance_id(ctx, app_id)]
        return one and _running(ctx, app_id)
    except (AssertionError, RuntimeError) as e:
        print(f"resumed leader: {e}", file=sys.stderr)
        return False


def scenario(root: Path, envs: Path, database_url: str, mode: str, lease: float,
             rounds: int) -> dict:
    base = load_settings(env={}, data_dir=root / "data", uv_cache_dir=CACHE_ROOT / "uv",
                         envs_dir=envs,
                         runtime="process", git_poll_interval=0, database_url=database_url,
                         lease_seconds=lease, reconcile_interval=1.0)
    ctx = open_context(base)
    auth.ensure_first_admin(ctx)
    admin = auth.get_user(ctx, base.admin_username)
    repo = GitRepo(root / "repo", "main")
    repo.commit({p.name: p.read_text() for p in EXAMPLE_APP.iterdir() if p.is_file()})
    names = ["node-a", "node-b"]
    sups = {n: SupervisorProcess(dataclasses.replace(base, node_id=n, port=free_port()),
                                 root / f"{n}.log") for n in names}
    sups["node-a"].start()
    wait_until(lambda: (r := current_leader(ctx)) and r.holder == "node-a", 60, "a leader")
    sups["node-b"].start()
    counter = 0

    def deploy() -> int:
        nonlocal counter
        counter += 1
        return apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain=f"b{counter}").id

    out: dict[str, list[float]] = {"baseline_deploy": [], "lease": [], "deploy": []}
    resumed_ok: list[bool] = []
    try:
        t0 = time.monotonic()  # warm-up (builds the environment once), then the baseline
        warm = deploy()
        wait_until(lambda: _running(ctx, warm), 900, "the warm-up deploy")
        for _ in range(rounds):
            start = time.monotonic()
            app_id = deploy()
            wait_until(lambda app_id=app_id: _running(ctx, app_id), 300, "the baseline deploy")
            out["baseline_deploy"].append(time.monotonic() - start)
        print(f"warm-up and baselines {time.monotonic() - t0:.1f} s", file=sys.stderr)
        for _ in range(rounds):
            lease = current_leader(ctx)
            assert lease is not None, "no supervisor holds the leader lease"
            leader = lease.holder
            other = next(n for n in names if n != leader)
            app_id = deploy()
            wait_until(lambda app_id=app_id: stored_app(ctx, app_id).state != "queued", 60,  # type: ignore[misc]  # a default-bound lambda
                       "the deploy to start")
            proc = sups[leader].proc
            assert proc is not None
            start = time.monotonic()
            proc.send_signal(signal.SIGKILL if mode == "kill" else signal.SIGSTOP)
            wait_until(lambda other=other: (r := current_leader(ctx)) and r.holder == other, 120,
                       "the take-over", interval=0.01)
            out["lease"].append(time.monotonic() - start)
            wait_until(lambda app_id=app_id: _running(ctx, app_id), 300,
                       "the deploy after the take-over",
                       interval=0.02)
            out["deploy"].append(time.monotonic() - start)
            if mode == "hang":
                resumed_ok.append(_resume_steps_down(ctx, base, sups[leader], app_id))
                proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            sups[leader] = SupervisorProcess(sups[leader].settings, root / f"{leader}.log")
            sups[leader].start()
    finally:
        for sup in sups.values():
            if sup.proc is not None and sup.proc.poll() is None:
                sup.proc.send_signal(signal.SIGCONT)
            sup.stop()
    return {k: round(statistics.median(v), 3) for k, v in out.items()} | {
        "resumed_ok": f"{sum(resumed_ok)}/{len(resumed_ok)}" if mode == "hang" else "",
        "rounds": rounds, "lease_seconds": lease, "mode": mode,
        "database": "postgresql" if database_url else "sqlite"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default="", help="PostgreSQL server URL")
    parser.add_argument("--lease", default="3,6", help="lease_seconds for the hang runs")
    args = parser.parse_args()
    leases = [float(x) for x in args.lease.split(",") if x]
    databases = ["sqlite"] + (["postgresql"] if args.postgres else [])
    results = []
    envs = Path(tempfile.mkdtemp(prefix="bench-failover-envs-"))
    for db in databases:
        plans = [("kill", leases[0])] + [("hang", lease) for lease in leases]
        for mode, lease in plans:
            with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
                url = _pg_database(args.postgres) if db == "postgresql" else ""
                try:
                    result = scenario(Path(tmp), envs, url, mode, lease, args.rounds)
                finally:
                    if url:
                        _drop(args.postgres, url.rsplit("/", 1)[1])
                print(json.dumps(result), file=sys.stderr)
                results.append(result)
    shutil.rmtree(envs, ignore_errors=True)
    print(json.dumps({"machine": f"{platform.machine()}, {platform.python_version()}",
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
