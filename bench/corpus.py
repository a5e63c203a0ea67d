"""The dependency corpus (tests/corpus/) deployed through each runtime's real builder,
against a bare `uv venv` + `uv pip install` + `streamlit run` of the same repository, all
in the same run.

For each repository that should render and each runtime here (process; docker when a
daemon answers), the clock starts before `ensure_env` (a build from scratch: a fresh envs
dir for the process runtime, the env image removed first on Docker) and stops when a real
Streamlit session (tests/streamlit_client) sees the script's first run finish; "rendered"
means it finished and showed what the corpus test expects. The baseline for the same
repository, outside any sandbox: `uv venv`, one `uv pip install` of the same requirement
lines (the ones our build installs, with `streamlit==<default>` added when the file names
no streamlit, as our build installs it; a uv.lock is exported first, as ours does), then
`streamlit run` of the same main file, timed to the same first finished script run.
The repositories whose build must fail are built too: "named" means the build failed with
the message its test expects.

The uv cache is warm (the test suite's, filled by the corpus tests; the bare baseline
runs once untimed per repository first). Network: loopback only, plus the package index
the builds use (PyPI through this machine's proxy).

    .venv/bin/python bench/corpus.py [--runs 1] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings import Settings  # noqa: E402
from backend.platform.settings_load import load_settings  # noqa: E402
from supervisor.builds.plan import write_build_files  # noqa: E402
from supervisor.control.health import HealthPaths, wait_for_streamlit  # noqa: E402
from supervisor.runtimes import docker_available, pythons  # noqa: E402
from supervisor.runtimes.base import (  # noqa: E402
    AppSpec,
    BuildError,
    EnvSpec,
    Runtime,
    uv_binary,
)
from supervisor.runtimes.docker import DockerRuntime  # noqa: E402
from supervisor.runtimes.process import ProcessRuntime, free_port  # noqa: E402
from tests.conftest import CACHE_ROOT  # noqa: E402
from tests.support.corpus import (  # noqa: E402
    BUILD_FAILURES,
    CASES,
    Case,
    corpus_spec,
    write_checkout,
)
from tests.support.streamlit_client import (  # noqa: E402
    LEGACY_STREAM_PATH,
    STREAM_PATH,
    open_streamlit_session,
)

STREAMLIT_LINE = re.compile(rb"^\s*streamlit\s*(?:[=<>!~;\[]|$)", re.I | re.M)
BASELINES = ("bare", "bare+compile")  # the second compiles bytecode, as our builds do
COMPILED = re.compile(r"Bytecode compiled \d+ files in ([0-9.]+)(m?s)")


@dataclasses.dataclass
class Outcome:
    rendered: bool
    seconds: float
    detail: str = ""
    compile_seconds: float = 0.0  # of `seconds`: uv compiling the environment's bytecode


def compile_seconds(log: list[str]) -> float:
    """The time uv's build log says it spent compiling bytecode."""
    total = 0.0
    for line in log:
        if m := COMPILED.search(line):
            total += float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    return total


async def first_run(address: tuple[str, int], case: Case,
                    alive: Any) -> dict[str, Any]:
    """Wait for the server's health endpoint, then run the script once in a session."""
    where = f"{address[0]}:{address[1]}"
    if not await wait_for_streamlit(f"http://{where}", alive, 180, HealthPaths()):
        return {"texts": [], "exceptions": ["never healthy"], "script_finished": None}
    return await open_streamlit_session(
        f"ws://{where}", where, timeout=120,
        path=LEGACY_STREAM_PATH if case.legacy else STREAM_PATH,
        protocols=() if case.legacy else ("streamlit",))


def rendered(seen: dict[str, Any], case: Case) -> bool:
    shown = " ".join(seen.get("texts", []))
    return (seen.get("script_finished") == "FINISHED_SUCCESSFULLY"
            and not seen.get("exceptions") and all(t in shown for t in case.shows))


