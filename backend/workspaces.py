"""Workspaces (repository owners), memberships and the permission checks on them.

Roles, lowest first: viewer (see apps and analytics, open private apps), developer (also
deploy, reboot, delete, settings, logs, secrets), admin (also members). Site admins
(`User.is_admin`) act as admin of every workspace.
"""

from __future__ import annotations

from sqlmodel import Session, select

from backend.errors import PermissionDenied
from models import Membership, User, Workspace

ROLE_RANK = {"viewer": 1, "developer": 2, "admin": 3}


def role_in(session: Session, user: User, workspace_id: int) -> str | None:
    if user.is_admin:
        return "admin"
    m = session.exec(select(Membership).where(Membership.user_id == user.id,
                                              Membership.workspace_id == workspace_id)).first()
    return m.role if m else None


def has_role(session: Session, user: User, workspace_id: int, needed: str) -> bool:
    role = role_in(session, user, workspace_id)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needed]


def require_role(session: Session, user: User, workspace_id: int, needed: str,
                 action: str) -> None:
    if not has_role(session, user, workspace_id, needed):
        ws = session.get(Workspace, workspace_id)
        name = ws.name if ws else workspace_id
        raise PermissionDenied(f"You need the {needed} role in workspace '{name}' to {action}. "
                               "Ask one of its admins to add you.")


def get_or_create_workspace(session: Session, name: str, creator: User) -> Workspace:
    """The workspace named `name`; a new one makes `creator` its admin."""
    ws = session.exec(select(Workspace).where(Workspace.name == name)).first()
    if ws is None:
        ws = Workspace(name=name)
        session.add(ws)
        session.flush()
        session.add(Membership(user_id=creator.id, workspace_id=ws.id, role="admin"))
        session.flush()
    return ws


def visible_workspace_ids(session: Session, user: User) -> list[int] | None:
    """Ids of the workspaces `user` can see; None means all (site admin)."""
    if user.is_admin:
        return None
    rows = session.exec(select(Membership.workspace_id).where(Membership.user_id == user.id))
    return list(rows.all())
