"""Who may view an app: public apps are open to everyone; private apps to workspace members
and to invited viewers (by email)."""

from __future__ import annotations

import re

from sqlmodel import select

from backend.apps.service import load_app_for
from backend.context import Context
from backend.errors import ValidationError
from backend.workspaces import role_in
from models import App, AppViewer, User, session_scope, utcnow

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$")


def validate_email(value: str) -> str:
    email = value.strip().lower()
    if not EMAIL_RE.match(email):
        raise ValidationError("email", f"'{value}' is not an email address.")
    return email


def set_visibility(ctx: Context, user: User, app_id: int, visibility: str) -> None:
    if visibility not in ("public", "private"):
        raise ValidationError("visibility", "Visibility is either public or private.")
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "change who can view this app")
        app.visibility = visibility
        app.updated_at = utcnow()
        s.add(app)


def invite_viewer(ctx: Context, user: User, app_id: int, email: str) -> None:
    email = validate_email(email)
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "developer", "invite viewers")
        exists = s.exec(select(AppViewer).where(AppViewer.app_id == app_id,
                                                AppViewer.email == email)).first()
        if exists is None:
            s.add(AppViewer(app_id=app_id, email=email))


def remove_viewer(ctx: Context, user: User, app_id: int, email: str) -> None:
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "developer", "remove viewers")
        row = s.exec(select(AppViewer).where(AppViewer.app_id == app_id,
                                             AppViewer.email == email.strip().lower())).first()
        if row is not None:
            s.delete(row)


def list_viewers(ctx: Context, user: User, app_id: int) -> list[str]:
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "viewer", "see this app's viewers")
        rows = s.exec(select(AppViewer.email).where(AppViewer.app_id == app_id)
                      .order_by(AppViewer.email)).all()
        return list(rows)


def can_view(ctx: Context, user: User | None, app_id: int) -> bool:
    """May `user` (None: anonymous) open the app? Used by the proxy on every new session."""
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None or app.desired_state == "deleted":
            return False
        if app.visibility == "public":
            return True
        if user is None:
            return False
        if role_in(s, user, app.workspace_id) is not None:
            return True
        email = (user.email or "").strip().lower()
        return bool(email) and s.exec(select(AppViewer.id).where(
            AppViewer.app_id == app_id, AppViewer.email == email)).first() is not None
