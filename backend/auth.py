"""Accounts: users, passwords (bcrypt), the first admin, and what the sign-in widget needs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import bcrypt
from sqlmodel import select

from backend.context import Context
from backend.errors import NotFound, PermissionDenied, ValidationError
from models import User, session_scope

INITIAL_PASSWORD_FILE = "initial_admin_password"


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
    in `<data_dir>/initial_admin_password` (mode 0600) until the admin changes it.
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
        fh.write(f"{username}\n{password}\n")
    return username, password


def initial_password_file(ctx: Context) -> Path:
    return ctx.settings.data_dir / INITIAL_PASSWORD_FILE


def get_user(ctx: Context, username: str) -> User:
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == username.strip().lower())).first()
        if user is None:
            raise NotFound(f"There is no user '{username}'.")
        return user


def authenticate(ctx: Context, username: str, password: str) -> User | None:
    try:
        user = get_user(ctx, username)
    except NotFound:
        return None
    return user if check_password(password, user.password_hash) else None


def set_password(ctx: Context, actor: User, username: str, new_password: str,
                 current_password: str | None = None) -> None:
    """Change a password: your own (with the current one) or anyone's as an admin."""
    _validate_new_password(new_password)
    target = get_user(ctx, username)
    if actor.id != target.id and not actor.is_admin:
        raise PermissionDenied("Only an admin can reset another user's password.")
    if actor.id == target.id:  # admins too: a stolen session must not lock the owner out
        if current_password is None or not check_password(current_password,
                                                          target.password_hash):
            raise ValidationError("current_password", "The current password is not right.")
    reset_password(ctx, target.username, new_password)


def reset_password(ctx: Context, username: str, new_password: str) -> None:
    """Set a password with no checks of who asks: for the operator's command line only."""
    _validate_new_password(new_password)
    target = get_user(ctx, username)
    with session_scope(ctx.engine) as s:
        user = s.get(User, target.id)
        assert user is not None
        user.password_hash = hash_password(new_password)
        s.add(user)
    if target.username == ctx.settings.admin_username:
        initial_password_file(ctx).unlink(missing_ok=True)


def authenticator_credentials(ctx: Context) -> dict:
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
