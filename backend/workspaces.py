"""Workspaces (repository owners), memberships and the permission checks on them.

Roles, lowest first: viewer (see apps and analytics, open private apps), developer (also
deploy, reboot, delete, settings, logs, secrets), admin (also members). Site admins
(`User.is_admin`) act as admin of every workspace.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from backend.context import Context
from backend.errors import NotFound, PermissionDenied, ValidationError
from models import Membership, User, Workspace, id_of, session_scope

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
        session.add(Membership(user_id=id_of(creator), workspace_id=id_of(ws), role="admin"))
        session.flush()
    return ws


def visible_workspace_ids(session: Session, user: User) -> list[int] | None:
    """Ids of the workspaces `user` can see; None means all (site admin)."""
    if user.is_admin:
        return None
    rows = session.exec(select(Membership.workspace_id).where(Membership.user_id == user.id))
    return list(rows.all())


# Members ------------------------------------------
def _require_ws_admin(session: Session, actor: User, workspace_id: int) -> Workspace:
    ws = session.get(Workspace, workspace_id)
    if ws is None:
        raise NotFound(f"Workspace {workspace_id} does not exist.")
    require_role(session, actor, workspace_id, "admin", "manage its members")
    return ws


def list_members(ctx: Context, actor: User, workspace_id: int) -> list[tuple[User, str]]:
    """(user, role) pairs of a workspace; any member may look."""
    with session_scope(ctx.engine) as s:
        require_role(s, actor, workspace_id, "viewer", "see its members")
        rows = s.exec(select(User, Membership.role).join(
            Membership, col(Membership.user_id) == User.id).where(
            Membership.workspace_id == workspace_id).order_by(User.username)).all()
        return [(u, r) for u, r in rows]


def set_member(ctx: Context, actor: User, workspace_id: int, who: str, role: str) -> None:
    """Add a user (by username or email) to a workspace, or change their role."""
    if role not in ROLE_RANK:
        raise ValidationError("role", "The role is admin, developer or viewer.")
    with session_scope(ctx.engine) as s:
        _require_ws_admin(s, actor, workspace_id)
        key = who.strip().lower()
        user = s.exec(select(User).where((User.username == key) | (User.email == key))).first()
        if user is None:
            raise NotFound(f"No user is called or has the email '{who}'. An admin of this "
                           "server can create the account first.")
        m = s.exec(select(Membership).where(Membership.user_id == user.id,
                                            Membership.workspace_id == workspace_id)).first()
        if m is None:
            s.add(Membership(user_id=id_of(user), workspace_id=workspace_id, role=role))
        else:
            _keep_an_admin(s, workspace_id, m, role)
            m.role = role
            s.add(m)


def remove_member(ctx: Context, actor: User, workspace_id: int, username: str) -> None:
    with session_scope(ctx.engine) as s:
        _require_ws_admin(s, actor, workspace_id)
        m = s.exec(select(Membership).join(User, col(User.id) == Membership.user_id).where(
            Membership.workspace_id == workspace_id,
            User.username == username.strip().lower())).first()
        if m is not None:
            _keep_an_admin(s, workspace_id, m, None)
            s.delete(m)


def _keep_an_admin(session: Session, workspace_id: int, m: Membership,
                   new_role: str | None) -> None:
    if m.role != "admin" or new_role == "admin":
        return
    admins = session.exec(select(Membership.id).where(Membership.workspace_id == workspace_id,
                                                      Membership.role == "admin")).all()
    if len(admins) <= 1:
        raise ValidationError("role", "A workspace keeps at least one admin; make someone "
                              "else admin first.")


def list_workspaces(ctx: Context, user: User) -> list[tuple[Workspace, str]]:
    """(workspace, role) the user can see; site admins see all as admin."""
    with session_scope(ctx.engine) as s:
        if user.is_admin:
            return [(w, "admin") for w in s.exec(select(Workspace).order_by(Workspace.name))]
        rows = s.exec(select(Workspace, Membership.role).join(
            Membership, col(Membership.workspace_id) == Workspace.id).where(
            Membership.user_id == user.id).order_by(Workspace.name)).all()
        return [(w, r) for w, r in rows]


def remembered_workspace(ctx: Context, user: User) -> int | None:
    """The workspace the user last chose in the dashboard's switcher (any page, any tab),
    or None: none chosen yet."""
    with session_scope(ctx.engine) as s:
        row = s.get(User, id_of(user))
        return row.current_workspace_id if row is not None else None


def remember_workspace(ctx: Context, user: User, workspace_id: int) -> None:
    """Keep `workspace_id` as the user's choice; one they cannot see is refused."""
    with session_scope(ctx.engine) as s:
        if s.get(Workspace, workspace_id) is None:
            raise NotFound(f"Workspace {workspace_id} does not exist.")
        require_role(s, user, workspace_id, "viewer", "choose it")
        row = s.get(User, id_of(user))
        if row is not None and row.current_workspace_id != workspace_id:
            row.current_workspace_id = workspace_id
            s.add(row)
