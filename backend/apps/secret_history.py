"""The history of every value an app's secrets have had (table `app_secret_value`): kept
encrypted, one row per value (an HMAC fingerprint finds it again without decrypting the
others), so `backend.apps.log_masking` can mask a rotated secret in lines printed before.
`backend.apps.secrets` keeps it on every save."""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from typing import Any

from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from backend.accounts import keys, sealing
from backend.context import Context
from models import AppSecretValue, table_of, utcnow


def leaf_values(data: Any) -> list[str]:
    """Every string, integer and float of the document, at any depth (tables, arrays, inline
    tables), as text; booleans and dates are no secrets. Iterative: no depth exhausts the
    stack."""
    found, stack = [], [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(str(value))
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def fingerprint(ctx: Context, app_id: int, value: str) -> str:
    """HMAC-SHA256 of the value under a key derived from the secrets key: a stored value is
    found again without decrypting the others, and is not guessable without the key."""
    key = hashlib.sha256(b"app secret value fingerprint\0"
                         + keys.load_or_create_secret(ctx, sealing.KEY_NAME).encode()).digest()
    return hmac.new(key, f"{app_id}\0{value}".encode(), hashlib.sha256).hexdigest()


def remember(s: Session, ctx: Context, app_id: int, values: list[str]) -> None:
    """Keep each value (encrypted) in the app's history, once, in the session's transaction."""
    wanted = {fingerprint(ctx, app_id, v): v for v in values if v}
    if not wanted:
        return
    table = table_of(AppSecretValue)
    known = set(s.exec(select(AppSecretValue.fingerprint)
                       .where(AppSecretValue.app_id == app_id)).all())
    rows = [{"app_id": app_id, "fingerprint": f, "ciphertext": sealing.seal(ctx, v),
             "first_seen": utcnow()} for f, v in wanted.items() if f not in known]
    if not rows:
        return
    dialect = s.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):  # a concurrent save stored one first: fine
        insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        s.exec(insert(table).values(rows).on_conflict_do_nothing(
            index_elements=["app_id", "fingerprint"]))
    else:
        s.exec(sa_insert(table).values(rows))


def values_of(text: str) -> list[str]:
    try:
        return leaf_values(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, RecursionError):  # a file saved before nesting was limited
        return []
