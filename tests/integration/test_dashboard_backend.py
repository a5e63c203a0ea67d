"""The backend modules the dashboard added: secrets, app settings, status, repository
checks, the batched app list and account management. (Who may call what is in
tests/unit/test_permissions.py.)"""

from __future__ import annotations

import http.server
import os
import stat
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from backend.accounts import auth, users
from backend.apps import listing as app_list
from backend.apps import log_masking
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.apps import settings as app_settings
from backend.apps import state as appstate
from backend.context import Context
from backend.errors import BackendError, PermissionDenied, ValidationError
from backend.platform import status
from backend.platform.supervisor_report import PlatformInfo, wake_file, write_platform
from backend.repositories import checks as repos
from models import App, AppEvent, AppSecret, EmailOutbox, Favorite, session_scope

REPO = "https://github.com/owner/hello"


def deploy(ctx: Context, user: Any, subdomain: str, repo: str = REPO) -> Any:
    return apps.deploy_app(ctx, user, repo_url=repo, subdomain=subdomain)


def move(ctx: Context, app_id: int, *states: str, reason: str = "") -> None:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        for state in states:
            appstate.transition(s, app, state, reason)


def row(ctx: Context, app_id: int) -> App:
    with session_scope(ctx.engine) as s:
        return s.get(App, app_id)


# Secrets ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "line", "column"), [
    ("a = 1\nb c\n", 2, 3),
    ('x = "never closed\n', 1, 18),
    ("[t]\nk = 1\n[t]\n", 3, 3),
])
def test_secrets_errors_name_the_line(text: str, line: int, column: int) -> None:
    with pytest.raises(app_secrets.SecretsError) as err:
        app_secrets.parse_secrets(text)
    assert (err.value.line, err.value.column) == (line, column)
    assert err.value.field == "secrets" and f"Line {line}" in str(err.value)


def test_secrets_size_is_limited() -> None:
    with pytest.raises(app_secrets.SecretsError, match="limited"):
        app_secrets.parse_secrets("a = '" + "x" * app_secrets.MAX_BYTES + "'")


def test_root_level_strings_become_env_vars_except_dangerous_names() -> None:
    data = app_secrets.parse_secrets(
        'API_KEY = "k"\nnumber = 3\nPATH = "/evil"\nLD_PRELOAD = "x"\nSTREAMLIT_X = "y"\n'
        '"bad-name" = "z"\n[db]\npassword = "p"\n')
    assert app_secrets.env_vars_of(data) == {"API_KEY": "k"}


def test_secrets_are_encrypted_at_rest_and_written_0600_for_the_runtime(ctx, admin) -> None:
    app = deploy(ctx, admin, "sec")
    saved = app_secrets.set_secrets(ctx, admin, app.id, 'API_KEY = "top-secret-1"\n')
    assert saved == app_secrets.SecretsSaved(keys=1, env_vars=("API_KEY",), restarted=False)
    with session_scope(ctx.engine) as s:
        token = s.get(AppSecret, app.id).ciphertext
    assert token and "top-secret-1" not in token
    key_file = ctx.settings.data_dir / "keys" / app_secrets.KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) & 0o077 == 0
    path = app_secrets.runtime_path(ctx.settings, app.id)
    assert path == ctx.settings.apps_path / str(app.id) / "secrets.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert app_secrets.get_secrets(ctx, admin, app.id) == 'API_KEY = "top-secret-1"\n'
    assert app_secrets.runtime_env_vars(ctx.settings, app.id) == {"API_KEY": "top-secret-1"}
    with session_scope(ctx.engine) as s:
        reasons = [e.reason for e in s.exec(select(AppEvent).where(AppEvent.app_id == app.id))]
    assert "Secrets updated by admin (1 key)" in reasons
    assert not any("top-secret-1" in r for r in reasons)


