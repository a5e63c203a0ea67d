"""Encryption of the values the platform keeps for apps (secrets, tokens, private keys):
Fernet under a key derived from `<data_dir>/keys/app_secrets` (`backend.accounts.keys`),
and the 0600 files an app's secrets are written to in clear for it to read. One module
below everything that stores such values, so none of them needs another's."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from backend.accounts import keys
from backend.context import Context
from backend.errors import BackendError

KEY_NAME = "app_secrets"


def fernet(ctx: Context) -> Fernet:
    secret = keys.load_or_create_secret(ctx, KEY_NAME)
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


def seal(ctx: Context, text: str) -> str:
    return fernet(ctx).encrypt(text.encode()).decode()


def unseal(ctx: Context, token: str, what: str = "This app's secrets") -> str:
    """The text of `token` ("" for ""); BackendError naming `what` when the key differs."""
    if not token:
        return ""
    try:
        return fernet(ctx).decrypt(token.encode()).decode()
    except InvalidToken:
        raise BackendError(f"{what} cannot be decrypted: the server key "
                           f"(<data_dir>/keys/{KEY_NAME}) is not the one they were saved "
                           "with. Restore that file, or save them again.") from None


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically, readable by the supervisor's user only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path
