"""The dashboard's app settings (subdomain, sharing, secrets, Python version, memory limit,
a viewer's read-only view) and logs pages under AppTest, on the real Home.py
(tests/support/dashboard.py).
"""

from __future__ import annotations

import stat

from backend.apps import secrets as app_secrets
from backend.apps import sharing
from backend.apps.log_files import app_log_path, build_log_path
from backend.platform.supervisor_report import PlatformInfo, write_platform
from models import AppSecret, session_scope
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    Dash,
    add_member,
    button_keys,
    click,
    db_app,
    deploy,
    move,
    open_dashboard,
    open_settings,
    submit,
    text,
)


# Settings -------------------------------------------------------------------------------
def test_settings_change_the_subdomain(dash: Dash) -> None:
    app = deploy(dash, "old-name")
    deploy(dash, "taken-name")
    at = open_settings(dash, app)
    at.text_input(key="new_subdomain").input("taken-name").run()
    assert "taken-name is taken" in text(at)
    click(at, "save_subdomain")
    assert any("is taken" in e.value for e in at.error)
    at.text_input(key="new_subdomain").input("Bad Name").run()
    click(at, "save_subdomain")
    assert any("not a valid subdomain" in e.value for e in at.error)
    at.text_input(key="new_subdomain").input("new-name").run()
    assert "new-name.cloud.test" in text(at) and "available" in text(at)
    click(at, "save_subdomain")
    assert db_app(dash.ctx, app.id).subdomain == "new-name"
    assert any("now at http://new-name.cloud.test:8080" in s.value for s in at.success)
    assert not at.error


def test_settings_sharing_private_and_invited_viewers(dash: Dash) -> None:
    app = deploy(dash, "secretive")
    at = open_settings(dash, app)
    at.radio(key=f"visibility_{app.id}").set_value("private").run()
    assert db_app(dash.ctx, app.id).visibility == "private"
    assert any("only workspace members and invited viewers" in s.value for s in at.success)

    at.text_input(key="invite_email").input("not-an-email")
    submit(at, "Invite")
    assert any("is not an email address" in e.value for e in at.error)
    at.text_input(key="invite_email").input("Guest@Example.com")
    submit(at, "Invite")
    assert sharing.list_viewers(dash.ctx, dash.admin, app.id) == ["guest@example.com"]
    assert "guest@example.com" in text(at)
    click(at, "remove_viewer_guest@example.com")
    assert sharing.list_viewers(dash.ctx, dash.admin, app.id) == []

    at.radio(key=f"visibility_{app.id}").set_value("public").run()
    assert db_app(dash.ctx, app.id).visibility == "public"


