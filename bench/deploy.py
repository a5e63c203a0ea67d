"""Deploy-to-healthy time of a pandas+altair app through the platform (process runtime),
against a bare `uv venv && uv pip install -r requirements.txt && streamlit run` in the same
run, with a cold uv cache (empty) and a warm one.

Ours: the supervisor and dashboard are already up (as a platform is); the clock starts at the deploy
call (backend.apps.service.deploy_app) and stops when `/_stcore/health` answers through the proxy.
Bare: the clock starts before `uv venv` and stops when `/_stcore/health` answers directly.

    .venv/bin/python bench/deploy.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.accounts import auth  # noqa: E402
from backend.apps import service as apps  # noqa: E402
from backend.context import open_context  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import healthy  # noqa: E402
from supervisor.runtimes.base import uv_binary  # noqa: E402
from supervisor.runtimes.process import free_port  # noqa: E402
from tests.conftest import GitRepo  # noqa: E402
from tests.support.supervisor_harness import SupervisorProcess  # noqa: E402

APP = '''import altair as alt
import pandas as pd
import streamlit as st

df = pd.DataFrame({"x": range(100), "y": [v % 7 for v in range(100)]})
st.altair_chart(alt.Chart(df).mark_line().encode(x="x", y="y"))
'''
REQUIREMENTS = "streamlit==1.67.0\npandas==3.1.1\naltair==6.3.0\n"


def wait_health(port: int, host: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(port, host):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host} never became healthy")
        time.sleep(0.02)


def bare(work: Path, cache: Path) -> float:
    src = work / "bare"
    src.mkdir()
    (src / "streamlit_app.py").write_text(APP)
    (src / "requirements.txt").write_text(REQUIREMENTS)
    env = {**os.environ, "UV_CACHE_DIR": str(cache), "UV_NO_PROGRESS": "1"}
    port = free_port()
    start = time.monotonic()
    subprocess.run([uv_binary(), "venv", "-q", "--python", "3.11", str(src / ".venv")],
                   check=True, env=env)
    subprocess.run([uv_binary(), "pip", "install", "-q", "--python",
                    str(src / ".venv/bin/python"), "-r", str(src / "requirements.txt")],
                   check=True, env=env)
    proc = subprocess.Popen([str(src / ".venv/bin/streamlit"), "run", "streamlit_app.py",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_health(port, f"127.0.0.1:{port}")
        return time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait()


def ours(work: Path, cache: Path, repo: GitRepo) -> float:
    settings = load_settings(env={}, data_dir=work / "data", uv_cache_dir=cache,
                             port=free_port(), runtime="process")
    ctx = open_context(settings)
    auth.ensure_first_admin(ctx)
    admin = auth.get_user(ctx, settings.admin_username)
    sup = SupervisorProcess(settings, work / "supervisor.log").start()
    try:
        wait_health(settings.port, f"localhost:{settings.port}")  # platform fully up first
        host = f"bench.localhost:{settings.port}"
        start = time.monotonic()
        apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="bench")
        wait_health(settings.port, host)
        return time.monotonic() - start
    finally:
        sup.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {"cold": {"bare": [], "ours": []},
                                                 "warm": {"bare": [], "ours": []}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = GitRepo(root / "repo", "main")
        repo.commit({"streamlit_app.py": APP, "requirements.txt": REQUIREMENTS})
        warm_cache = root / "warm-cache"
        (root / "prewarm").mkdir()
        bare(root / "prewarm", warm_cache)  # fills the warm cache
        for i in range(args.runs):
            for kind in ("bare", "ours"):  # same order each round; cold first then warm
                for temp in ("cold", "warm"):
                    work = root / f"{temp}-{kind}-{i}"
                    work.mkdir()
                    cache = work / "cache" if temp == "cold" else warm_cache
                    fn = bare if kind == "bare" else (lambda w, c: ours(w, c, repo))
                    results[temp][kind].append(fn(work, cache))
                    shutil.rmtree(work, ignore_errors=True)
    print("| cache | bare median (s) | ours median (s) | ratio ours/bare | runs |")
    print("|---|---|---|---|---|")
    for temp, r in results.items():
        b, o = statistics.median(r["bare"]), statistics.median(r["ours"])
        print(f"| {temp} | {b:.2f} | {o:.2f} | {o / b:.2f}× | {args.runs} |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "deploy.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