# The baseline -------------------------------------------------------------------------------
def bare_commands(spec: EnvSpec, src: Path, venv: Path,
                  compile_bytecode: bool = False) -> list[list[str]]:
    """The uv commands of the baseline: the requirement lines our build installs (with
    `compile_bytecode`, compiled as our builds compile them)."""
    uv, python = uv_binary(), str(venv / "bin" / "python")
    plan = spec.install_plan()
    files = plan.build_files(str(src))
    names_streamlit = any(STREAMLIT_LINE.search(content) for path, content in files.items()
                          if path.endswith(".txt"))
    if plan.mode == "uv-lock":
        names_streamlit = b'name = "streamlit"' in files[plan.chosen]
    extra = [] if names_streamlit else [f"streamlit=={spec.default_streamlit}"]
    found = pythons.discover(uv, dict(os.environ))  # the host interpreter ours would use
    interpreter = found[pythons.minor_of(spec.python_version)].path
    commands = [[uv, "venv", "-q", "--python", interpreter, str(venv)]]
    if plan.mode == "uv-lock":
        locked = src / "locked.txt"
        commands.append([uv, "export", "--project", str(src / plan.folder), "--frozen",
                         "--no-hashes", "--no-dev", "--no-emit-project", "-q", "-o",
                         str(locked)])
        commands.append([uv, "pip", "install", "-q", "--python", python, "-r", str(locked),
                         *extra])
    elif plan.mode in ("requirements", "pyproject-build"):
        target = plan.requirements_path if plan.mode == "requirements" else plan.chosen
        commands.append([uv, "pip", "install", "-q", "--python", python, "-r",
                         str(src / target), *extra])
    else:
        commands.append([uv, "pip", "install", "-q", "--python", python, *extra])
    if compile_bytecode:
        commands[-1][3:3] = ["--compile-bytecode"]
    return commands


async def bare(settings: Settings, work: Path, name: str,
               compile_bytecode: bool = False) -> Outcome:
    """`uv venv` + `uv pip install` + `streamlit run` of the repository, timed to its first
    finished script run."""
    case = CASES[name]
    checkout = write_checkout(work, name)
    spec = corpus_spec(settings, checkout, case.main_file)
    src, venv = work / "src", work / "venv"
    write_build_files(src, spec.install_plan().build_files(str(src)))
    env = {**os.environ, "UV_CACHE_DIR": str(settings.uv_cache_path), "UV_NO_PROGRESS": "1"}
    if settings.index_url:
        env["UV_INDEX_URL"] = settings.index_url
    port = free_port()
    commands = bare_commands(spec, src, venv, compile_bytecode)
    start = time.monotonic()
    for cmd in commands:
        step = await asyncio.create_subprocess_exec(*cmd, env=env,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await step.communicate()
        if step.returncode and cmd[-1] == f"streamlit=={spec.default_streamlit}":
            # as our builds do: the default does not install on this Python (3.9, 3.10)
            step = await asyncio.create_subprocess_exec(*cmd[:-1], "streamlit", env=env,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.PIPE)
            _, err = await step.communicate()
        if step.returncode:
            return Outcome(False, time.monotonic() - start, err.decode()[-500:])
    main = checkout / case.main_file
    proc = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "streamlit"), "run", main.name, "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        cwd=main.parent, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async def alive() -> bool:
            return proc.returncode is None
        seen = await first_run(("127.0.0.1", port), case, alive)
        ok = rendered(seen, case)
        return Outcome(ok, time.monotonic() - start, "" if ok else json.dumps(seen)[:500])
    finally:
        proc.terminate()
        await proc.wait()


# Ours ----------------------------------------------------------------------------------------
def make_runtime(engine: str, settings: Settings) -> Runtime:
    if engine == "docker":
        return DockerRuntime(dataclasses.replace(settings, runtime="docker"))
    return ProcessRuntime(dataclasses.replace(settings, runtime="process"))


def remove_image(spec: EnvSpec) -> None:
    subprocess.run(["docker", "image", "rm", "-f", f"stcloud-env:{spec.dep_hash}"],
                   capture_output=True, check=False)


async def ours(engine: str, settings: Settings, work: Path, name: str,
               app_id: int) -> Outcome:
    """Build from scratch through the runtime, start, first finished script run."""
    case = CASES[name]
    checkout = write_checkout(work, name)
    spec = corpus_spec(settings, checkout, case.main_file)
    if engine == "docker":
        remove_image(spec)
    runtime, log = make_runtime(engine, settings), []  # type: ignore[var-annotated]
    start = time.monotonic()
    try:
        env = await asyncio.wait_for(runtime.ensure_env(spec, log.append), 900)
        app = AppSpec(app_id=app_id, name=f"corpus{app_id}", checkout=checkout,
                      main_file=case.main_file, memory_limit_mb=1024,
                      log_path=settings.logs_path / str(app_id) / "app.log")
        inst = await runtime.start(app, env)
        try:
            async def alive() -> bool:
                return (await runtime.poll(app_id, inst.state)).alive
            seen = await first_run(inst.address, case, alive)
            ok = rendered(seen, case)
            return Outcome(ok, time.monotonic() - start, "" if ok else json.dumps(seen)[:500],
                           compile_seconds(log))
        finally:
            await runtime.stop(app_id, inst.state)
    except BuildError as e:
        return Outcome(False, time.monotonic() - start, str(e)[:500])
    finally:
        await runtime.close()
        if engine == "docker":
            remove_image(spec)


