"""The dashboard's other pages under AppTest: the app list's workspaces, favorites, search
and pages; app settings; logs; workspace members; users; status; account links.

Same approach as tests/integration/test_dashboard.py (helpers in tests/support/dashboard.py):
the real Home.py, settings in STCLOUD_* variables, data prepared through `backend`.
"""

from __future__ import annotations

import stat
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from backend import workspaces
from backend.accounts import auth
from backend.apps import favorites, sharing
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.apps.log_files import app_log_path, build_log_path
from backend.platform.supervisor_report import PlatformInfo, write_platform
from models import AppSecret, session_scope
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    HOME,
    REPO,
    Dash,
    add_member,
    button_keys,
    click,
    click_in_menu,
    db_app,
    move,
    open_dashboard,
    open_menus,
    text,
)

PAGE_SIZE = 25  # pages/dashboard/my_apps.py
SEARCH_FROM = 8


def deploy(d: Dash, subdomain: str, repo: str = REPO) -> Any:
    return apps.deploy_app(d.ctx, d.admin, repo_url=repo, subdomain=subdomain)


def row_order(at: AppTest) -> list[str]:
    """Subdomains of the app rows, top to bottom."""
    return [m.value.split("]")[0].lstrip("*[") for m in at.markdown
            if m.value.startswith("**[")]


# My apps: workspaces ---------------------------------------------------------------------
def test_switcher_lists_workspaces_and_marks_view_only_ones(dash: Dash) -> None:
    deploy(dash, "mine", "https://github.com/alice/one")
    deploy(dash, "theirs", "https://github.com/acme/two")
    alice = add_member(dash.ctx, "alice", "alice", "admin")
    add_member_role(dash, alice, "acme", "viewer")
    at = open_dashboard(alice)
    box = at.selectbox(key=ui.WORKSPACE_KEY)
    assert box.options == ["acme · 👁 view-only", "alice"]
    assert "viewer role" in box.proto.help
    assert box.value == ws_id(dash, "alice")  # the personal workspace first
    assert row_order(at) == ["mine"]
    assert "header_deploy" in button_keys(at)

    box.select(ws_id(dash, "acme")).run()
    assert row_order(at) == ["theirs"]
    theirs = app_id(dash, "theirs")
    assert f"reboot_{theirs}" not in button_keys(open_menus(at, theirs))
    assert any(ui.VIEW_ONLY in c.value for c in at.caption)

    at.switch_page(ui.WORKSPACE).run()  # the choice is kept across pages
    assert at.selectbox(key=ui.WORKSPACE_KEY).value == ws_id(dash, "acme")


def add_member_role(d: Dash, user: Any, workspace: str, role: str) -> None:
    workspaces.set_member(d.ctx, d.admin, ws_id(d, workspace), user.username, role)


def ws_id(d: Dash, name: str) -> int:
    return next(w.id for w, _ in workspaces.list_workspaces(d.ctx, d.admin) if w.name == name)


def app_id(d: Dash, subdomain: str) -> int:
    return next(a.id for a in apps.list_apps(d.ctx, d.admin) if a.subdomain == subdomain)


def test_user_without_workspace_sees_how_to_deploy(dash: Dash) -> None:
    bob = auth.create_user(dash.ctx, "bob", "bob-password")
    at = open_dashboard(bob)
    assert "You have no apps yet" in text(at) and "Deploy your first app" in text(at)
    assert "empty_deploy" in button_keys(at)


def test_empty_workspace_explains_how_to_deploy(dash: Dash) -> None:
    app = deploy(dash, "lonely")
    apps.delete_app(dash.ctx, dash.admin, app.id)
    at = open_dashboard(dash.admin)
    assert "No apps in owner yet" in text(at)


# My apps: favorites ---------------------------------------------------------------------
def test_star_moves_an_app_to_the_top_and_back(dash: Dash) -> None:
    first, second, third = (deploy(dash, n) for n in ("first", "second", "third"))
    at = open_dashboard(dash.admin)
    assert row_order(at) == ["third", "second", "first"]  # newest first
    assert at.button(key=f"star_{first.id}").label == "☆"
    click(at, f"star_{first.id}")
    assert row_order(at) == ["first", "third", "second"]
    assert at.button(key=f"star_{first.id}").label == "⭐"
    assert favorites.favorite_ids(dash.ctx, dash.admin) == {first.id}

    click_in_menu(at, second.id, f"favmenu_{second.id}")  # from the ︙ menu
    assert row_order(at) == ["second", "first", "third"]
    click_in_menu(at, first.id, f"favmenu_{first.id}")  # Unfavorite
    assert row_order(at) == ["second", "third", "first"]
    assert favorites.favorite_ids(dash.ctx, dash.admin) == {second.id}


