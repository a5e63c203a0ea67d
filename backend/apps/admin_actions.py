"""Actions on an app beyond deploy, reboot and delete: put it to sleep now, wake it, stop
it, move it to another workspace.

Who may do what:
- put to sleep now: the app's developers (workspace role developer or admin) and site
  admins; the supervisor stops the instance and the app goes to `sleeping` with its checkout
  and environment kept (a `sleep_now` request to the leader, served like a push or a
  scheduled sleep once the app has no worker);
- wake: a sleeping app as `service.wake_app` (members, or anyone for a public app); a
  stopped app by its developers and site admins (it starts from disk, no clone or build);
- stop and move: site admins only. A stopped app stays stopped across platform restarts
  until it is woken or rebooted.
Each raises `NotFound` when the caller cannot see the app and `PermissionDenied` when they
may see it but not do this; each returns the app's view afterwards.
"""

from __future__ import annotations

from backend.apps import service as app_service
from backend.apps import state as appstate
from backend.apps.service import AppView, load_app_for
from backend.context import Context
from backend.errors import NotFound, PermissionDenied, ValidationError
from backend.platform.supervisor_report import wake_supervisor
from models import AppEvent, AppRequest, User, Workspace, id_of, session_scope, utcnow

SLEEP_NOW = "sleep_now"  # the request kind the leader serves (supervisor/control)


def _require_site_admin(user: User, action: str) -> None:
    if not user.is_admin:
        raise PermissionDenied(f"Only a server administrator can {action}. Ask one of them.")


def sleep_now(ctx: Context, user: User, app_id: int) -> AppView:
    """Ask the supervisor to put a running app to sleep now (module docstring)."""
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "put this app to sleep")
        if app.state != "running" or app.desired_state != "running":
            raise ValidationError("state", f"Only a running app can be put to sleep; this "
                                  f"one is {app.state.replace('_', ' ')}.")
        s.add(AppRequest(app_id=id_of(app), kind=SLEEP_NOW, arg=user.username))
        s.add(AppEvent(app_id=id_of(app), from_state=app.state, to_state=app.state,
                       reason=f"Sleep requested by {user.username}"))
    wake_supervisor(ctx)
    return app_service.get_app(ctx, user, app_id)


def wake(ctx: Context, user: User, app_id: int) -> AppView:
    """Wake a sleeping app, or start a stopped one again from its checkout and
    environment."""
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "viewer", "view this app")
        stopped = app.desired_state == "stopped" or app.state == "stopped"
    if not stopped:
        app_service.wake_app(ctx, user, app_id)
        return app_service.get_app(ctx, user, app_id)
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "start this app")
        app.desired_state = "running"
        app.last_viewed_at = utcnow()  # a start counts as a view for hibernation
        appstate.transition(s, app, "starting", f"Started by {user.username}")
    wake_supervisor(ctx)
    return app_service.get_app(ctx, user, app_id)


def stop(ctx: Context, user: User, app_id: int) -> AppView:
    """Stop the app's instance and keep it stopped (site admins)."""
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "viewer", "view this app")
        _require_site_admin(user, "stop an app")
        app.desired_state = "stopped"
        app.updated_at = utcnow()
        s.add(app)
        s.add(AppEvent(app_id=id_of(app), from_state=app.state, to_state=app.state,
                       reason=f"Stop requested by {user.username}"))
    wake_supervisor(ctx)
    return app_service.get_app(ctx, user, app_id)


def move(ctx: Context, user: User, app_id: int, workspace_id: int) -> AppView:
    """Move the app to the workspace `workspace_id` (site admins); its URL, code and
    secrets stay; who may see and change it follows the new workspace's members."""
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "viewer", "view this app")
        _require_site_admin(user, "move an app to another workspace")
        target = s.get(Workspace, workspace_id)
        if target is None:
            raise NotFound(f"Workspace {workspace_id} does not exist; choose another.")
        if target.id == app.workspace_id:
            raise ValidationError("workspace", f"The app is in workspace '{target.name}' "
                                  "already; choose another.")
        app.workspace_id = workspace_id
        app.updated_at = utcnow()
        s.add(app)
        s.add(AppEvent(app_id=id_of(app), from_state=app.state, to_state=app.state,
                       reason=f"Moved to workspace '{target.name}' by {user.username}"))
    return app_service.get_app(ctx, user, app_id)
