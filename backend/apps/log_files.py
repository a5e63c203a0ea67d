"""Where each app's logs live, and reading their tails. One build log (clone and environment,
written by the supervisor) and one app log (the instance's stdout and stderr) per app.

The app log is appended to by every run of the app. So that a crash reason quotes only the
run that crashed, the supervisor marks where a run starts (`mark_run_start`: the log's size
and inode, in `app.log.run-start`) and `current_run_lines` reads from there; a log rotated
since (another inode, or a smaller file) is read from its beginning."""

from __future__ import annotations

import json
import os
from pathlib import Path

from backend.platform.settings import Settings


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


def _run_marker(path: Path) -> Path:
    return path.with_name(path.name + ".run-start")


def mark_run_start(path: Path) -> None:
    """Note that a new run of the app starts writing to the log `path` now."""
    try:
        st = os.stat(path)
        where = {"offset": st.st_size, "inode": st.st_ino}
    except FileNotFoundError:
        where = {"offset": 0, "inode": 0}
    marker = _run_marker(path)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(where))
    os.replace(tmp, marker)


def current_run_lines(path: Path, lines: int = 20, max_bytes: int = 16_000) -> str:
    """The last `lines` lines the current run wrote to the log `path` (since
    `mark_run_start`; the whole tail when no start was marked)."""
    try:
        where = json.loads(_run_marker(path).read_text())
        offset, inode = int(where["offset"]), int(where["inode"])
    except (OSError, ValueError, KeyError, TypeError):
        return tail_lines(path, lines)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_ino != inode or st.st_size < offset:
                offset = 0  # rotated since the run started: all of this file is the run's
            start = max(offset, st.st_size - max_bytes)
            fh.seek(start)
            data = fh.read(st.st_size - start)
    except FileNotFoundError:
        return ""
    if start > offset and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:])
