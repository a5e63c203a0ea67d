"""App services: deploy, list, reboot, delete, events and logs, with permission checks.

These functions record intent in the database (desired state, reboot counter, state
`queued`/`deleting`); the supervisor's reconcile loop acts on it. So the dashboard, the API
and tests all deploy the same way, and nothing is lost when a process restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from backend import app_requirements
from backend.apps import state as appstate
from backend.context import Context
from backend.errors import Conflict, NotFound
from backend.platform.settings import Settings
from backend.platform.supervisor_report import read_platform, wake_supervisor
from backend.validation import (
    repo_owner_and_name,
    suggest_subdomain,
    validate_branch,
    validate_main_file,
    validate_python_version,
    validate_repo_url,
    validate_subdomain,
)
from backend.workspaces import get_or_create_workspace, require_role, role_in, visible_workspace_ids
from models import App, AppEvent, User, Workspace, id_of, session_scope, utcnow

if TYPE_CHECKING:
    from backend.repositories.credentials import GitCredential


@dataclass(frozen=True)
class AppView:
    """What a page or an API response shows of one app."""

    id: int
    subdomain: str
    url: str
    repo_url: str
    branch: str
    main_file: str
    python_version: str  # the setting: the app's choice, else the server's default
    built_python: str  # what its environment was built with (e.g. 3.12.1); "" before a build
    visibility: str
    state: str
    state_reason: str
    desired_state: str
    workspace: str
    workspace_id: int
    owner: str
    commit: str
    role: str  # the viewing user's role in the app's workspace
    created_at: datetime
    updated_at: datetime
    last_deployed_at: datetime | None

    @property
    def can_manage(self) -> bool:
        return self.role in ("developer", "admin")

    @property
    def python_shown(self) -> str:
        """The Python version to show: the one its environment was built with, else (before
        a build) the setting."""
        return self.built_python or self.python_version


def build_view(settings: Settings, app: Any, workspace: str, owner: str,
               role: str) -> AppView:
    """An AppView from an App row, or from any row with App's column names (a select of
    columns, as backend.apps.listing uses for a thousand apps at once)."""
    return AppView(
        id=app.id, subdomain=app.subdomain, url=settings.public_url(app.subdomain),
        repo_url=app.repo_url, branch=app.branch, main_file=app.main_file,
        python_version=app.python_version or settings.default_python,
        built_python=app.built_python,
        visibility=app.visibility, state=app.state, state_reason=app.state_reason,
        desired_state=app.desired_state, workspace=workspace,
        workspace_id=app.workspace_id, owner=owner, commit=app.commit, role=role,
        created_at=app.created_at, updated_at=app.updated_at,
        last_deployed_at=app.last_deployed_at)


def _view(ctx: Context, session: Session, app: App, user: User) -> AppView:
    ws = session.get(Workspace, app.workspace_id)
    owner = session.get(User, app.owner_id) if app.owner_id else None
    return build_view(ctx.settings, app, ws.name if ws else "",
                      owner.username if owner else "",
                      role_in(session, user, app.workspace_id) or "")


def load_app_for(session: Session, user: User, app_id: int, needed: str, action: str) -> App:
    """The app, when it exists (not deleted) and `user` has at least the `needed` role in its
    workspace; NotFound when they have no role there (the app's existence is not revealed),
    PermissionDenied naming `action` when their role is too low."""
    app = session.get(App, app_id)
    if app is None or app.desired_state == "deleted":
        raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
    if role_in(session, user, app.workspace_id) is None:
        raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
    require_role(session, user, app.workspace_id, needed, action)
    return app


def subdomain_available(ctx: Context, subdomain: str) -> bool:
    with session_scope(ctx.engine) as s:
        return s.exec(select(App.id).where(App.subdomain == subdomain)).first() is None


def suggest_free_subdomain(ctx: Context, repo_url: str) -> str:
    base = suggest_subdomain(repo_url)
    candidate, n = base, 2
    while not subdomain_available(ctx, candidate):
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def offered_python_versions(ctx: Context) -> tuple[str, ...]:
    """The Python versions the supervisor's runtime reported, the server default first
    when the runtime did not list it (only the default before the supervisor's first
    report)."""
    versions = list(read_platform(ctx).python_versions)
    if ctx.settings.default_python not in versions:
        versions.insert(0, ctx.settings.default_python)
    return tuple(versions)


def deploy_app(ctx: Context, user: User, *, repo_url: str, branch: str = "main",
               main_file: str = "streamlit_app.py", subdomain: str = "",
               python_version: str = "", repository_checked: bool = False,
               credential: GitCredential | None = None) -> AppView:
    """Validate a deploy request and queue the app; the supervisor builds and starts it.
    A repository asking for what the runtime cannot give (packages.txt on the process
    runtime, a Python version it lacks) is refused here (`backend.app_requirements`),
    unless the caller made that check on the branch already (`repository_checked`).
    `credential`: the deploy key or access token of a private repository on any git host
    (`backend.repositories.credentials`), stored with the app."""
    repo_url = validate_repo_url(repo_url, ctx.settings.allow_local_repos)
    if credential is not None:
        from backend.repositories import credentials  # it imports secrets, which imports us
        credentials.require_url_for(credential, repo_url)
    branch = validate_branch(branch)
    main_file = validate_main_file(main_file)
    python_version = validate_python_version(python_version, offered_python_versions(ctx))
    sub = validate_subdomain(subdomain) if subdomain.strip() else \
        suggest_free_subdomain(ctx, repo_url)
    if not repository_checked:
        app_requirements.check_repository(ctx, repo_url, branch, python_version, main_file)
    owner, _ = repo_owner_and_name(repo_url)
    row = {"owner_id": user.id, "subdomain": sub, "repo_url": repo_url, "branch": branch,
           "main_file": main_file, "python_version": python_version,
           "memory_limit_mb": None, "state": "queued", "state_reason": "Deploy requested"}
    for attempt in (1, 2):
        try:
            view = _insert_app(ctx, user, owner, row, credential)
            break
        except IntegrityError:
            # A concurrent deploy inserted the same subdomain (unique), or created the same
            # workspace (unique name) first: the second attempt then finds that workspace.
            if not subdomain_available(ctx, sub):
                raise _taken(sub) from None
            if attempt == 2:
                raise
    wake_supervisor(ctx)
    return view


def _taken(subdomain: str) -> Conflict:
    return Conflict("subdomain", f"The subdomain '{subdomain}' is taken; choose another.")


def _insert_app(ctx: Context, user: User, owner: str, row: dict[str, Any],
                credential: GitCredential | None = None) -> AppView:
    """Insert the App `row` into workspace `owner` (made when missing); raises
    `IntegrityError` when a concurrent transaction took the subdomain or the workspace name
    between the checks and the commit."""
    with session_scope(ctx.engine) as s:
        ws = get_or_create_workspace(s, owner, user)
        require_role(s, user, id_of(ws), "developer", "deploy apps")
        if s.exec(select(App.id).where(App.subdomain == row["subdomain"])).first() is not None:
            raise _taken(row["subdomain"])
        app = App(workspace_id=id_of(ws), **row)
        s.add(app)
        s.flush()
        s.add(AppEvent(app_id=id_of(app), from_state="", to_state="queued",
                       reason=f"Deployed by {user.username}"))
        if credential is not None:  # in the same transaction: the first clone has it
            from backend.repositories import credentials
            s.add(credentials.row_for(ctx, id_of(app), credential))
        return _view(ctx, s, app, user)


def list_apps(ctx: Context, user: User, workspace_id: int | None = None) -> list[AppView]:
    """Apps the user can see (optionally of one workspace), newest first."""
    with session_scope(ctx.engine) as s:
        q = select(App).where(App.desired_state != "deleted")
        visible = visible_workspace_ids(s, user)
        if visible is not None:
            q = q.where(col(App.workspace_id).in_(visible))
        if workspace_id is not None:
            q = q.where(App.workspace_id == workspace_id)
        apps = s.exec(q.order_by(col(App.created_at).desc())).all()
        return [_view(ctx, s, a, user) for a in apps]


def get_app(ctx: Context, user: User, app_id: int) -> AppView:
    with session_scope(ctx.engine) as s:
        return _view(ctx, s, load_app_for(s, user, app_id, "viewer", "view this app"), user)


def reboot_app(ctx: Context, user: User, app_id: int) -> AppView:
    """Restart on the same environment; an app that is not running is built again."""
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "reboot this app")
        app.desired_state = "running"
        app.restart_generation += 1
        if app.state in ("running", "starting"):
            s.add(AppEvent(app_id=id_of(app), from_state=app.state, to_state=app.state,
                           reason=f"Reboot requested by {user.username}"))
            app.updated_at = utcnow()
            s.add(app)
        else:
            appstate.transition(s, app, "queued", f"Reboot requested by {user.username}")
        view = _view(ctx, s, app, user)
    wake_supervisor(ctx)
    return view


def wake_app(ctx: Context, user: User | None, app_id: int) -> str:
    """Wake a sleeping app; returns its state afterwards (`starting` when woken).

    Anyone may wake a sleeping public app (the sleeping page's "Yes, get this app back up!"
    button, with `user=None` for a visitor); members of the app's workspace may wake any of
    its apps (the dashboard's moon). The supervisor starts it on its kept checkout and
    environment (no clone, no build). Waking counts as a view for hibernation. An app that
    is not sleeping is left as it is.
    """
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        member = user is not None and role_in(s, user, app.workspace_id) is not None \
            if app is not None else False
        if app is None or app.desired_state == "deleted" or \
                not (member or app.visibility == "public"):
            raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
        if app.state != "sleeping":
            return app.state
        who = user.username if user is not None else "a visitor"
        app.last_viewed_at = utcnow()
        appstate.transition(s, app, "starting", f"Waking up (requested by {who})")
        state = app.state
    wake_supervisor(ctx)
    return state


def delete_app(ctx: Context, user: User, app_id: int) -> None:
    """Mark the app deleted; the supervisor stops it and removes its files and route."""
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "delete this app")
        app.desired_state = "deleted"
        appstate.transition(s, app, "deleting", f"Deleted by {user.username}")
    wake_supervisor(ctx)


def app_events(ctx: Context, user: User, app_id: int, limit: int = 50) -> list[AppEvent]:
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "viewer", "view this app's events")
        q = select(AppEvent).where(AppEvent.app_id == app_id)
        return list(s.exec(q.order_by(col(AppEvent.id).desc()).limit(limit)).all())
