"""Lifecycle benchmark, one run, each figure against a baseline measured in the same run:

1. push → visible: a code-only commit is pushed, a signed GitHub webhook is posted, and the
   clock stops when a Streamlit session that stayed open through the proxy shows the new
   text (target ≤ 2 s). No baseline: the target is absolute.
2. wake: `backend.apps.service.wake_app` on a sleeping app until `/_stcore/health` answers through
   the proxy, against a bare `streamlit run` of the same app in the same environment until
   its own `/_stcore/health` answers (target ≤ 1.2×).
3. dependency redeploy, warm uv cache: from the webhook of a commit that changes
   requirements.txt until the new version serves (the app row names the new commit, which
   happens when the route switches), against a bare `uv venv && uv pip install -r
   requirements.txt && streamlit run` until healthy, same cache.

The supervisor runs as a subprocess with default settings except: polling off (webhooks
only), hibernation checked every 0.2 s (to put the app to sleep between wake runs). The app
is a one-file pandas + altair chart. Results: a table on stdout, bench/results/lifecycle.json,
and the "## Lifecycle" section of docs/benchmarks.md (only that section is rewritten).

    .venv/bin/python bench/lifecycle.py [--runs 5]

The process runtime (the embedded default), so that the baseline can run the very same
environment directly.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.context import Context

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.accounts import auth  # noqa: E402
from backend.apps import service as apps  # noqa: E402
from backend.context import open_context  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import healthy  # noqa: E402
from models import App, session_scope, utcnow  # noqa: E402
from supervisor.runtimes.base import uv_binary  # noqa: E402
from supervisor.runtimes.process import free_port  # noqa: E402
from tests.conftest import GitRepo  # noqa: E402
from tests.support.lifecycle_support import LiveSession, send_github_push  # noqa: E402
from tests.support.supervisor_harness import SupervisorProcess  # noqa: E402

REQUIREMENTS = "streamlit==1.67.0\npandas==3.1.1\naltair==6.3.0\n"


def page(text: str) -> str:
    return ("import altair as alt\nimport pandas as pd\nimport streamlit as st\n\n"
            f"st.write('{text}')\n"
            "df = pd.DataFrame({'x': range(100), 'y': [v % 7 for v in range(100)]})\n"
            "st.altair_chart(alt.Chart(df).mark_line().encode(x='x', y='y'))\n")


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)
    return value


def bare_start(streamlit: str, src: Path) -> float:
    port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen([streamlit, "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=src,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: healthy(port, f"127.0.0.1:{port}"), 120, "bare streamlit")
        return time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait()


def bare_install_and_start(work: Path, cache: Path, requirements: str) -> float:
    src = work / f"bare-{secrets.token_hex(3)}"
    src.mkdir()
    (src / "streamlit_app.py").write_text(page("bare"))
    (src / "requirements.txt").write_text(requirements)
    env = {**os.environ, "UV_CACHE_DIR": str(cache), "UV_NO_PROGRESS": "1"}
    start = time.monotonic()
    subprocess.run([uv_binary(), "venv", "-q", "--python", "3.11", str(src / ".venv")],
                   check=True, env=env)
    subprocess.run([uv_binary(), "pip", "install", "-q", "--python",
                    str(src / ".venv/bin/python"), "-r", str(src / "requirements.txt")],
                   check=True, env=env)
    installed = time.monotonic() - start
    total = installed + bare_start(str(src / ".venv/bin/streamlit"), src)
    shutil.rmtree(src, ignore_errors=True)
    return total


def set_idle(ctx: Context, app_id: int, days: float) -> None:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        app.last_viewed_at = app.last_deployed_at = utcnow() - timedelta(days=days)
        s.add(app)


def load(ctx: Context, app_id: int) -> App:
    with session_scope(ctx.engine) as s:
        return s.get(App, app_id)


def median(values: list[float]) -> float:
    return statistics.median(values)


def run(runs: int, root: Path) -> dict:
    cache = root / "uv-cache"
    bare_install_and_start(root, cache, REQUIREMENTS)  # warms the cache for both sides
    settings = load_settings(env={}, data_dir=root / "data", uv_cache_dir=cache,
                             port=free_port(), runtime="process", git_poll_interval=0,
                             hibernation_interval=0.2)
    ctx = open_context(settings)
    auth.ensure_first_admin(ctx)
    admin = auth.get_user(ctx, settings.admin_username)
    repo = GitRepo(root / "repo", "main")
    repo.commit({"streamlit_app.py": page("Version 0"), "requirements.txt": REQUIREMENTS})
    port, host = settings.port, f"bench.localhost:{settings.port}"
    out: dict[str, list[float]] = {"push_visible": [], "wake": [], "bare_start": [],
                                   "redeploy": [], "bare_install_start": []}
    sup = SupervisorProcess(settings, root / "supervisor.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="bench")
        wait(lambda: healthy(port, host), 600, "the first deploy", 0.05)
        secret = load(ctx, view.id).webhook_secret

        # 1. Push → visible in an open session.
        session = LiveSession(port, host).start()
        wait(lambda: session.seen("Version 0"), 60, "the first page")
        for i in range(1, runs + 1):
            sha = repo.commit({"streamlit_app.py": page(f"Version {i}")})
            start = time.monotonic()
            send_github_push(port, repo.url, "main", secret, sha)
            wait(lambda i=i: session.seen(f"Version {i}"), 30, "the pushed text")
            out["push_visible"].append(time.monotonic() - start)
        assert not session.closed, "the session must stay open through code-only pushes"
        session.close()

        # 2. Wake from sleep vs a bare start in the same environment.
        env_dir = settings.envs_path / load(ctx, view.id).env_hash
        bare_src = root / "bare-wake"
        bare_src.mkdir()
        (bare_src / "streamlit_app.py").write_text(page("bare"))
        for _ in range(runs):
            out["bare_start"].append(bare_start(str(env_dir / "bin" / "streamlit"), bare_src))
            set_idle(ctx, view.id, 8)
            wait(lambda: load(ctx, view.id).state == "sleeping", 30, "sleep", 0.05)
            start = time.monotonic()
            apps.wake_app(ctx, None, view.id)
            wait(lambda: healthy(port, host), 60, "the woken app")
            out["wake"].append(time.monotonic() - start)

        # 3. Dependency redeploy with a warm cache vs bare install + start.
        nonce = secrets.token_hex(4)
        for i in range(runs):
            reqs = REQUIREMENTS + f"# bench {nonce} {i}: a new dependency set\n"
            out["bare_install_start"].append(bare_install_and_start(root, cache, reqs))
            sha = repo.commit({"requirements.txt": reqs, "streamlit_app.py":
                               page(f"Redeploy {i}")})
            start = time.monotonic()
            send_github_push(port, repo.url, "main", secret, sha)
            wait(lambda sha=sha: load(ctx, view.id).commit == sha, 600, "the redeploy", 0.02)
            out["redeploy"].append(time.monotonic() - start)
            app = load(ctx, view.id)
            assert app.state == "running" and not app.last_deploy_error, app.state_reason
    finally:
        sup.stop()
    return out


def write_section(text: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = current.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == "## Lifecycle"), None)
    if start is None:
        new = lines + [""] + text.rstrip("\n").split("\n")
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = lines[:start] + text.rstrip("\n").split("\n") + \
            ([""] + lines[end:] if end < len(lines) else [])
    path.write_text("\n".join(new) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = run(args.runs, Path(tmp))
    m = {k: median(v) for k, v in out.items()}
    rows = [
        ("push → new code in an open session", f"{m['push_visible']:.2f} s", "—",
         "—", "≤ 2 s", "yes" if m["push_visible"] <= 2 else "no"),
        ("wake from sleep → healthy (through the proxy)", f"{m['wake']:.2f} s",
         f"{m['bare_start']:.2f} s (bare `streamlit run`, same env)",
         f"{m['wake'] / m['bare_start']:.2f}×", "≤ 1.2×",
         "yes" if m["wake"] / m["bare_start"] <= 1.2 else "no"),
        ("dependency push → new version serving, warm cache", f"{m['redeploy']:.2f} s",
         f"{m['bare_install_start']:.2f} s (bare `uv venv` + `uv pip install` + start)",
         f"{m['redeploy'] / m['bare_install_start']:.2f}×", "—", "—"),
    ]
    table = ["| measure | ours (median) | baseline (median) | ratio | target | met |",
             "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    print("\n".join(table))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "lifecycle.json").write_text(json.dumps(
        {"engine": "process", "runs": args.runs, "seconds": out}, indent=2))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    section = [
        "## Lifecycle",
        "",
        f"`bench/lifecycle.py --runs {args.runs}` (process runtime; "
        f"{time.strftime('%Y-%m-%d')}, {machine}); medians of {args.runs} runs, ours and "
        "the baseline measured alternately in the same run. The app: one file, pandas + "
        "altair chart. The supervisor runs with default settings except polling off and "
        "hibernation checked every 0.2 s. Clients: a Streamlit websocket session held open "
        "through the proxy (push), HTTP/1.1 `GET /_stcore/health` polled every 10 ms on a new "
        "connection (wake, baseline start), the app row polled every 20 ms (redeploy: the row "
        "names the new commit when the route switches).",
        "",
        *table,
        "",
        "- Push: webhook POST → supervisor asks the remote → shallow clone of the new commit "
        "→ changed files renamed into the live tree → Streamlit's poll watcher (0.2 s) "
        "reruns the open session.",
        "- Wake: the dashboard call writes `starting` and touches the wake file; the "
        "supervisor starts the app on its kept checkout and environment (no clone, no "
        "build).",
        "- Redeploy: clone, new environment (uv with a warm cache), second instance started "
        "beside the serving one, health, route switch; the old version served throughout.",
        "",
    ]
    write_section("\n".join(section))


if __name__ == "__main__":
    main()
