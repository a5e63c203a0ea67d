"""An app's settings besides sharing and secrets: custom subdomain, Python version, memory.

- Subdomain: developers change it. The row changes and the supervisor is woken; its next
  pass (at once) rebuilds the route table from the database, so the old name stops
  resolving and the new one serves the same instance (no restart: the instance does not
  know its host). The old name is free for other apps afterwards.
- Python version: shown with the versions the runtime offers (`backend.platform.supervisor_report`).
  Changing it needs a new environment, so it queues a full redeploy (the oven page shows
  meanwhile); the function does both, so a version is never stored without its redeploy.
- Memory limit: site admins only (memory is the server's, not a workspace's). `None` means
  the server default (setting `memory_limit_mb`). A running app restarts to apply it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from backend.apps import service as app_service
from backend.apps import state as appstate
from backend.apps.service import AppView, load_app_for, offered_python_versions
from backend.context import Context
from backend.errors import PermissionDenied, ValidationError
from backend.platform import supervisor_report as platform
from backend.validation import validate_subdomain
from backend.workspaces import role_in
from models import App, AppEvent, User, session_scope, utcnow

MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 65536


@dataclass(frozen=True)
class AppSettings:
    app_id: int
    subdomain: str
    url: str
    python_version: str  # effective: the app's choice, else the server default
    python_choice: str  # what the app asked for ("" = default)
    python_versions: tuple[str, ...]  # what this server offers
    built_python: str  # what its environment was built with (e.g. 3.12.1); "" before a build
    memory_limit_mb: int  # effective
    memory_custom: bool  # an admin set a limit for this app
    default_memory_mb: int
    visibility: str
    role: str
    can_manage: bool  # developer or admin of the workspace
    can_set_memory: bool  # site admin


def get_settings(ctx: Context, user: User, app_id: int) -> AppSettings:
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "viewer", "see this app's settings")
        role = role_in(s, user, app.workspace_id) or ""
        return AppSettings(
            app_id=app_id, subdomain=app.subdomain,
            url=ctx.settings.public_url(app.subdomain),
            python_version=app.python_version or ctx.settings.default_python,
            python_choice=app.python_version, python_versions=offered_python_versions(ctx),
            built_python=app.built_python,
            memory_limit_mb=app.memory_limit_mb or ctx.settings.memory_limit_mb,
            memory_custom=app.memory_limit_mb is not None,
            default_memory_mb=ctx.settings.memory_limit_mb, visibility=app.visibility,
            role=role, can_manage=role in ("developer", "admin"),
            can_set_memory=bool(user.is_admin))


def change_subdomain(ctx: Context, user: User, app_id: int, subdomain: str) -> AppView:
    """Move the app to `<subdomain>.<domain>`; the old URL stops working at once."""
    new = validate_subdomain(subdomain)
    taken = ValidationError("subdomain", f"The subdomain '{new}' is taken; choose another.")
    try:
        with session_scope(ctx.engine) as s:
            app = load_app_for(s, user, app_id, "developer", "change this app's subdomain")
            old = app.subdomain
            if new != old:
                if s.exec(select(App.id).where(App.subdomain == new)).first() is not None:
                    raise taken
                app.subdomain = new
                app.updated_at = utcnow()
                s.add(app)
                s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state,
                               reason=f"Subdomain changed from {old} to {new} by "
                                      f"{user.username}"))
    except IntegrityError:  # another app took it between the check and the commit
        raise taken from None
    platform.wake_supervisor(ctx)
    return app_service.get_app(ctx, user, app_id)


def change_python_version(ctx: Context, user: User, app_id: int, version: str) -> AppView:
    """Store the Python version and queue a full redeploy with it."""
    version = version.strip()
    offered = offered_python_versions(ctx)
    if version not in offered:
        raise ValidationError("python_version", f"Python {version or '(none)'} is not offered "
                              f"by this server; choose one of {', '.join(offered)}.")
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "change this app's Python version")
        app.python_version = version
        app.desired_state = "running"
        appstate.transition(s, app, "queued", f"Redeploy with Python {version} requested "
                            f"by {user.username}")
    platform.wake_supervisor(ctx)
    return app_service.get_app(ctx, user, app_id)


def set_memory_limit(ctx: Context, user: User, app_id: int, limit_mb: int | None) -> AppView:
    """Set (or with None, reset to the default) the app's memory limit; site admins only.
    A running app restarts to apply it."""
    if not user.is_admin:
        raise PermissionDenied("Only site admins can change an app's memory limit.")
    if limit_mb is not None and not MIN_MEMORY_MB <= int(limit_mb) <= MAX_MEMORY_MB:
        raise ValidationError("memory_limit_mb", f"The memory limit is between "
                              f"{MIN_MEMORY_MB} and {MAX_MEMORY_MB} MiB.")
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "viewer", "change this app's memory limit")
        app.memory_limit_mb = None if limit_mb is None else int(limit_mb)
        app.updated_at = utcnow()
        s.add(app)
        shown = f"{limit_mb} MiB" if limit_mb is not None else \
            f"the default ({ctx.settings.memory_limit_mb} MiB)"
        s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state,
                       reason=f"Memory limit set to {shown} by {user.username}"))
        state = app.state
    if state in ("running", "starting"):
        return app_service.reboot_app(ctx, user, app_id)
    return app_service.get_app(ctx, user, app_id)