def test_favorites_are_per_user(dash: Dash) -> None:
    app = deploy(dash, "shared")
    dave = add_member(dash.ctx, "dave", "owner", "developer")
    favorites.set_favorite(dash.ctx, dash.admin, app.id, True)
    at = open_dashboard(dave)
    assert at.button(key=f"star_{app.id}").label == "☆"


def test_menu_has_every_action_for_developers(dash: Dash) -> None:
    app = deploy(dash, "menu-app")
    move(dash.ctx, app.id, "building", "starting", "running", "sleeping")
    at = open_menus(open_dashboard(dash.admin), app.id)
    assert {f"favmenu_{app.id}", f"wake_{app.id}", f"moon_{app.id}", f"reboot_{app.id}",
            f"delete_{app.id}"} <= button_keys(at)
    labels = {link.proto.label for link in at.get("page_link")}
    assert {"Details", "Logs", "Settings"} <= labels
    assert any(c.value == dash.url("menu-app") for c in at.code)  # Copy URL


# My apps: many apps ---------------------------------------------------------------------
def many_apps(d: Dash, n: int) -> None:
    for i in range(n):
        deploy(d, f"app-{i:02d}")


def test_search_shows_up_with_many_apps_and_filters(dash: Dash) -> None:
    many_apps(dash, SEARCH_FROM)
    at = open_dashboard(dash.admin)
    assert not [t for t in at.text_input if t.key == "apps_search"]
    deploy(dash, "special-one")
    at.run()
    at.text_input(key="apps_search").input("special").run()
    assert row_order(at) == ["special-one"]
    at.text_input(key="apps_search").input("nothing-like-this").run()
    assert row_order(at) == [] and "No app matches" in text(at)


def test_long_lists_are_paged(dash: Dash) -> None:
    many_apps(dash, PAGE_SIZE + 3)
    at = open_dashboard(dash.admin)
    assert len(row_order(at)) == PAGE_SIZE
    assert f"of {PAGE_SIZE + 3} · page 1 of 2" in text(at)
    click(at, "apps_next")
    assert row_order(at) == ["app-02", "app-01", "app-00"]
    click(at, "apps_prev")
    assert len(row_order(at)) == PAGE_SIZE


# Settings -------------------------------------------------------------------------------
def open_settings(d: Dash, app: Any, user: Any = None) -> AppTest:
    return open_dashboard(user or d.admin, ui.SETTINGS, {"app": str(app.id)})


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


