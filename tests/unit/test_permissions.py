"""Who may do what, enforced in backend/ (not only hidden in the UI).

One table of expectations, `TABLE`: a row per backend action, a column per role, generated
into one test case per cell. Each case deploys a fresh app (and, for member changes, a fresh
target user), so cases never depend on each other. Outcomes:

- ok: the call succeeds (for `can_view`: returns True);
- denied: `PermissionDenied` (for `can_view`: returns False);
- hidden: `NotFound`, the app is not revealed to people outside its workspace;
- None: not applicable (the action needs a signed-in user).

Roles: anonymous (no user), outsider (an account with no role in the workspace), viewer,
developer, admin (of the workspace), site admin (`User.is_admin`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from backend import workspaces
from backend.accounts import auth, users
from backend.analytics import reports as analytics
from backend.analytics import usage
from backend.apps import favorites, hooks, sharing
from backend.apps import listing as app_list
from backend.apps import logs as app_logs
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.apps import settings as app_settings
from backend.apps import state as appstate
from backend.context import Context, open_context
from backend.errors import NotFound, PermissionDenied
from backend.platform import notifications, status
from backend.platform.settings_load import load_settings
from models import App, session_scope

ROLES = ("anonymous", "outsider", "viewer", "developer", "admin", "site_admin")
REPO = "https://github.com/owner/app"

# action               anonymous outsider  viewer    developer admin     site_admin
TABLE: dict[str, tuple[str | None, ...]] = {
    "get_app":           (None,    "hidden", "ok",     "ok",     "ok",     "ok"),
    "list_workspace_apps": (None,  "denied", "ok",     "ok",     "ok",     "ok"),
    "deploy":            (None,    "denied", "denied", "ok",     "ok",     "ok"),
    "reboot":            (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "delete":            (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "app_events":        (None,    "hidden", "ok",     "ok",     "ok",     "ok"),
    "read_logs":         (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "read_log_tail":     (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "download_log":      (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "wake_public_app":   ("ok",    "ok",     "ok",     "ok",     "ok",     "ok"),
    "wake_private_app":  ("hidden", "hidden", "ok",    "ok",     "ok",     "ok"),
    "set_favorite":      (None,    "hidden", "ok",     "ok",     "ok",     "ok"),
    "view_private_app":  ("denied", "denied", "ok",    "ok",     "ok",     "ok"),
    "set_visibility":    (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "invite_viewer":     (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "remove_viewer":     (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "list_viewers":      (None,    "hidden", "ok",     "ok",     "ok",     "ok"),
    "get_secrets":       (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "set_secrets":       (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "get_settings":      (None,    "hidden", "ok",     "ok",     "ok",     "ok"),
    "change_subdomain":  (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "change_python":     (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "set_memory_limit":  (None,    "denied", "denied", "denied", "denied", "ok"),
    "webhook_info":      (None,    "hidden", "denied", "ok",     "ok",     "ok"),
    "app_analytics":     (None,    "hidden", "ok",     "ok",     "ok",     "ok"),
    "app_usage":         (None,    "hidden", "ok",     "ok",     "ok",     "ok"),
    "workspace_analytics": (None,  "denied", "ok",     "ok",     "ok",     "ok"),
    "list_members":      (None,    "denied", "ok",     "ok",     "ok",     "ok"),
    "add_member":        (None,    "denied", "denied", "denied", "ok",     "ok"),
    "change_member_role": (None,   "denied", "denied", "denied", "ok",     "ok"),
    "remove_member":     (None,    "denied", "denied", "denied", "ok",     "ok"),
    "create_user":       (None,    "denied", "denied", "denied", "denied", "ok"),
    "reset_password":    (None,    "denied", "denied", "denied", "denied", "ok"),
    "list_users":        (None,    "denied", "denied", "denied", "denied", "ok"),
    "email_outbox":      (None,    "denied", "denied", "denied", "denied", "ok"),
    "status_summary":    ("ok",    "ok",     "ok",     "ok",     "ok",     "ok"),
    "status_details":    (None,    "denied", "denied", "denied", "denied", "ok"),
}


@dataclass
class World:
    ctx: Context
    people: dict[str, Any]  # role -> User (None for anonymous)
    workspace_id: int
    counter: itertools.count

    def fresh_app(self, state: str = "running", visibility: str = "public") -> int:
        """A new app of the workspace, deployed by the site admin, in `state`."""
        n = next(self.counter)
        app = apps.deploy_app(self.ctx, self.people["site_admin"], repo_url=REPO,
                              subdomain=f"app-{n}")
        path = {"running": ("building", "starting", "running"),
                "sleeping": ("building", "starting", "running", "sleeping")}[state]
        with session_scope(self.ctx.engine) as s:
            row = s.get(App, app.id)
            row.visibility = visibility
            for step in path:
                appstate.transition(s, row, step, "")
        return app.id

    def fresh_user(self, role: str | None = None) -> str:
        """A new account, a member of the workspace with `role` when given."""
        name = f"target{next(self.counter)}"
        auth.create_user(self.ctx, name, "target-password", email=f"{name}@example.com")
        if role:
            workspaces.set_member(self.ctx, self.people["site_admin"], self.workspace_id,
                                  name, role)
        return name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> World:
    data = tmp_path_factory.mktemp("permissions") / "data"
    ctx = open_context(load_settings(env={}, data_dir=data, runtime="process",
                                     database_url=module_database_url))
    root = auth.create_user(ctx, "root", "root-password", is_admin=True)
    first = apps.deploy_app(ctx, root, repo_url=REPO, subdomain="seed")
    people: dict[str, Any] = {"anonymous": None, "site_admin": root}
    for role in ("viewer", "developer", "admin"):
        people[role] = auth.create_user(ctx, role, f"{role}-password",
                                        email=f"{role}@example.com")
        workspaces.set_member(ctx, root, first.workspace_id, role, role)
    people["outsider"] = auth.create_user(ctx, "outsider", "outsider-password",
                                          email="outsider@example.com")
    return World(ctx, people, first.workspace_id, itertools.count())


def _can_view(w: World, u: Any) -> None:
    if not sharing.can_view(w.ctx, u, w.fresh_app(visibility="private")):
        raise PermissionDenied("can_view returned False")


ACTIONS: dict[str, Callable[[World, Any], Any]] = {
    "get_app": lambda w, u: apps.get_app(w.ctx, u, w.fresh_app()),
    "list_workspace_apps": lambda w, u: app_list.list_workspace_apps(w.ctx, u,
                                                                     w.workspace_id),
    "deploy": lambda w, u: apps.deploy_app(w.ctx, u, repo_url=REPO,
                                           subdomain=f"new-{next(w.counter)}"),
    "reboot": lambda w, u: apps.reboot_app(w.ctx, u, w.fresh_app()),
    "delete": lambda w, u: apps.delete_app(w.ctx, u, w.fresh_app()),
    "app_events": lambda w, u: apps.app_events(w.ctx, u, w.fresh_app()),
    "read_logs": lambda w, u: app_logs.read_logs(w.ctx, u, w.fresh_app()),
    "read_log_tail": lambda w, u: app_logs.read_tail(w.ctx, u, w.fresh_app(), "app"),
    "download_log": lambda w, u: app_logs.read_full(w.ctx, u, w.fresh_app(), "build"),
    "wake_public_app": lambda w, u: apps.wake_app(w.ctx, u, w.fresh_app("sleeping")),
    "wake_private_app": lambda w, u: apps.wake_app(
        w.ctx, u, w.fresh_app("sleeping", visibility="private")),
    "set_favorite": lambda w, u: favorites.set_favorite(w.ctx, u, w.fresh_app(), True),
    "view_private_app": _can_view,
    "set_visibility": lambda w, u: sharing.set_visibility(w.ctx, u, w.fresh_app(), "private"),
    "invite_viewer": lambda w, u: sharing.invite_viewer(w.ctx, u, w.fresh_app(),
                                                        "guest@example.com"),
    "remove_viewer": lambda w, u: sharing.remove_viewer(w.ctx, u, w.fresh_app(),
                                                        "guest@example.com"),
    "list_viewers": lambda w, u: sharing.list_viewers(w.ctx, u, w.fresh_app()),
    "get_secrets": lambda w, u: app_secrets.get_secrets(w.ctx, u, w.fresh_app()),
    "set_secrets": lambda w, u: app_secrets.set_secrets(w.ctx, u, w.fresh_app(), 'a = "b"'),
    "get_settings": lambda w, u: app_settings.get_settings(w.ctx, u, w.fresh_app()),
    "change_subdomain": lambda w, u: app_settings.change_subdomain(
        w.ctx, u, w.fresh_app(), f"moved-{next(w.counter)}"),
    "change_python": lambda w, u: app_settings.change_python_version(
        w.ctx, u, w.fresh_app(), w.ctx.settings.default_python),
    "set_memory_limit": lambda w, u: app_settings.set_memory_limit(w.ctx, u, w.fresh_app(),
                                                                   2048),
    "webhook_info": lambda w, u: hooks.webhook_info(w.ctx, u, w.fresh_app()),
    "app_analytics": lambda w, u: analytics.app_viewers(w.ctx, u, w.fresh_app()),
    "app_usage": lambda w, u: usage.app_usage(w.ctx, u, w.fresh_app()),
    "workspace_analytics": lambda w, u: analytics.workspace_monthly_viewers(
        w.ctx, u, w.workspace_id),
    "list_members": lambda w, u: workspaces.list_members(w.ctx, u, w.workspace_id),
    "add_member": lambda w, u: workspaces.set_member(w.ctx, u, w.workspace_id,
                                                     w.fresh_user(), "viewer"),
    "change_member_role": lambda w, u: workspaces.set_member(
        w.ctx, u, w.workspace_id, w.fresh_user("viewer"), "developer"),
    "remove_member": lambda w, u: workspaces.remove_member(w.ctx, u, w.workspace_id,
                                                           w.fresh_user("viewer")),
    "create_user": lambda w, u: users.create_account(w.ctx, u, f"made{next(w.counter)}"),
    "reset_password": lambda w, u: users.reset_account_password(w.ctx, u, w.fresh_user()),
    "list_users": lambda w, u: users.list_accounts(w.ctx, u),
    "email_outbox": lambda w, u: notifications.list_outbox(w.ctx, u),
    "status_summary": lambda w, u: status.public_status(w.ctx),
    "status_details": lambda w, u: status.full_status(w.ctx, u),
}


def outcome(world: World, action: str, role: str) -> str:
    try:
        ACTIONS[action](world, world.people[role])
    except PermissionDenied:
        return "denied"
    except NotFound:
        return "hidden"
    return "ok"


CASES = [(action, role, expected) for action, row in TABLE.items()
         for role, expected in zip(ROLES, row, strict=True) if expected is not None]


def test_table_covers_every_action() -> None:
    assert set(TABLE) == set(ACTIONS)


@pytest.mark.parametrize(("action", "role", "expected"), CASES,
                         ids=[f"{a}-{r}" for a, r, _ in CASES])
def test_permission(world: World, action: str, role: str, expected: str) -> None:
    assert outcome(world, action, role) == expected


def test_auth_set_password_of_someone_else_needs_a_site_admin(world: World) -> None:
    for role in ("outsider", "viewer", "developer", "admin"):
        with pytest.raises(PermissionDenied):
            auth.set_password(world.ctx, world.people[role], world.fresh_user(),
                              "new-password-1")
    auth.set_password(world.ctx, world.people["site_admin"], world.fresh_user(),
                      "new-password-1")
