"""Backend services without a supervisor: validation, the state machine, permissions,
deploy/reboot/delete intent, accounts."""

from __future__ import annotations

import pytest

from backend.accounts import auth
from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.apps import state as appstate
from backend.errors import InvalidTransition, NotFound, PermissionDenied, ValidationError
from backend.validation import (
    repo_owner_and_name,
    validate_branch,
    validate_main_file,
    validate_repo_url,
    validate_subdomain,
)
from models import AppEvent, Membership, session_scope


@pytest.mark.parametrize("value,ok", [
    ("hello", True), ("my-app-2", True), ("a", True), ("x" * 63, True),
    ("", False), ("-app", False), ("app-", False), ("App_1", False), ("x" * 64, False),
    ("www", False), ("api", False), ("a.b", False), ("ünï", False),
])
def test_subdomain_rules(value: str, ok: bool) -> None:
    if ok:
        assert validate_subdomain(value) == value.lower()
    else:
        with pytest.raises(ValidationError) as e:
            validate_subdomain(value)
        assert e.value.field == "subdomain"


@pytest.mark.parametrize("url,local_ok,ok", [
    ("https://github.com/owner/repo", False, True),
    ("git@github.com:owner/repo.git", False, True),
    ("ssh://git@host/owner/repo.git", False, True),
    ("/srv/git/owner/repo.git", True, True),
    ("file:///srv/git/owner/repo.git", True, True),
    ("/srv/git/owner/repo.git", False, False),
    ("ext::sh -c touch% /tmp/pwned", True, False),
    ("--upload-pack=touch /tmp/x", True, False),
    ("repo", True, False),
    ("https://github.com/acme/Bad Repo", True, False),
    ("", True, False),
])
def test_repo_url_rules(url: str, local_ok: bool, ok: bool) -> None:
    if ok:
        assert validate_repo_url(url, local_ok) == url
    else:
        with pytest.raises(ValidationError):
            validate_repo_url(url, local_ok)


def test_workspace_is_the_repo_owner() -> None:
    assert repo_owner_and_name("https://github.com/Streamlit/demo.git") == ("streamlit", "demo")
    assert repo_owner_and_name("git@gitlab.com:team/app.git") == ("team", "app")
    assert repo_owner_and_name("/srv/git/alice/app.git") == ("alice", "app")
    assert repo_owner_and_name("file:///srv/git/alice/app.git") == ("alice", "app")
    # A host's nested groups are the owner path, as GitLab shows it.
    assert repo_owner_and_name("https://gitlab.com/Analytics/Reports/dash.git") == (
        "analytics/reports", "dash")
    assert repo_owner_and_name("git@gitlab.com:analytics/reports/dash.git") == (
        "analytics/reports", "dash")
    assert repo_owner_and_name("ssh://git@git.example.org:2222/team/dash.git") == (
        "team", "dash")
    assert repo_owner_and_name("https://bitbucket.example.com/scm/team/dash.git") == (
        "team", "dash")


@pytest.mark.parametrize("branch,ok", [("main", True), ("feature/x", True), ("-x", False),
                                        ("a..b", False), ("a b", False), ("x.lock", False)])
def test_branch_rules(branch: str, ok: bool) -> None:
    if ok:
        assert validate_branch(branch) == branch
    else:
        with pytest.raises(ValidationError):
            validate_branch(branch)


@pytest.mark.parametrize("path,ok", [("streamlit_app.py", True), ("src/app.py", True),
                                      ("../x.py", False), ("/etc/x.py", False),
                                      ("app.txt", False), ("-x.py", False)])
def test_main_file_rules(path: str, ok: bool) -> None:
    if ok:
        assert validate_main_file(path) == path
    else:
        with pytest.raises(ValidationError):
            validate_main_file(path)


def test_state_machine() -> None:
    assert appstate.can_transition("queued", "building")
    assert appstate.can_transition("building", "build_failed")
    assert appstate.can_transition("running", "sleeping")
    assert appstate.can_transition("crashed", "queued")
    assert not appstate.can_transition("queued", "running")
    assert not appstate.can_transition("build_failed", "running")
    assert not appstate.can_transition("deleting", "queued")