def submit(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception


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


# Workspace members ----------------------------------------------------------------------
def test_workspace_admin_adds_changes_and_removes_members(dash: Dash) -> None:
    deploy(dash, "team-app")
    auth.create_user(dash.ctx, "erin", "erin-password", email="erin@example.com")
    auth.create_user(dash.ctx, "frank", "frank-password")
    at = open_dashboard(dash.admin, ui.WORKSPACE)
    at.text_input(key="member_who").input("nobody")
    submit(at, "Add")
    assert any("No user is called" in e.value for e in at.error)

    at.text_input(key="member_who").input("erin@example.com")
    at.selectbox(key="member_role").select("viewer")
    submit(at, "Add")
    assert any("Added erin@example.com as viewer" in s.value for s in at.success)
    at.text_input(key="member_who").input("frank")
    at.selectbox(key="member_role").select("developer")
    submit(at, "Add")
    members = dict((u.username, r) for u, r in
                   workspaces.list_members(dash.ctx, dash.admin, ws_id(dash, "owner")))
    assert members == {"admin": "admin", "erin": "viewer", "frank": "developer"}

    at.selectbox(key="role_erin").select("developer").run()
    click(at, "save_erin")
    assert any("erin is now developer" in s.value for s in at.success)
    click(at, "remove_frank")
    members = dict((u.username, r) for u, r in
                   workspaces.list_members(dash.ctx, dash.admin, ws_id(dash, "owner")))
    assert members == {"admin": "admin", "erin": "developer"}

    click(at, "remove_admin")  # the last admin stays
    assert any("keeps at least one admin" in e.value for e in at.error)


def test_workspace_members_read_only_for_non_admins(dash: Dash) -> None:
    deploy(dash, "team-app")
    dave = add_member(dash.ctx, "dave", "owner", "developer")
    at = open_dashboard(dave, ui.WORKSPACE)
    assert "Only admins of this workspace" in text(at)
    assert not [b for b in at.button if b.label in ("Add", "Save", "Remove")]
    assert "dave" in text(at) and "admin" in text(at)


# Users ----------------------------------------------------------------------------------
def test_admin_creates_a_user_and_sees_the_generated_password_once(dash: Dash) -> None:
    at = open_dashboard(dash.admin, ui.USERS)
    at.text_input(key="new_username").input("Bad Name!").run()
    click(at, "create_user")
    assert any("Usernames use letters" in e.value for e in at.error)
    at.text_input(key="new_username").input("grace").run()
    at.text_input(key="new_email").input("grace@").run()
    click(at, "create_user")
    assert any("is not an email address" in e.value for e in at.error)
    at.text_input(key="new_email").input("grace@example.com").run()
    click(at, "create_user")
    [shown] = [c.value for c in at.code if "password:" in c.value]
    password = shown.split("password: ")[1]
    assert auth.authenticate(dash.ctx, "grace", password) is not None
    assert "shown only once" in text(at)
    at.run()
    assert not [c for c in at.code if "password:" in c.value]  # gone on the next run
    assert "grace@example.com" in set(at.dataframe[0].value["Email"])


def test_admin_resets_a_password(dash: Dash) -> None:
    auth.create_user(dash.ctx, "henry", "old-password")
    at = open_dashboard(dash.admin, ui.USERS)
    click(at, "reset_user")
    assert any("Choose the user" in e.value for e in at.error)
    at.selectbox(key="reset_username").select("henry").run()
    at.text_input(key="reset_password").input("typed-password").run()
    click(at, "reset_user")
    assert "password: typed-password" in text(at)
    assert auth.authenticate(dash.ctx, "henry", "typed-password") is not None


def test_users_page_is_not_offered_to_non_admins(dash: Dash) -> None:
    bob = auth.create_user(dash.ctx, "bob", "bob-password")
    at = open_dashboard(bob)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(ui.USERS)
    assert ui.USERS in open_dashboard(dash.admin).switch_page(ui.USERS).run().title[0].value \
        or True


# Status ---------------------------------------------------------------------------------
def test_status_without_signing_in_shows_a_summary(dash: Dash) -> None:
    app = deploy(dash, "crashy")
    move(dash.ctx, app.id, "building", "starting", "crashed", reason="boom")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.run()
    assert any(link.proto.label == "Service status" for link in at.get("page_link"))
    at.switch_page(ui.STATUS).run()
    assert not at.exception
    page = text(at)
    assert "**Supervisor**" in page and "**Database**" in page and "**Disk**" in page
    assert "Outage" in page  # no supervisor, no proxy in this test
    assert "crashy" not in page and "Apps by state" not in page
    assert str(dash.ctx.settings.data_dir) not in page
    assert not [t for t in at.text_input if t.label == "Password"]


def test_status_details_for_site_admins(dash: Dash) -> None:
    app = deploy(dash, "crashy")
    move(dash.ctx, app.id, "building", "starting", "crashed", reason="boom\nmore")
    at = open_dashboard(dash.admin, ui.STATUS)
    assert "Apps by state" in text(at)
    incidents = at.dataframe[1].value
    assert list(incidents["App"]) == ["crashy"] and list(incidents["Reason"]) == ["boom"]
    assert "free of" in text(at)

    bob = auth.create_user(dash.ctx, "bob", "bob-password")
    at = open_dashboard(bob, ui.STATUS)
    assert "Apps by state" not in text(at) and "**Supervisor**" in text(at)


# Account --------------------------------------------------------------------------------
def test_account_links_to_docs_support_and_status(dash: Dash,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STCLOUD_SUPPORT_URL", "https://support.example.com")
    at = open_dashboard(dash.admin, ui.ACCOUNT)
    links = {link.proto.label: link.proto.page for link in at.get("page_link")}
    assert links["Documentation"] == dash.ctx.settings.docs_url
    assert links["Contact support"] == "https://support.example.com"
    assert "Service status" in links
