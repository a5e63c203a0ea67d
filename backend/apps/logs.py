"""One app's logs for the dashboard's log viewer: a tail to follow live, and the whole file
to download. Developers of the app's workspace only (`read_logs`).

Two logs per app (backend/apps/log_files.py): `build` (clone and environment, written by the
supervisor) and `app` (the instance's stdout and stderr). Every value the app's secrets
ever had is masked in both (`backend.apps.log_masking`), so a `print(st.secrets)` shows
neither the current values nor rotated ones here, and neither log shows a host path or
Streamlit's internal address (`shown`). Log text leaves this room only through `shown`
(here and in `backend.apps.failure_reports`); `tests/unit/test_log_masking_paths.py`
checks that no other module reads a log file.

The app log is rotated by size (`app_log_max_bytes`: `app.log`, then `app.log.1` … the
oldest `app.log.<app_log_backups>`); both readers read across the rotated files, oldest
first, so a tail right after a rotation still shows the lines before it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backend.apps import log_masking
from backend.apps.log_files import app_log_path, build_log_path
from backend.apps.service import load_app_for
from backend.context import Context
from backend.errors import ValidationError
from backend.platform import host_paths
from models import App, User, session_scope

KINDS = {"app": app_log_path, "build": build_log_path}
MAX_DOWNLOAD = 50 * 1024 * 1024


@dataclass(frozen=True)
class LogTail:
    kind: str
    text: str
    size: int  # bytes in the current file (0 when there is none yet): where a follower goes on


def _path(ctx: Context, user: User, app_id: int, kind: str) -> Path:
    if kind not in KINDS:
        raise ValidationError("kind", "A log is either 'app' or 'build'.")
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "developer", "read this app's logs")
    return KINDS[kind](ctx.settings, app_id)


def shown(ctx: Context, app_id: int, kind: str, text: str) -> str:
    """Log text as its reader sees it: secrets masked, no host paths, and in the app log
    the app's public URL where Streamlit printed its internal one
    (`backend.platform.host_paths`)."""
    text = log_masking.mask(ctx, app_id, text)
    if kind != "app":
        return host_paths.sanitize(ctx.settings, text)
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        url = ctx.settings.public_url(app.subdomain) if app is not None else ""
    return host_paths.show_app_log(ctx.settings, text, url)


def log_files(path: Path) -> list[Path]:
    """The log and its rotated files that exist, oldest first (`app.log.N` … `app.log`)."""
    rotated = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    files = [p for _, p in sorted(rotated, reverse=True)]
    return files + ([path] if path.exists() else [])


def tail_across(path: Path, max_bytes: int) -> tuple[str, int]:
    """(the last `max_bytes` of the log and its rotated files, starting at a line boundary;
    the size of the current file when it was read)."""
    chunks: list[bytes] = []
    current, wanted, cut = 0, max_bytes, False
    for file in reversed(log_files(path)):  # newest first
        try:
            with open(file, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                if file == path:
                    current = size
                if wanted > 0:
                    start = max(0, size - wanted)
                    fh.seek(start)
                    chunks.append(fh.read())
                    wanted -= size - start
                    cut = start > 0
        except FileNotFoundError:  # rotated away while we read
            continue
    data = b"".join(reversed(chunks))
    if cut and b"\n" in data:  # the oldest piece starts mid-line
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", errors="replace"), current


def read_tail(ctx: Context, user: User, app_id: int, kind: str,
              max_bytes: int = 256_000) -> LogTail:
    path = _path(ctx, user, app_id, kind)
    text, size = tail_across(path, max_bytes)
    return LogTail(kind, shown(ctx, app_id, kind, text), size)


def read_full(ctx: Context, user: User, app_id: int, kind: str) -> bytes:
    """The whole log, rotated files included (its last `MAX_DOWNLOAD` bytes), secrets
    masked, for a download."""
    path = _path(ctx, user, app_id, kind)
    text, _ = tail_across(path, MAX_DOWNLOAD)
    return shown(ctx, app_id, kind, text).encode()


def read_more(ctx: Context, user: User, app_id: int, kind: str, offset: int,
              max_bytes: int = 1_000_000) -> tuple[str, int]:
    """(the whole lines written to the current file after `offset`, as `shown`; the offset
    after them), for a follower that read up to `offset`. From the file's start when it
    was rotated or truncated since."""
    path = _path(ctx, user, app_id, kind)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size < offset:
                offset = 0
            fh.seek(offset)
            data = fh.read(min(size - offset, max_bytes))
    except FileNotFoundError:
        return "", 0
    cut = data.rfind(b"\n") + 1
    if not cut:
        return "", offset
    text = data[:cut].decode("utf-8", errors="replace")
    return shown(ctx, app_id, kind, text), offset + cut


def read_logs(ctx: Context, user: User, app_id: int, max_bytes: int = 64_000) -> dict[str, str]:
    """{'build': ..., 'app': ...}: the tails of the app's two logs (developers only), as
    `read_tail` shows them (secrets masked, no host paths, the public URL)."""
    return {kind: read_tail(ctx, user, app_id, kind, max_bytes).text
            for kind in ("build", "app")}
