"""Where each app's logs live, and reading their tails. One build log (clone and environment,
written by the supervisor) and one app log (the instance's stdout and stderr) per app."""

from __future__ import annotations

import os
from pathlib import Path

from backend.settings import Settings


def build_log_path(settings: Settings, app_id: int) -> Path:
    return settings.logs_path / str(app_id) / "build.log"


def app_log_path(settings: Settings, app_id: int) -> Path:
    return settings.logs_path / str(app_id) / "app.log"


def tail(path: Path, max_bytes: int = 64_000) -> str:
    """The last `max_bytes` of a log file, starting at a line boundary ('' if absent)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            fh.seek(start)
            data = fh.read()
    except FileNotFoundError:
        return ""
    if start and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", errors="replace")


def tail_lines(path: Path, lines: int = 20) -> str:
    return "\n".join(tail(path, 16_000).rstrip("\n").splitlines()[-lines:])
