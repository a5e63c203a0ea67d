"""Server secrets kept as files in the data dir, created on first use with mode 0600."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from backend.context import Context


def load_or_create_secret(ctx: Context, name: str, nbytes: int = 32) -> str:
    """The secret stored in `<data_dir>/keys/<name>`, made at random the first time."""
    path: Path = ctx.settings.data_dir / "keys" / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def dashboard_cookie_key(ctx: Context) -> str:
    """Signing key of the dashboard's sign-in cookie (streamlit-authenticator)."""
    return load_or_create_secret(ctx, "dashboard_cookie")
