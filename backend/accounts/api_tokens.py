"""Personal API tokens for the REST API (`/api/v1`) and the CLI (`python -m supervisor.cli`).

- A token is `stc_` + 43 random URL-safe characters (256 bits). Its plaintext is returned
  once, by `create_token`; the database keeps only its SHA-256 (`ApiToken.token_hash`), so a
  leaked database holds no usable token. A fast hash is right here: the token is random and
  long, not a password that could be guessed.
- Scopes limit what a token may do, whatever its owner's roles: `read` (GET routes),
  `deploy` (app changes: deploy, settings, reboot, wake, delete, secrets), `admin`
  (workspace members, accounts). A scope implies the ones below it
  (admin ⊇ deploy ⊇ read). Roles are still enforced by `backend/` on every call: a token
  never gives more than its owner has.
- A revoked token stops working at once; `last_used_at` is updated on each use.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import col, select

from backend.context import Context
from backend.errors import NotFound, ValidationError
from models import ApiToken, User, id_of, session_scope, utcnow

PREFIX = "stc_"
SCOPES = ("read", "deploy", "admin")  # lowest first
MAX_NAME = 128


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def normalise_scopes(scopes: str | list[str] | tuple[str, ...] | set[str]) -> tuple[str, ...]:
    """The scopes as a sorted tuple (lowest first); `ValidationError` for an unknown one."""
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    wanted = {s.strip().lower() for s in items if s.strip()}
    unknown = wanted - set(SCOPES)
    if unknown:
        raise ValidationError("scopes", f"Unknown scope {', '.join(sorted(unknown))}; scopes "
                              f"are {', '.join(SCOPES)}.")
    if not wanted:
        raise ValidationError("scopes", "Give a token at least one scope: "
                              f"{', '.join(SCOPES)}.")
    return tuple(s for s in SCOPES if s in wanted)


def effective_scopes(stored: str) -> frozenset[str]:
    """Stored scopes plus the ones they imply (admin ⊇ deploy ⊇ read)."""
    have = {s.strip() for s in stored.split(",") if s.strip() in SCOPES}
    top = max((SCOPES.index(s) for s in have), default=-1)
    return frozenset(SCOPES[:top + 1])


def create_token(ctx: Context, user: User, name: str,
                 scopes: str | list[str] | tuple[str, ...] = ("read",)) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the plaintext (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise ValidationError("name", f"Name the token (1 to {MAX_NAME} characters), e.g. "
                              "'laptop' or 'ci'.")
    wanted = normalise_scopes(scopes)
    plaintext = PREFIX + secrets.token_urlsafe(32)
    with session_scope(ctx.engine) as s:
        row = ApiToken(user_id=id_of(user), name=name, token_hash=hash_token(plaintext),
                       scopes=",".join(wanted))
        s.add(row)
        s.flush()
        s.refresh(row)
        s.expunge(row)
    return row, plaintext


def list_tokens(ctx: Context, user: User) -> list[ApiToken]:
    """The user's tokens (revoked ones too), newest first; hashes are not secrets but are
    not shown either."""
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(ApiToken).where(ApiToken.user_id == user.id)
                      .order_by(col(ApiToken.id).desc())).all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def revoke_token(ctx: Context, user: User, token_id: int) -> None:
    """Revoke one of the user's own tokens (idempotent)."""
    with session_scope(ctx.engine) as s:
        row = s.get(ApiToken, token_id)
        if row is None or row.user_id != user.id:
            raise NotFound(f"You have no API token {token_id}.")
        row.revoked = True
        s.add(row)


def authenticate_token(ctx: Context, plaintext: str) -> tuple[User, frozenset[str]] | None:
    """(owner, effective scopes) of a valid, unrevoked token, or None."""
    if not plaintext.startswith(PREFIX) or len(plaintext) > 200:
        return None
    with session_scope(ctx.engine) as s:
        row = s.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext))
                     ).first()
        if row is None or row.revoked:
            return None
        user = s.get(User, row.user_id)
        if user is None:
            return None
        row.last_used_at = utcnow()
        s.add(row)
        scopes = effective_scopes(row.scopes)
        s.flush()
        s.expunge(user)
    return user, scopes
