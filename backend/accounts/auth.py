"""Accounts: users, passwords (bcrypt), the first admin, and what the sign-in widget needs.

Sign-in limiter: at most `SIGNIN_MAX_FAILURES` failed password sign-ins per username and
client within `SIGNIN_WINDOW` seconds; then `SignInThrottled` (saying how long to wait)
until the oldest failure leaves the window, even with the right password. Failures are
rows of `SigninFailure` (models/security.py) keyed by sha256("username|client"), so the
limit survives restarts and holds across processes (the dashboard, the panel, several
replicas); a successful sign-in clears that key. Per client, so that someone guessing from
one address cannot lock the owner out everywhere; the client is the address the proxy
saw (the last `X-Forwarded-For` entry, which our proxy appends).

Session epoch: a password change or reset sets `User.session_epoch` to now; a dashboard
session (or its sign-in cookie) established before it no longer counts
(`session_is_current`), so changing your password signs out your other browsers. Home.py
checks it on every run: with the time of the form sign-in, or for a cookie sign-in the
cookie's issue time (its expiry minus its lifetime). The session that changed the password
moves its own start to the new epoch and gets a new cookie.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
from sqlalchemy import delete, func
from sqlmodel import col, select

from backend.context import Context
from backend.errors import BackendError, NotFound, PermissionDenied, ValidationError
from models import User, session_scope, utcnow
from models.security import SigninFailure

INITIAL_PASSWORD_FILE = "initial_admin_password"
SIGNIN_MAX_FAILURES = 5
SIGNIN_WINDOW = 15 * 60  # seconds


class SignInThrottled(BackendError):
    """Too many failed sign-ins for this username from this client; `retry_after` s."""

    def __init__(self, retry_after: float) -> None:
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(f"Too many failed sign-ins for this account from your address. "
                         f"Wait {minutes} minute{'s' if minutes != 1 else ''} and try "
                         "again, or ask an admin to reset your password.")
        self.retry_after = retry_after


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def check_password(password: str, password_hash: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), password_hash.encode())
    except ValueError:
        return False


def _validate_new_password(password: str) -> None:
    if len(password) < 8:
        raise ValidationError("password", "Passwords need at least 8 characters.")


def create_user(ctx: Context, username: str, password: str, *, email: str = "",
                name: str = "", is_admin: bool = False) -> User:
    username = username.strip().lower()
    if not username or not username.replace("-", "").replace("_", "").isalnum():
        raise ValidationError("username", "Usernames use letters, digits, '-' and '_'.")
    _validate_new_password(password)
    with session_scope(ctx.engine) as s:
        if s.exec(select(User).where(User.username == username)).first():
            raise ValidationError("username", f"The username '{username}' is taken.")
        user = User(username=username, email=email.strip(), name=name.strip() or username,
                    password_hash=hash_password(password), is_admin=is_admin)
        s.add(user)
        s.flush()
        s.refresh(user)
        return user


def ensure_first_admin(ctx: Context) -> tuple[str, str] | None:
    """Create the first admin with a random password when there are no users yet.

    Returns (username, password) when it created one, else None. The password is also kept
    in `<data_dir>/initial_admin_password` (mode 0600) until the admin changes it, as two
    labelled lines (`initial_password_text`), so neither is taken for the other.
    """
    with session_scope(ctx.engine) as s:
        if s.exec(select(User).limit(1)).first():
            return None
    password = secrets.token_urlsafe(12)
    username = ctx.settings.admin_username
    create_user(ctx, username, password, name="Administrator", is_admin=True)
    path = ctx.settings.data_dir / INITIAL_PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(initial_password_text(username, password))
    return username, password


def initial_password_text(username: str, password: str) -> str:
    """The initial_admin_password file's content: `username: …` and `password: …` lines and
    what to do with them."""
    return (f"username: {username}\npassword: {password}\n"
            "# Sign in to the dashboard with these, then change the password on the Account "
            "page;\n# this file is deleted then.\n")


def initial_password_file(ctx: Context) -> Path:
    return ctx.settings.data_dir / INITIAL_PASSWORD_FILE


def get_user(ctx: Context, username: str) -> User:
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == username.strip().lower())).first()
        if user is None:
            raise NotFound(f"There is no user '{username}'.")
        return user


def authenticate(ctx: Context, username: str, password: str, client: str = "",
                 now: datetime | None = None) -> User | None:
    """The user when the password is right, else None; `SignInThrottled` (before any
    password check) after too many failures for this username and client."""
    wait = signin_wait(ctx, username, client, now)
    if wait:
        raise SignInThrottled(wait)
    try:
        user = get_user(ctx, username)
    except NotFound:
        return None  # no account: nothing to guess, nothing recorded
    if check_password(password, user.password_hash):
        clear_signin_failures(ctx, username, client)
        return user
    record_signin_failure(ctx, username, client, now)
    return None


def signin_key(username: str, client: str) -> str:
    return hashlib.sha256(f"{username.strip().lower()}|{client}".encode()).hexdigest()


def signin_wait(ctx: Context, username: str, client: str,
                now: datetime | None = None) -> float:
    """Seconds until this username may try again from this client; 0 when it may now."""
    now = now or utcnow()
    since = now - timedelta(seconds=SIGNIN_WINDOW)
    key = signin_key(username, client)
    with session_scope(ctx.engine) as s:
        count, oldest = s.exec(select(func.count(), func.min(SigninFailure.at))
                               .where(SigninFailure.key == key, SigninFailure.at > since)
                               ).one()
    if count < SIGNIN_MAX_FAILURES or oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite may hand back naive UTC from an aggregate
        oldest = oldest.replace(tzinfo=now.tzinfo)
    return max(1.0, (oldest - since).total_seconds())


def record_signin_failure(ctx: Context, username: str, client: str,
                          now: datetime | None = None) -> None:
    now = now or utcnow()
    with session_scope(ctx.engine) as s:
        s.exec(delete(SigninFailure).where(
            col(SigninFailure.at) <= now - timedelta(seconds=SIGNIN_WINDOW)))
        s.add(SigninFailure(key=signin_key(username, client), at=now))


def clear_signin_failures(ctx: Context, username: str, client: str) -> None:
    with session_scope(ctx.engine) as s:
        s.exec(delete(SigninFailure).where(
            col(SigninFailure.key) == signin_key(username, client)))


def client_of(headers: dict[str, str] | None, fallback: str = "") -> str:
    """The client address of a dashboard request: the last `X-Forwarded-For` entry (the
    address our proxy saw; earlier entries are whatever the client claimed)."""
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    forwarded = [p.strip() for p in lower.get("x-forwarded-for", "").split(",") if p.strip()]
    return forwarded[-1] if forwarded else fallback


def set_password(ctx: Context, actor: User, username: str, new_password: str,
                 current_password: str | None = None) -> datetime:
    """Change a password: your own (with the current one) or anyone's as an admin."""
    _validate_new_password(new_password)
    target = get_user(ctx, username)
    if actor.id != target.id and not actor.is_admin:
        raise PermissionDenied("Only an admin can reset another user's password.")
    if actor.id == target.id:  # admins too: a stolen session must not lock the owner out
        if current_password is None or not check_password(current_password,
                                                          target.password_hash):
            raise ValidationError("current_password", "The current password is not right.")
    return reset_password(ctx, target.username, new_password)


