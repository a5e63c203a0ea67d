"""Each user's dashboard inbox: the notices about their apps (over limit, crashed, could not
be updated, about to sleep), newest first, with an unread count for the bell.

`backend/platform/notifications.py` writes a notice here for every developer and admin of the app's
workspace in the same transaction as the email about it, whether or not the user has an
email address or the installation can send mail, so no notice is ever only in an outbox
nobody reads. A user sees and marks only their own notices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, true, update
from sqlmodel import Session, col, select

from backend.context import Context
from models import App, Notification, User, id_of, session_scope, utcnow

MAX_LIST = 200


@dataclass(frozen=True)
class NoticeView:
    id: int
    app_id: int | None
    app_subdomain: str  # "" when the app has been deleted since
    kind: str
    subject: str
    body_text: str
    emailed: bool
    created_at: datetime
    read: bool


def add_notice(session: Session, user: User, app: App, kind: str, incident_key: str,
               subject: str, body_text: str, emailed: bool) -> bool:
    """Put one notice in `user`'s inbox in the caller's transaction, once per incident
    (`incident_key` names it; the user is added to it). Returns whether it is new."""
    key = f"{incident_key}:u{user.id}"[:255]
    if session.exec(select(Notification.id).where(Notification.dedupe_key == key)).first():
        return False
    session.add(Notification(user_id=id_of(user), app_id=app.id, kind=kind, subject=subject,
                             body_text=body_text, dedupe_key=key, emailed=emailed))
    return True


def unread_count(ctx: Context, user: User) -> int:
    """How many of the user's notices are unread (the bell's number)."""
    with session_scope(ctx.engine) as s:
        return int(s.exec(select(func.count()).select_from(Notification).where(
            Notification.user_id == user.id,
            col(Notification.read_at).is_(None))).one())


def list_notices(ctx: Context, user: User, limit: int = 50,
                 unread_only: bool = False) -> list[NoticeView]:
    """The user's notices, newest first (at most `limit`, capped at MAX_LIST)."""
    limit = max(1, min(limit, MAX_LIST))
    with session_scope(ctx.engine) as s:
        q = select(Notification, App.subdomain).join(
            App, col(App.id) == Notification.app_id, isouter=True).where(
            Notification.user_id == user.id)
        if unread_only:
            q = q.where(col(Notification.read_at).is_(None))
        rows = s.exec(q.order_by(col(Notification.id).desc()).limit(limit)).all()
        return [NoticeView(id=id_of(n), app_id=n.app_id, app_subdomain=sub or "", kind=n.kind,
                           subject=n.subject, body_text=n.body_text, emailed=n.emailed,
                           created_at=n.created_at, read=n.read_at is not None)
                for n, sub in rows]


def mark_read(ctx: Context, user: User, notice_ids: list[int]) -> int:
    """Mark these of the user's notices read (others' ids are ignored); returns how many
    changed."""
    if not notice_ids:
        return 0
    return _mark(ctx, user, col(Notification.id).in_(notice_ids))


def mark_all_read(ctx: Context, user: User) -> int:
    """Mark every unread notice of the user read; returns how many changed."""
    return _mark(ctx, user, true())


def _mark(ctx: Context, user: User, which: ColumnElement[bool]) -> int:
    with session_scope(ctx.engine) as s:
        result = s.exec(update(Notification).where(
            col(Notification.user_id) == user.id, col(Notification.read_at).is_(None),
            which).values(read_at=utcnow()))
        return int(result.rowcount or 0)