def test_clearing_secrets_leaves_an_empty_file(ctx, admin) -> None:
    app = deploy(ctx, admin, "sec")
    app_secrets.set_secrets(ctx, admin, app.id, 'a = "b"\n')
    app_secrets.set_secrets(ctx, admin, app.id, "")
    assert app_secrets.runtime_path(ctx.settings, app.id).read_text() == ""
    assert app_secrets.get_secrets(ctx, admin, app.id) == ""


def test_a_changed_key_file_gives_a_clear_error(ctx, admin) -> None:
    app = deploy(ctx, admin, "sec")
    app_secrets.set_secrets(ctx, admin, app.id, 'a = "b"\n')
    (ctx.settings.data_dir / "keys" / app_secrets.KEY_NAME).write_text("another key")
    with pytest.raises(BackendError, match="cannot be decrypted"):
        app_secrets.get_secrets(ctx, admin, app.id)


@pytest.mark.parametrize(("states", "restarts"), [
    ((), False),  # queued: picks the file up when it starts
    (("building",), False),
    (("building", "starting"), True),
    (("building", "starting", "running"), True),
    (("building", "starting", "crashed"), True),
    (("building", "starting", "running", "sleeping"), False),
])
def test_saving_secrets_restarts_an_app_that_may_have_read_them(ctx, admin, states,
                                                                 restarts) -> None:
    app = deploy(ctx, admin, "sec")
    move(ctx, app.id, *states)
    before = row(ctx, app.id)
    saved = app_secrets.set_secrets(ctx, admin, app.id, 'a = "b"\n')
    after = row(ctx, app.id)
    assert saved.restarted is restarts
    rebooted = after.restart_generation == before.restart_generation + 1
    assert rebooted is restarts


def test_redact_masks_secret_values(ctx, admin) -> None:
    app = deploy(ctx, admin, "sec")
    app_secrets.set_secrets(ctx, admin, app.id, 'k = "hunter22"\n[db]\npw = "xyz"\n'
                            'list = ["alpha-1"]\n')
    assert log_masking.mask(ctx, app.id, "hunter22 alpha-1 xyz") == "**** **** xyz"


# App settings ----------------------------------------------------------------------------
def test_change_subdomain(ctx, admin) -> None:
    app = deploy(ctx, admin, "before")
    deploy(ctx, admin, "other")
    with pytest.raises(ValidationError, match="taken"):
        app_settings.change_subdomain(ctx, admin, app.id, "other")
    with pytest.raises(ValidationError, match="reserved"):
        app_settings.change_subdomain(ctx, admin, app.id, "www")
    mtime = wake_file(ctx).stat().st_mtime_ns
    view = app_settings.change_subdomain(ctx, admin, app.id, " After ")
    assert (view.subdomain, view.url) == ("after", ctx.settings.public_url("after"))
    assert row(ctx, app.id).subdomain == "after"
    assert wake_file(ctx).stat().st_mtime_ns >= mtime
    assert apps.subdomain_available(ctx, "before")
    events = apps.app_events(ctx, admin, app.id)
    assert events[0].reason == "Subdomain changed from before to after by admin"


def test_python_version_change_redeploys(ctx, admin) -> None:
    app = deploy(ctx, admin, "py")
    move(ctx, app.id, "building", "starting", "running")
    with pytest.raises(ValidationError, match="not offered"):
        app_settings.change_python_version(ctx, admin, app.id, "2.7")
    write_platform(ctx, PlatformInfo(engine="process", python_versions=["3.11", "3.12"]))
    view = app_settings.change_python_version(ctx, admin, app.id, "3.12")
    assert (view.python_version, view.state) == ("3.12", "queued")
    conf = app_settings.get_settings(ctx, admin, app.id)
    assert conf.python_versions == ("3.11", "3.12") and conf.python_choice == "3.12"


