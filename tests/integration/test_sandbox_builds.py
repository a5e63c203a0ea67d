"""Environment build steps of the process runtime run in the sandbox: as the build user,
seeing nothing of the data dir, unable to touch the build's marker, and dying with their
supervisor (a step is package code: an sdist's build backend).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.runtimes import sandbox
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from supervisor.runtimes.process_builders import BUILDER_MARKER, write_marker
from tests.support.supervisor_harness import wait_until

pytestmark = pytest.mark.no_database

PROBE = rf'''
id -u
cat "$1" 2>/dev/null && echo "READ-KEY" || echo "no key"
rm -f "$2/{BUILDER_MARKER}" 2>/dev/null; mv "$2/{BUILDER_MARKER}" "$2/x" 2>/dev/null
echo owned > "$2/written-by-build" && echo "wrote venv"
touch "$3" 2>/dev/null && echo "WROTE-OUTSIDE" || echo "no outside write"
'''


def build_dir(settings: Any) -> Path:
    settings.envs_path.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="test.building-", dir=settings.envs_path))


def test_a_build_step_sees_nothing_of_the_data_dir_and_keeps_its_marker(settings: Any) -> None:
    runtime = ProcessRuntime(settings)
    assert runtime.isolation == "bubblewrap", runtime.isolation_problem
    key = settings.data_dir / "keys" / "secrets.key"
    key.parent.mkdir(parents=True)
    key.write_text("KEY-MATERIAL")
    venv = build_dir(settings)
    write_marker(venv / BUILDER_MARKER, {"pid": os.getpid(), "create_time": 0})
    spec = EnvSpec(python_version="3.11", files={}, default_streamlit="1.67.0")
    runtime._prepare_build_dir(venv, spec)
    step = runtime._step_runner(spec, sys.executable, venv)
    lines: list[str] = []
    outside = settings.data_dir / "planted"
    asyncio.run(step(["/bin/sh", "-c", PROBE, "sh", str(key), str(venv), str(outside)],
                     lines.append))
    assert lines[0] == str(sandbox.BUILDER_UID) or os.geteuid() != 0, lines
    assert "no key" in lines and "READ-KEY" not in lines, lines
    assert "wrote venv" in lines, "the build writes its environment"
    assert "no outside write" in lines and not outside.exists(), lines
    assert (venv / BUILDER_MARKER).is_file(), "the build cannot remove the marker"


BUILDER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from backend.platform.settings_load import load_settings
from supervisor.runtimes.base import EnvSpec
from supervisor.runtimes.process import ProcessRuntime

settings = load_settings(env={}, data_dir=sys.argv[1], uv_cache_dir=sys.argv[2])
runtime = ProcessRuntime(settings)
venv = Path(sys.argv[3])
spec = EnvSpec(python_version="3.11", files={}, default_streamlit="1.67.0")
runtime._prepare_build_dir(venv, spec)
step = runtime._step_runner(spec, sys.executable, venv)
asyncio.run(step(["/bin/sh", "-c", "echo up; exec sleep 600"],
                 lambda line: print("child", line, flush=True)))
"""


def sandboxed_sleepers() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["uids", "cmdline"]):
        try:
            if proc.info["uids"].real == sandbox.BUILDER_UID and \
                    proc.info["cmdline"] == ["sleep", "600"] and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.Error, TypeError, AttributeError):
            continue
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="the build user exists only under root")
def test_a_sandboxed_build_step_dies_with_its_supervisor(settings: Any, tmp_path: Path) -> None:
    venv = build_dir(settings)
    before = {p.pid for p in sandboxed_sleepers()}
    builder = subprocess.Popen(
        [sys.executable, "-c", BUILDER_SCRIPT, str(settings.data_dir),
         str(settings.uv_cache_path), str(venv)],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout is not None
        assert builder.stdout.readline().strip() == "child up"
        wait_until(lambda: {p.pid for p in sandboxed_sleepers()} - before, 30,
                   "the sandboxed step to run")
        builder.kill()
        builder.wait(30)
        wait_until(lambda: not ({p.pid for p in sandboxed_sleepers()} - before), 30,
                   "the sandboxed build step to die with its supervisor")
    finally:
        if builder.poll() is None:
            builder.kill()
