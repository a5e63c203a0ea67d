"""Accounts managed by site admins from the dashboard's Users page.

There is no self-registration: a site admin creates each account (with a typed password or
a generated one) and hands the password over; the dashboard shows it once. Admins reset
forgotten passwords the same way. `backend.accounts.auth` keeps the storage and the rules for
passwords; this module adds who may do it (site admins only).
"""

from __future__ import annotations

import secrets as random

from sqlmodel import select

from backend.accounts import auth
from backend.apps.sharing import validate_email
from backend.context import Context
from backend.errors import PermissionDenied, ValidationError
from models import User, session_scope

GENERATED_BYTES = 12


def _require_site_admin(actor: User, action: str) -> None:
    if not actor.is_admin:
        raise PermissionDenied(f"Only site admins can {action}.")


def generate_password() -> str:
    return random.token_urlsafe(GENERATED_BYTES)


def create_account(ctx: Context, actor: User, username: str, *, email: str = "",
                   name: str = "", password: str = "",
                   is_admin: bool = False) -> tuple[User, str]:
    """Create an account; returns it and its password (generated when none was typed)."""
    _require_site_admin(actor, "create accounts")
    email = validate_email(email) if email.strip() else ""
    if email:
        with session_scope(ctx.engine) as s:
            if s.exec(select(User.id).where(User.email == email)).first() is not None:
                raise ValidationError("email", f"Another account already uses {email}.")
    password = password or generate_password()
    user = auth.create_user(ctx, username, password, email=email, name=name,
                            is_admin=is_admin)
    return user, password


def reset_account_password(ctx: Context, actor: User, username: str,
                           password: str = "") -> str:
    """Set another user's password (generated when none was typed); returns it."""
    _require_site_admin(actor, "reset passwords")
    target = auth.get_user(ctx, username)
    if target.id == actor.id:
        raise ValidationError("username", "Change your own password on the Account page: "
                              "it asks for your current one.")
    password = password or generate_password()
    auth.set_password(ctx, actor, target.username, password)
    return password


def list_accounts(ctx: Context, actor: User) -> list[User]:
    _require_site_admin(actor, "list accounts")
    return auth.list_users(ctx, actor)