def test_memory_limit(ctx, admin) -> None:
    app = deploy(ctx, admin, "mem")
    move(ctx, app.id, "building", "starting", "running")
    with pytest.raises(ValidationError):
        app_settings.set_memory_limit(ctx, admin, app.id, 16)
    app_settings.set_memory_limit(ctx, admin, app.id, 2048)
    assert (row(ctx, app.id).memory_limit_mb, row(ctx, app.id).restart_generation) == (2048, 1)
    conf = app_settings.get_settings(ctx, admin, app.id)
    assert (conf.memory_limit_mb, conf.memory_custom) == (2048, True)
    app_settings.set_memory_limit(ctx, admin, app.id, None)
    conf = app_settings.get_settings(ctx, admin, app.id)
    assert (conf.memory_limit_mb, conf.memory_custom) == (ctx.settings.memory_limit_mb, False)


# Status ----------------------------------------------------------------------------------
class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(200 if self.path == "/api/v1/health" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_proxy(ctx) -> Iterator[Context]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    import dataclasses
    settings = dataclasses.replace(ctx.settings, port=server.server_address[1])
    yield Context(settings=settings, engine=ctx.engine)
    server.shutdown()


def test_status_when_everything_answers(fake_proxy, admin) -> None:
    ctx = fake_proxy
    import time
    write_platform(ctx, PlatformInfo(engine="process", python_versions=["3.11"],
                                     heartbeat=time.time()))
    report = status.public_status(ctx)
    assert report.overall == "operational", report.components
    assert [c.name for c in report.components] == ["Supervisor", "Proxy", "App runtime",
                                                   "Database", "Disk", "Email"]
    assert all(c.detail == "" for c in report.components)
    assert not report.counts and not report.incidents
    email = report.components[-1]
    assert email.ok is None and "outbox" in email.summary


def test_status_without_supervisor_is_down(ctx) -> None:
    report = status.public_status(ctx)
    assert report.overall == "down"
    by_name = {c.name: c for c in report.components}
    assert by_name["Supervisor"].ok is False and by_name["Database"].ok is True


def test_full_status_counts_apps_and_lists_incidents(ctx, admin) -> None:
    a = deploy(ctx, admin, "a")
    b = deploy(ctx, admin, "b")
    c = deploy(ctx, admin, "c")
    move(ctx, a.id, "building", "starting", "running")
    move(ctx, b.id, "building", "starting", "over_limit", reason="used 2 GiB")
    move(ctx, c.id, "building", "build_failed", reason="no such package")
    with session_scope(ctx.engine) as s:
        s.add(EmailOutbox(to_addr="x@example.com", subject="s", status="failed"))
    report = status.full_status(ctx, admin)
    assert report.counts == {"build_failed": 1, "over_limit": 1, "running": 1}
    assert [(i.app, i.kind) for i in report.incidents] == [("c", "build_failed"),
                                                          ("b", "over_limit")]
    assert report.incidents[1].reason == "used 2 GiB"
    assert "1 failed" in report.components[-1].detail
    assert report.disk_total_bytes > 0
    apps.delete_app(ctx, admin, c.id)
    with session_scope(ctx.engine) as s:
        s.delete(s.get(App, c.id))
    assert status.full_status(ctx, admin).incidents[0].app == f"app #{c.id} (deleted)"


# Repository checks -----------------------------------------------------------------------
def test_check_main_file(ctx, make_repo) -> None:
    repo = make_repo("checked", {"app/main.py": "", "app/util.py": "", "README.md": ""},
                     branch="dev")
    repos.check_main_file(ctx, repo.url, "dev", "app/main.py")
    with pytest.raises(ValidationError) as err:
        repos.check_main_file(ctx, repo.url, "dev", "app/other.py")
    assert err.value.field == "main_file"
    assert "Python files in /app/: app/main.py, app/util.py" in str(err.value)
    with pytest.raises(ValidationError) as err:
        repos.check_main_file(ctx, repo.url, "main", "app/main.py")
    assert err.value.field == "branch"
    with pytest.raises(ValidationError) as err:
        repos.check_main_file(ctx, repo.url + "-missing", "dev", "app/main.py")
    assert err.value.field == "repo_url"
    with pytest.raises(ValidationError) as err:
        repos.check_main_file(ctx, repo.url, "dev", "app/main.py", timeout=0)
    assert err.value.field == "repo_url" and "did not answer" in str(err.value)
    with pytest.raises(ValidationError) as err:
        repos.check_main_file(ctx, "--upload-pack=x", "dev", "app/main.py")
    assert err.value.field == "repo_url"


def test_check_main_file_leaves_no_temporary_clone(ctx, make_repo, tmp_path,
                                                   monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    repo = make_repo("checked")
    repos.check_main_file(ctx, repo.url, "main", "streamlit_app.py")
    assert os.listdir(tmp_path / "tmp") == []


# App list --------------------------------------------------------------------------------
def count_queries(ctx: Context) -> Any:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)
    event.listen(ctx.engine, "before_cursor_execute", before)
    return seen, lambda: event.remove(ctx.engine, "before_cursor_execute", before)


def test_app_list_takes_the_same_number_of_queries_for_any_number_of_apps(ctx, admin) -> None:
    first = deploy(ctx, admin, "app-0")
    ws = first.workspace_id
    seen, stop = count_queries(ctx)
    app_list.list_workspace_apps(ctx, admin, ws)
    few = len(seen)
    stop()
    with session_scope(ctx.engine) as s:
        for i in range(1, 200):
            s.add(App(workspace_id=ws, owner_id=admin.id, subdomain=f"app-{i}",
                      repo_url=REPO, state="running"))
        s.flush()
        s.add(Favorite(user_id=admin.id, app_id=150))
    seen, stop = count_queries(ctx)
    listing = app_list.list_workspace_apps(ctx, admin, ws)
    stop()
    assert len(seen) == few <= 6
    assert len(listing.apps) == 200 and listing.favorites == {150}
    assert listing.apps[0].id == 150 and listing.apps[1].subdomain == "app-199"
    assert listing.apps[-1].subdomain == "app-0" and listing.apps[-1].owner == "admin"


def test_app_list_equals_the_per_app_views(ctx, admin) -> None:
    deploy(ctx, admin, "one")
    deploy(ctx, admin, "two")
    listing = app_list.list_workspace_apps(ctx, admin, apps.list_apps(ctx, admin)[0]
                                           .workspace_id)
    assert listing.apps == apps.list_apps(ctx, admin)


def test_app_choices(ctx, admin) -> None:
    deploy(ctx, admin, "zeta", "https://github.com/b-org/x")
    deploy(ctx, admin, "alpha", "https://github.com/a-org/x")
    assert [(c.subdomain, c.workspace) for c in app_list.app_choices(ctx, admin)] == \
        [("alpha", "a-org"), ("zeta", "b-org")]
    outsider = auth.create_user(ctx, "out", "out-password")
    assert app_list.app_choices(ctx, outsider) == []


# Accounts --------------------------------------------------------------------------------
def test_create_account_with_a_generated_password(ctx, admin) -> None:
    user, password = users.create_account(ctx, admin, "ivy", email="Ivy@Example.com")
    assert len(password) >= 16 and user.email == "ivy@example.com"
    assert auth.authenticate(ctx, "ivy", password) is not None
    with pytest.raises(ValidationError, match="already uses"):
        users.create_account(ctx, admin, "ivy2", email="ivy@example.com")
    with pytest.raises(ValidationError, match="taken"):
        users.create_account(ctx, admin, "ivy")
    with pytest.raises(PermissionDenied):
        users.create_account(ctx, user, "jack")


def test_reset_account_password(ctx, admin) -> None:
    users.create_account(ctx, admin, "kim", password="first-password")
    new = users.reset_account_password(ctx, admin, "kim")
    assert auth.authenticate(ctx, "kim", new) is not None
    with pytest.raises(ValidationError, match="Account page"):
        users.reset_account_password(ctx, admin, "admin")
