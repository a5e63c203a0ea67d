"""Docker runtime start times against a bare `streamlit run` on the host, in one run.

- bare: `streamlit run` of the app in a host venv (built once, not timed) until
  `/_stcore/health` answers.
- container start: `DockerRuntime.start` with the app's env image present until health.
- cached redeploy: `ensure_env` (the image exists: reused) + start + health.
- uncached redeploy: `ensure_env` of a new dependency hash (a comment line makes it new;
  warm uv cache, the Streamlit layer of the base image present: `docker_layers`) + start +
  health. The untimed warm-up build beforehand makes the layer when it is missing.
- bare uv + start: on the host, `uv venv && uv pip install -r requirements.txt` into a new
  directory (the same warm uv cache, uv's defaults: no bytecode compile) + `streamlit run`
  until health: the baseline of the uncached redeploy (target ≤ 2×).

    .venv/bin/python bench/docker_runtime.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings import Settings  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from bench.common import wait_health  # noqa: E402
from supervisor.runtimes.base import AppSpec, EnvSpec, uv_binary  # noqa: E402
from supervisor.runtimes.docker import DockerRuntime  # noqa: E402
from supervisor.runtimes.process import ProcessRuntime, free_port  # noqa: E402

EXAMPLE = ROOT / "examples" / "hello"


async def bare_uv_start(checkout: Path, venv: Path, settings: Settings) -> float:
    """Seconds of `uv venv` + `uv pip install -r requirements.txt` + `streamlit run` until
    healthy, on the host with the warm cache of `settings` (its CA bundle and index too)."""
    uv = uv_binary()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()),
           "UV_CACHE_DIR": str(settings.uv_cache_path), "UV_PYTHON_DOWNLOADS": "never"}
    if settings.ca_bundle_path:
        env["SSL_CERT_FILE"] = str(settings.ca_bundle_path)
    if settings.index_url:
        env["UV_INDEX_URL"] = settings.index_url
    start = time.monotonic()
    subprocess.run([uv, "venv", "-q", "--python", "3.11", str(venv)], check=True, env=env)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    "-r", str(checkout / "requirements.txt")], check=True, env=env)
    port = free_port()
    proc = subprocess.Popen(
        [f"{venv}/bin/streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_health(port)
        return time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(venv, ignore_errors=True)



async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkout = root / "src"
        shutil.copytree(EXAMPLE, checkout)
        settings = load_settings(env={}, data_dir=root / "data", runtime="docker",
                                 uv_cache_dir=Path.home() / ".cache" / "stcloud-tests" / "uv")
        spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
        host_env = await ProcessRuntime(dataclasses.replace(settings, runtime="process")) \
            .ensure_env(spec, lambda line: None)
        docker = DockerRuntime(settings)
        await docker.ensure_env(spec, lambda line: None)  # the cached image exists
        files = dict(spec.files)
        files["requirements.txt"] += f"\n# bench warm-up {time.time()}\n".encode()
        warm = await docker.ensure_env(dataclasses.replace(spec, files=files),
                                       lambda line: None)  # the Streamlit layer exists
        subprocess.run(["docker", "image", "rm", "-f", warm.location],
                       capture_output=True, check=False)
        app = AppSpec(app_id=1, name="bench", checkout=checkout, main_file="streamlit_app.py",
                      log_path=root / "app.log", memory_limit_mb=1024)
        results: dict[str, list[float]] = {"bare": [], "container start": [],
                                           "cached redeploy": [], "uncached redeploy": [],
                                           "bare uv + start": []}
        for i in range(runs):
            port = free_port()
            start = time.monotonic()
            proc = subprocess.Popen(
                [f"{host_env.location}/bin/streamlit", "run", "streamlit_app.py",
                 "--server.port", str(port), "--server.headless", "true",
                 "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await wait_health(port)
            results["bare"].append(time.monotonic() - start)
            proc.terminate()
            proc.wait()

            env = await docker.ensure_env(spec, lambda line: None)
            start = time.monotonic()
            inst = await docker.start(app, env)
            await wait_health(inst.state["port"])
            results["container start"].append(time.monotonic() - start)
            await docker.stop(1, inst.state)

            start = time.monotonic()
            env = await docker.ensure_env(spec, lambda line: None)
            inst = await docker.start(app, env)
            await wait_health(inst.state["port"])
            results["cached redeploy"].append(time.monotonic() - start)
            await docker.stop(1, inst.state)

            files = dict(spec.files)
            files["requirements.txt"] += f"\n# bench {time.time()} {i}\n".encode()
            fresh = dataclasses.replace(spec, files=files)
            start = time.monotonic()
            env = await docker.ensure_env(fresh, lambda line: None)
            inst = await docker.start(app, env)
            await wait_health(inst.state["port"])
            results["uncached redeploy"].append(time.monotonic() - start)
            await docker.stop(1, inst.state)
            subprocess.run(["docker", "image", "rm", "-f", env.location],
                           capture_output=True, check=False)
            results["bare uv + start"].append(await bare_uv_start(
                checkout, root / f"bare-venv-{i}", settings))
        await docker.close()
    bare = statistics.median(results["bare"])
    bare_uv = statistics.median(results["bare uv + start"])
    print("| measure | median | ÷ bare start | ÷ bare uv + start | target |")
    print("|---|---|---|---|---|")
    targets = {"cached redeploy": "≤ 1.3× bare start", "uncached redeploy": "≤ 2× bare uv"}
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} s | {med / bare:.2f}× | {med / bare_uv:.2f}× | "
              f"{targets.get(name, '')} |")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "docker.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args().runs))
