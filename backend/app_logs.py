"""One app's logs for the dashboard's log viewer: a tail to follow live, and the whole file
to download. Developers of the app's workspace only (as `backend.apps.read_logs`).

Two logs per app (backend/logs.py): `build` (clone and environment, written by the
supervisor) and `app` (the instance's stdout and stderr). Secret values of the app are
masked (`backend.secrets.redact`) in both, so a `print(st.secrets)` never shows them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend import secrets
from backend.apps import _load
from backend.context import Context
from backend.errors import ValidationError
from backend.logs import app_log_path, build_log_path, tail
from models import User, session_scope

KINDS = {"app": app_log_path, "build": build_log_path}
MAX_DOWNLOAD = 50 * 1024 * 1024


@dataclass(frozen=True)
class LogTail:
    kind: str
    text: str
    size: int  # bytes in the whole file (0 when there is none yet)


def _path(ctx: Context, user: User, app_id: int, kind: str) -> Path:
    if kind not in KINDS:
        raise ValidationError("kind", "A log is either 'app' or 'build'.")
    with session_scope(ctx.engine) as s:
        _load(s, user, app_id, "developer", "read this app's logs")
    return KINDS[kind](ctx.settings, app_id)


def read_tail(ctx: Context, user: User, app_id: int, kind: str,
              max_bytes: int = 256_000) -> LogTail:
    path = _path(ctx, user, app_id, kind)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return LogTail(kind, "", 0)
    return LogTail(kind, secrets.redact(ctx.settings, app_id, tail(path, max_bytes)), size)


def read_full(ctx: Context, user: User, app_id: int, kind: str) -> bytes:
    """The whole log (its last `MAX_DOWNLOAD` bytes), secrets masked, for a download."""
    path = _path(ctx, user, app_id, kind)
    text = tail(path, MAX_DOWNLOAD)
    return secrets.redact(ctx.settings, app_id, text).encode()