async def failure_named(engine: str, settings: Settings, work: Path, name: str) -> bool:
    """Does building the failing repository end in the message its test expects?"""
    checkout = write_checkout(work, name)
    runtime = make_runtime(engine, settings)
    try:
        spec = corpus_spec(settings, checkout, "streamlit_app.py")
        await asyncio.wait_for(runtime.ensure_env(spec, lambda line: None), 600)
        return False
    except BuildError as e:
        return BUILD_FAILURES[name] in str(e)
    finally:
        await runtime.close()


# The run -------------------------------------------------------------------------------------
async def main(runs: int, only: list[str]) -> None:
    engines = ["process"] + (["docker"] if docker_available() else [])
    names = [n for n in CASES if not only or n in only]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def settings_for(label: str) -> Settings:
            return load_settings(env={}, data_dir=root / label / "data",
                                 envs_dir=root / label / "envs",
                                 uv_cache_dir=CACHE_ROOT / "uv", port=free_port())
        results: dict[str, Any] = {"engines": engines, "runs": runs, "repos": {}}
        for name in names:  # fills the bare baseline's cache, untimed
            await bare(settings_for(f"warm-{name}"), root / f"warm-{name}", name)
        for i in range(runs):
            for n, name in enumerate(names):
                repo = results["repos"].setdefault(
                    name, {"format": "", **{k: [] for k in [*BASELINES, *engines]}})
                label = f"{name}-{i}"
                settings = settings_for(label)
                repo["format"] = Path(corpus_spec(settings, write_checkout(
                    root / label / "probe", name), CASES[name].main_file)
                    .dependency_file).name
                for kind in [*BASELINES, *engines]:
                    work = root / label / kind
                    work.mkdir(parents=True)
                    outcome = await (bare(settings, work, name, kind == "bare+compile")
                                     if kind in BASELINES else
                                     ours(kind, settings, work, name, 900 + n))
                    repo[kind].append(dataclasses.asdict(outcome))
                    print(f"{name} {kind}: rendered={outcome.rendered} "
                          f"{outcome.seconds:.1f}s {outcome.detail[:200]}", flush=True)
                shutil.rmtree(root / label, ignore_errors=True)
                save(results)  # a partial run keeps what it measured
        results["failures"] = {
            engine: {name: await failure_named(engine, settings_for(f"fail-{engine}-{name}"),
                                               root / f"fail-{engine}-{name}", name)
                     for name in BUILD_FAILURES if not only or name in only}
            for engine in engines}
    save(results)
    report(results)


def save(results: dict[str, Any]) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "corpus.json").write_text(json.dumps(results, indent=2))


def median_of(values: list[dict[str, Any]]) -> float:
    return float(statistics.median(float(v["seconds"]) for v in values))


def report(results: dict[str, Any]) -> None:
    engines, repos = results["engines"], results["repos"]
    print("\n| runtime | rendered / total | expected failures named |")
    print("|---|---|---|")
    for kind in [*BASELINES, *engines]:
        good = sum(all(o["rendered"] for o in r[kind]) for r in repos.values())
        failures = results["failures"].get(kind, {})
        named = f"{sum(failures.values())} / {len(failures)}" if failures else "–"
        print(f"| {kind} | {good} / {len(repos)} | {named} |")
    print("\n| repository | format | bare (s) | bare+compile (s) | " +
          " | ".join(f"{e} (s) | {e} ÷ bare" for e in engines) + " |")
    print("|---|---|---|---|" + "---|---|" * len(engines))
    by_format: dict[str, dict[str, list[float]]] = {}
    for name, r in repos.items():
        b = median_of(r["bare"])
        cells = []
        for e in engines:
            o = median_of(r[e])
            ok = all(x["rendered"] for x in r[e])
            cells.append(f"{o:.1f}{'' if ok else ' (not rendered)'} | {o / b:.2f}×")
            if ok:
                by_format.setdefault(r["format"], {}).setdefault(e, []).append(o / b)
        print(f"| {name} | {r['format']} | {b:.1f} | {median_of(r['bare+compile']):.1f} | "
              + " | ".join(cells) + " |")
    for e in engines:
        spent = [o["compile_seconds"] for r in repos.values() for o in r[e]]
        print(f"\n{e}: bytecode compilation {statistics.median(spent):.1f} s median per build")
    print("\n| format | " + " | ".join(f"{e} ÷ bare (median)" for e in engines) + " |")
    print("|---|" + "---|" * len(engines))
    for fmt, ratios in sorted(by_format.items()):
        cells = [f"{statistics.median(ratios[e]):.2f}× ({len(ratios[e])})" if e in ratios
                 else "–" for e in engines]
        print(f"| {fmt} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.only))