def reset_password(ctx: Context, username: str, new_password: str) -> datetime:
    """Set a password with no checks of who asks: for the operator's command line only.
    Signs out the user's sessions (a new session epoch, returned)."""
    _validate_new_password(new_password)
    target = get_user(ctx, username)
    epoch = utcnow()
    with session_scope(ctx.engine) as s:
        user = s.get(User, target.id)
        assert user is not None
        user.password_hash = hash_password(new_password)
        user.session_epoch = epoch
        s.add(user)
    if target.username == ctx.settings.admin_username:
        initial_password_file(ctx).unlink(missing_ok=True)
    return epoch


def session_is_current(user: User, started_at: float) -> bool:
    """Whether a session of `user` established at `started_at` (epoch seconds) still
    counts: no password change since (`User.session_epoch`)."""
    epoch = user.session_epoch
    if epoch is None:
        return True
    if epoch.tzinfo is None:  # stored as UTC; a driver may hand it back naive
        epoch = epoch.replace(tzinfo=UTC)
    return started_at >= epoch.timestamp()


def authenticator_credentials(ctx: Context) -> dict[str, dict[str, dict[str, object]]]:
    """The `credentials` dict streamlit-authenticator takes (bcrypt hashes, never plain)."""
    with session_scope(ctx.engine) as s:
        users = s.exec(select(User)).all()
    return {"usernames": {
        u.username: {"email": u.email or f"{u.username}@localhost", "name": u.name or u.username,
                     "password": u.password_hash, "roles": ["admin"] if u.is_admin else []}
        for u in users}}


def list_users(ctx: Context, actor: User) -> list[User]:
    if not actor.is_admin:
        raise PermissionDenied("Only admins can list users.")
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(User).order_by(User.username)).all())
