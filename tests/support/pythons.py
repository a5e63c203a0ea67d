"""What the Python-version tests share: the host's pyenv interpreters, an app that prints
the `sys.version` it runs on, and one start of it on a runtime that reads the version back
from its session and its log."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from supervisor.runtimes.base import AppSpec, EnvRef, EnvSpec, Runtime
from tests.support.runtimes import wait_healthy
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import wait_until

REPORTS_VERSION = ("import sys\nimport streamlit as st\n"
                   "print('PYTHON-VERSION', sys.version, flush=True)\n"
                   "st.write('Python', sys.version)\n")
DEBIAN_BASE = "stcloud-base:py3.11"  # bookworm, the release this host runs


def interpreter(minor: str) -> Path:
    """The host's pyenv CPython of `minor` (skips the test when there is none)."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(root.glob(f"{minor}.*/bin/python{minor}")) if root.is_dir() else []
    if not found:
        pytest.skip(f"no pyenv Python {minor} on this host")
    return found[-1]


def interpreter_version(minor: str) -> str:
    """`sys.version` of the host's CPython `minor`."""
    return subprocess.run([str(interpreter(minor)), "-c", "import sys; print(sys.version)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def log_line(path: Path, prefix: str, timeout: float = 60) -> str:
    """The first line of the app log starting with `prefix` (polled until it appears)."""
    def find() -> str | None:
        text = path.read_text(errors="replace") if path.exists() else ""
        return next((ln for ln in text.splitlines() if ln.startswith(prefix)), None)
    return wait_until(find, timeout, f"'{prefix}' in {path}")


@dataclass
class VersionRun:
    env: EnvRef
    build_lines: list[str]
    session: dict[str, Any]
    reported: str  # the app log's PYTHON-VERSION line


async def start_and_read_version(runtime: Runtime, spec: EnvSpec, app: AppSpec) -> VersionRun:
    """Builds `spec`, starts `app` (a checkout of REPORTS_VERSION) healthy, opens a session
    that runs the script without an exception, reads the version the app printed; stops it
    and closes the runtime."""
    lines: list[str] = []
    env = await runtime.ensure_env(spec, lines.append)
    inst = await runtime.start(app, env)
    try:
        await wait_healthy(inst.address, runtime, app.app_id, inst.state, timeout=120)
        address = f"{inst.address[0]}:{inst.address[1]}"
        seen = await open_streamlit_session(f"ws://{address}", address)
        assert seen["script_finished"] and not seen["exceptions"], seen
        reported = await asyncio.to_thread(log_line, app.log_path, "PYTHON-VERSION")
    finally:
        await runtime.stop(app.app_id, inst.state)
        await runtime.close()
    return VersionRun(env, lines, seen, reported)