def test_settings_secrets_validate_show_the_line_and_save_encrypted(dash: Dash) -> None:
    app = deploy(dash, "with-secrets")
    move(dash.ctx, app.id, "building", "starting", "running")
    at = open_settings(dash, app)
    key = f"secrets_text_{app.id}"
    at.text_area(key=key).input('api_key = "abc"\nbroken = \n').run()
    click(at, "save_secrets")
    assert any("Line 2" in e.value for e in at.error)
    assert any("   2 | broken = " in c.value for c in at.code)
    assert db_app(dash.ctx, app.id).restart_generation == 0

    at.text_area(key=key).input('API_KEY = "abc-123"\n[db]\npassword = "pw-456"\n').run()
    click(at, "save_secrets")
    assert not at.error
    assert any("Saved 2 keys; environment variables: API_KEY. The app is restarting" in
               s.value for s in at.success)
    assert db_app(dash.ctx, app.id).restart_generation == 1
    with session_scope(dash.ctx.engine) as s:
        stored = s.get(AppSecret, app.id).ciphertext
    assert "abc-123" not in stored and "pw-456" not in stored
    path = app_secrets.runtime_path(dash.ctx.settings, app.id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert 'password = "pw-456"' in path.read_text()

    fresh = open_settings(dash, app)  # the editor shows the saved text
    assert 'password = "pw-456"' in fresh.text_area(key=key).value


def test_settings_python_version_redeploys(dash: Dash) -> None:
    app = deploy(dash, "pyapp")
    move(dash.ctx, app.id, "building", "starting", "running")
    write_platform(dash.ctx, PlatformInfo(engine="process", python_versions=["3.11", "3.12"]))
    at = open_settings(dash, app)
    assert f"Python {dash.ctx.settings.default_python}" in text(at)
    assert "redeployed" in text(at)
    assert at.button(key="save_python").disabled  # nothing to change yet
    at.selectbox(key="new_python").select("3.12").run()
    assert at.button(key="save_python").label == "Redeploy with Python 3.12"
    click(at, "save_python")
    row = db_app(dash.ctx, app.id)
    assert (row.python_version, row.state) == ("3.12", "queued")
    assert any("Redeploying with the new Python version" in s.value for s in at.success)


def test_settings_memory_limit_for_site_admins_only(dash: Dash) -> None:
    app = deploy(dash, "memapp")
    at = open_settings(dash, app)
    at.number_input(key="new_memory").set_value(2048).run()
    click(at, "save_memory")
    assert db_app(dash.ctx, app.id).memory_limit_mb == 2048
    click(at, "reset_memory")
    assert db_app(dash.ctx, app.id).memory_limit_mb is None

    dave = add_member(dash.ctx, "dave", "owner", "admin")
    at = open_settings(dash, app, dave)
    assert "save_memory" not in button_keys(at)
    assert "Site admins can change it" in text(at)
    assert "save_subdomain" in button_keys(at) and "save_secrets" in button_keys(at)


def test_settings_for_a_viewer_show_values_without_forms(dash: Dash) -> None:
    app = deploy(dash, "look-only")
    carol = add_member(dash.ctx, "carol", "owner", "viewer")
    at = open_settings(dash, app, carol)
    assert not at.exception
    assert not {"save_subdomain", "save_python", "save_secrets", "save_memory"} & \
        button_keys(at)
    assert at.text_input(key="new_subdomain").disabled
    assert at.radio(key=f"visibility_{app.id}").disabled
    assert "Secrets are shown to developers" in text(at)


# Logs -----------------------------------------------------------------------------------
def test_logs_page_has_runtime_and_build_sections_filter_and_download(dash: Dash) -> None:
    app = deploy(dash, "chatty")
    build_log_path(dash.ctx.settings, app.id).parent.mkdir(parents=True, exist_ok=True)
    build_log_path(dash.ctx.settings, app.id).write_text("cloning\nbuilt fine\n")
    app_log_path(dash.ctx.settings, app.id).write_text(
        "".join(f"line {i}\n" for i in range(300)) + "Traceback: ZeroDivisionError\n")
    at = open_dashboard(dash.admin, ui.LOGS, {"app": str(app.id)})
    assert [t.label for t in at.tabs] == ["Runtime log", "Build log"]
    runtime, build = (c.value for c in at.code)
    assert runtime.endswith("Traceback: ZeroDivisionError")
    assert len(runtime.splitlines()) == 200 and runtime.startswith("line 101\n")  # last 200
    assert build == "cloning\nbuilt fine"
    assert len(at.get("download_button")) == 2

    at.text_input(key="log_filter").input("zerodivision").run()
    assert at.code[0].value == "Traceback: ZeroDivisionError"
    assert "1 line match" in text(at)
    at.text_input(key="log_filter").input("").run()
    at.selectbox(key="log_lines").select(1000).run()
    assert len(at.code[0].value.splitlines()) == 301


def test_logs_mask_secret_values(dash: Dash) -> None:
    app = deploy(dash, "leaky")
    app_secrets.set_secrets(dash.ctx, dash.admin, app.id, 'token = "very-secret"\n')
    app_log_path(dash.ctx.settings, app.id).parent.mkdir(parents=True, exist_ok=True)
    app_log_path(dash.ctx.settings, app.id).write_text("token is very-secret\n")
    at = open_dashboard(dash.admin, ui.LOGS, {"app": str(app.id)})
    assert at.code[0].value == "token is ****"


def test_logs_are_for_developers(dash: Dash) -> None:
    app = deploy(dash, "quiet")
    carol = add_member(dash.ctx, "carol", "owner", "viewer")
    at = open_dashboard(carol, ui.LOGS, {"app": str(app.id)})
    assert "Logs are shown to developers" in text(at)
    assert not at.code