def test_deploy_reboot_delete_record_intent_and_events(ctx, admin) -> None:
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git")
    assert (view.subdomain, view.workspace, view.state) == ("demo", "team", "queued")
    assert view.url == f"http://demo.localhost:{ctx.settings.port}"
    second = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git")
    assert second.subdomain == "demo-2"
    with session_scope(ctx.engine) as s:
        from models import App
        app = s.get(App, view.id)
        appstate.transition(s, app, "building")
        appstate.transition(s, app, "build_failed", "boom")
    assert apps.reboot_app(ctx, admin, view.id).state == "queued"
    apps.delete_app(ctx, admin, view.id)
    assert [a.id for a in apps.list_apps(ctx, admin)] == [second.id]
    with pytest.raises(NotFound):
        apps.get_app(ctx, admin, view.id)
    with session_scope(ctx.engine) as s:
        from sqlmodel import select
        states = s.exec(select(AppEvent.to_state).where(AppEvent.app_id == view.id)
                        .order_by(AppEvent.id)).all()
    assert states == ["queued", "building", "build_failed", "queued", "deleting"]
    with pytest.raises(InvalidTransition):
        with session_scope(ctx.engine) as s:
            from models import App
            appstate.transition(s, s.get(App, second.id), "running")


def test_permissions_by_role(ctx, admin) -> None:
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git")
    dev = auth.create_user(ctx, "dev", "password-dev")
    viewer = auth.create_user(ctx, "viewer", "password-viewer")
    outsider = auth.create_user(ctx, "outsider", "password-out")
    with session_scope(ctx.engine) as s:
        s.add(Membership(user_id=dev.id, workspace_id=view.workspace_id, role="developer"))
        s.add(Membership(user_id=viewer.id, workspace_id=view.workspace_id, role="viewer"))
    assert [a.id for a in apps.list_apps(ctx, viewer)] == [view.id]
    assert not apps.get_app(ctx, viewer, view.id).can_manage
    assert apps.get_app(ctx, dev, view.id).can_manage
    assert apps.list_apps(ctx, outsider) == []
    with pytest.raises(NotFound):
        apps.get_app(ctx, outsider, view.id)
    for action in (apps.reboot_app, apps.delete_app, app_logs.read_logs):
        with pytest.raises(PermissionDenied):
            action(ctx, viewer, view.id)
        with pytest.raises(NotFound):
            action(ctx, outsider, view.id)
    with pytest.raises(PermissionDenied):
        apps.deploy_app(ctx, viewer, repo_url="/srv/git/team/other.git")
    apps.reboot_app(ctx, dev, view.id)
    # A user deploying from a new owner gets that workspace as admin.
    mine = apps.deploy_app(ctx, outsider, repo_url="/srv/git/outsider/x.git")
    assert mine.role == "admin" and mine.workspace == "outsider"


def test_accounts(ctx) -> None:
    created = auth.ensure_first_admin(ctx)
    assert created is not None and auth.ensure_first_admin(ctx) is None
    username, password = created
    assert auth.authenticate(ctx, username, password) is not None
    assert auth.authenticate(ctx, username, "wrong") is None
    assert password in auth.initial_password_file(ctx).read_text()
    assert oct(auth.initial_password_file(ctx).stat().st_mode & 0o777) == "0o600"
    admin = auth.get_user(ctx, username)
    bob = auth.create_user(ctx, "bob", "bob-password")
    with pytest.raises(ValidationError):
        auth.create_user(ctx, "bob", "another-password")
    with pytest.raises(ValidationError):
        auth.set_password(ctx, bob, "bob", "new-password", current_password="wrong")
    auth.set_password(ctx, bob, "bob", "new-password", current_password="bob-password")
    with pytest.raises(PermissionDenied):
        auth.set_password(ctx, bob, username, "hijacked-password")
    with pytest.raises(ValidationError):
        auth.set_password(ctx, admin, username, "admin-new-password")
    auth.set_password(ctx, admin, "bob", "reset-by-admin")
    auth.set_password(ctx, admin, username, "admin-new-password", current_password=password)
    assert not auth.initial_password_file(ctx).exists()
    creds = auth.authenticator_credentials(ctx)["usernames"]
    assert set(creds) == {"admin", "bob"} and creds["bob"]["password"].startswith("$2")


def test_operator_commands(settings, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from backend.platform.settings import PROJECT_ROOT
    env = {**os.environ, **settings.to_env()}

    def run(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "supervisor", *args], cwd=PROJECT_ROOT,
                             env=env, capture_output=True, text=True, check=True).stdout
        return out.split("password ", 1)[1].strip()

    from backend.context import open_context
    ctx = open_context(settings)
    first = auth.ensure_first_admin(ctx)
    assert first is not None
    new = run("reset-password", "admin")
    assert auth.authenticate(ctx, "admin", new) and not auth.authenticate(ctx, "admin", first[1])
    carol = run("create-user", "carol", "--admin")
    user = auth.authenticate(ctx, "carol", carol)
    assert user is not None and user.is_admin
