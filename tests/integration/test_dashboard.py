"""The dashboard (Home.py and pages/dashboard/) under Streamlit's AppTest.

Every test runs the real entrypoint, Home.py, as `streamlit run` would: AppTest follows
`st.navigation`, and `switch_page()` opens the other pages through Home.py (so sign-in and
the sidebar run too). The dashboard reads its settings from STCLOUD_* variables, as under
the supervisor, so each test points them at its own data dir and prepares users and apps
through `backend`. Signing in with the form is tested on its own; other tests start signed
in by setting the session_state keys streamlit-authenticator's `login()` sets.

What the supervisor would do (move an app through its states, write logs) is done here
through `backend.apps.state` and the log paths of `backend.apps.log_files`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from backend.accounts import auth, users
from backend.apps import favorites
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.apps import state as appstate
from backend.apps.log_files import build_log_path
from backend.context import Context, open_context
from models import App, Membership, Workspace, session_scope
from pages.dashboard import _ui as ui

ROOT = Path(__file__).resolve().parents[2]
HOME = str(ROOT / "Home.py")
REPO = "https://github.com/owner/hello"


@dataclass
class Dash:
    ctx: Context
    admin: Any
    admin_password: str

    def url(self, subdomain: str) -> str:
        return f"http://{subdomain}.cloud.test:8080"


@pytest.fixture(name="dash")
def dash_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Dash:
    """A data dir and settings in the environment, with the first admin created."""
    for name in list(os.environ):
        if name.startswith("STCLOUD_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("STCLOUD_DATA_DIR", str(tmp_path / "data"))
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STCLOUD_DOMAIN", "cloud.test")
    monkeypatch.setenv("STCLOUD_PORT", "8080")
    monkeypatch.chdir(ROOT)
    ctx = open_context()
    created = auth.ensure_first_admin(ctx)
    assert created is not None
    username, password = created
    yield Dash(ctx=ctx, admin=auth.get_user(ctx, username), admin_password=password)
    st.cache_resource.clear()


# Helpers ---------------------------------------------------------------------------------
def open_dashboard(user: Any = None, page: str | None = None,
                   query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=30)
    if user is not None:
        at.session_state["authentication_status"] = True
        at.session_state["username"] = user.username
    at.run()
    assert not at.exception, at.exception
    if page:
        if query:
            at.query_params.update(query)
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def nodes(at: AppTest) -> list[Any]:
    """Every element and block of the main area, in page order."""
    out: list[Any] = []

    def walk(node: Any) -> None:
        for child in getattr(node, "children", {}).values():
            out.append(child)
            walk(child)
    walk(at.main)
    return out


def text(at: AppTest) -> str:
    """The visible text of the page (main area and sidebar), one element a line."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success", "code", "toast"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def button_keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button if b.key}


def move(ctx: Context, app_id: int, *states: str, reason: str = "") -> None:
    """Walk an app through states as the supervisor would; the last gets `reason`."""
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        for state in states:
            appstate.transition(s, app, state, reason if state == states[-1] else "")


def db_app(ctx: Context, app_id: int) -> App:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        assert app is not None
        return app


def add_member(ctx: Context, username: str, workspace: str, role: str) -> Any:
    """backend has no membership service yet: write the row the way backend reads it."""
    user = auth.create_user(ctx, username, f"{username}-password")
    with session_scope(ctx.engine) as s:
        ws = s.exec(select(Workspace).where(Workspace.name == workspace)).one()
        s.add(Membership(user_id=user.id, workspace_id=ws.id, role=role))
    return user


def open_menus(at: AppTest, *app_ids: int) -> AppTest:
    """Open apps' "︙" menus (their content runs only while open), as a click would."""
    for app_id in app_ids:
        at.session_state[f"menu_{app_id}"] = True
    at.run()
    assert not at.exception, at.exception
    return at


def click_in_menu(at: AppTest, app_id: int, key: str) -> AppTest:
    """Open the app's menu and click its button `key` (which closes the menu)."""
    open_menus(at, app_id)
    click(at, key)
    assert at.session_state[f"menu_{app_id}"] is False
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def local_repo(tmp_path: Path, files: dict[str, str] | None = None, branch: str = "main",
               name: str = "hello") -> str:
    """A bare git repository on disk (what deploys read), with one commit of `files`."""
    from tests.conftest import GitRepo
    repo = GitRepo(tmp_path / "repos" / name, branch=branch)
    repo.commit(files or {"streamlit_app.py": "import streamlit as st\nst.write('hi')\n"})
    return repo.url


def sign_in_form(at: AppTest, username: str, password: str) -> AppTest:
    fields = {t.label: t for t in at.text_input}  # the form's inputs have no keys
    fields["Username"].input(username)
    fields["Password"].input(password)
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception, at.exception
    return at


# Sign-in ---------------------------------------------------------------------------------
def test_signed_out_sees_only_the_sign_in_form(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="secret-app")
    at = open_dashboard()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert ui.PRODUCT in at.title[0].value
    page = text(at)
    assert "secret-app" not in page
    assert "My apps" not in page
    assert "sidebar_sign_out" not in button_keys(at)


def test_wrong_password_shows_an_error(dash: Dash) -> None:
    at = sign_in_form(open_dashboard(), "admin", "not-the-password")
    assert any("Wrong username or password" in e.value for e in at.error)
    assert at.session_state["authentication_status"] is False
    assert "My apps" not in text(at)


def test_sign_in_shows_the_empty_state_with_a_way_to_deploy(dash: Dash) -> None:
    at = sign_in_form(open_dashboard(), "admin", dash.admin_password)
    assert at.session_state["authentication_status"] is True
    assert [t.value for t in at.title] == ["My apps"]  # the sign-in form is gone
    assert "You have no apps yet" in text(at)
    assert any("@admin" in m.value for m in at.sidebar.markdown)
    at.button(key="empty_deploy").click().run()
    assert [t.value for t in at.title] == ["Deploy an app"]


def test_sign_out_returns_to_the_sign_in_form(dash: Dash) -> None:
    at = open_dashboard(dash.admin)
    at.button(key="sidebar_sign_out").click().run()
    assert at.session_state["authentication_status"] is None
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert "You are signed out." in text(at)


# My apps ---------------------------------------------------------------------------------
def test_list_shows_each_app_with_its_status(dash: Dash) -> None:
    ctx, admin = dash.ctx, dash.admin
    queued = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="queued-app")
    running = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="running-app")
    crashed = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="crashed-app",
                              branch="dev", main_file="app/main.py")
    move(ctx, running.id, "building", "starting", "running")
    move(ctx, crashed.id, "building", "starting", "crashed", reason="Exited with code 3")
    at = open_dashboard(admin)
    page = text(at)
    for app in (queued, running, crashed):
        assert f"**[{app.subdomain}]({dash.url(app.subdomain)})**" in page
    assert ":orange-badge[🍳 In the oven · queued]" in page
    assert ":green-badge[🟢 Running]" in page
    assert ":red-badge[🔴 Crashed]" in page
    assert "Exited with code 3" in page
    assert "dev · app/main.py" in page
    assert "Not deployed yet" in page
    assert "by you" in page
    assert at.selectbox(key=ui.WORKSPACE_KEY).value is not None
    assert not {f"reboot_{queued.id}", f"delete_{crashed.id}"} & button_keys(at)
    open_menus(at, queued.id, crashed.id)  # menu content runs only while it is open
    assert {f"reboot_{queued.id}", f"delete_{crashed.id}"} <= button_keys(at)
    assert f"reboot_{running.id}" not in button_keys(at)


def test_list_shows_owner_and_last_deploy_time_with_the_exact_time_on_hover(
        dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="by-dave")
    dave = add_member(dash.ctx, "dave", "owner", "developer")
    with session_scope(dash.ctx.engine) as s:
        row = s.get(App, app.id)
        row.last_deployed_at = datetime.now(UTC) - timedelta(minutes=3)
        s.add(row)
    at = open_dashboard(dave)
    [deployed] = [c.value for c in at.caption if "Deployed " in c.value]
    year = datetime.now(UTC).year
    assert deployed.startswith(f'<span title="{year}-') and \
        deployed.endswith('">Deployed 3 minutes ago</span>')
    assert "👥 by admin" in text(at)


def test_list_refreshes_itself_quickly_while_an_app_is_in_the_oven(
        dash: Dash, monkeypatch: pytest.MonkeyPatch) -> None:
    intervals: list[Any] = []
    real_fragment = st.fragment

    def spy(func: Any = None, *, run_every: Any = None, **kw: Any) -> Any:
        intervals.append(run_every)
        return real_fragment(func, run_every=run_every, **kw)
    monkeypatch.setattr(st, "fragment", spy)

    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO)
    at = open_dashboard(dash.admin)
    assert intervals[-1] == ui.REFRESH_SECONDS
    move(dash.ctx, app.id, "building", "starting", "running")
    at.run()
    assert intervals[-1] == ui.IDLE_REFRESH_SECONDS
    assert ":green-badge[🟢 Running]" in text(at)


def test_non_member_does_not_see_the_workspace_apps(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="owners-app")
    bob = auth.create_user(dash.ctx, "bob", "bob-password")
    at = open_dashboard(bob)
    assert "owners-app" not in text(at)
    assert "You have no apps yet" in text(at)


def test_viewer_sees_apps_but_not_reboot_or_delete(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="shared-app")
    carol = add_member(dash.ctx, "carol", "owner", "viewer")
    at = open_dashboard(carol)
    assert "shared-app" in text(at)
    assert ui.VIEW_ONLY in text(at)
    view_only = [c for c in at.caption if ui.VIEW_ONLY in c.value]
    assert view_only and all("viewer role" in c.proto.help for c in view_only)
    keys = button_keys(open_menus(at, app.id))
    assert f"reboot_{app.id}" not in keys and f"delete_{app.id}" not in keys
    assert {f"star_{app.id}", f"favmenu_{app.id}"} <= keys  # favorites work for viewers

    at = open_dashboard(carol, ui.APP, {"app": str(app.id)})
    assert "shared-app" in text(at)
    assert not {"detail_reboot", "detail_delete"} & button_keys(at)
    assert "Logs and settings are shown to developers" in text(at)


def test_developer_member_sees_reboot_and_delete(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO)
    dave = add_member(dash.ctx, "dave", "owner", "developer")
    keys = button_keys(open_menus(open_dashboard(dave), app.id))
    assert {f"reboot_{app.id}", f"delete_{app.id}"} <= keys


def test_moon_wakes_a_sleeping_app_even_for_a_viewer(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="sleepy")
    move(dash.ctx, app.id, "building", "starting", "running", "sleeping")
    carol = add_member(dash.ctx, "carol", "owner", "viewer")
    at = open_dashboard(carol)
    assert ":blue-badge[🌙 Sleeping]" in text(at)
    at.button(key=f"moon_{app.id}").click().run()
    assert db_app(dash.ctx, app.id).state == "starting"
    assert ":orange-badge[🍳 In the oven · starting]" in text(at)
    assert any("Waking sleepy up" in t.value for t in at.toast)


def test_reboot_button_asks_the_backend_to_reboot(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="to-reboot")
    move(dash.ctx, app.id, "building", "starting", "running")
    at = open_dashboard(dash.admin)
    click_in_menu(at, app.id, f"reboot_{app.id}")
    assert "interrupts everyone using it" in text(at) and "oven" in text(at)
    assert db_app(dash.ctx, app.id).restart_generation == 0  # not before confirming
    click(at, "cancel_reboot")
    assert db_app(dash.ctx, app.id).restart_generation == 0
    assert "confirm_reboot" not in button_keys(at)
    click_in_menu(at, app.id, f"reboot_{app.id}")
    click(at, "confirm_reboot")
    assert db_app(dash.ctx, app.id).restart_generation == 1
    reasons = [e.reason for e in apps.app_events(dash.ctx, dash.admin, app.id)]
    assert "Reboot requested by admin" in reasons
    assert any("Rebooting to-reboot" in t.value for t in at.toast)


def test_delete_asks_for_confirmation_then_deletes(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="doomed")
    at = open_dashboard(dash.admin)
    click_in_menu(at, app.id, f"delete_{app.id}")
    page = text(at)
    assert "**doomed**" in page and "Deleting stops the app" in page
    assert db_app(dash.ctx, app.id).desired_state == "running"  # not before confirming

    at.button(key="cancel_delete").click().run()
    assert db_app(dash.ctx, app.id).desired_state == "running"
    assert "confirm_delete" not in button_keys(at)

    click_in_menu(at, app.id, f"delete_{app.id}")
    at.button(key="confirm_delete").click().run()
    row = db_app(dash.ctx, app.id)
    assert (row.desired_state, row.state) == ("deleted", "deleting")
    assert "**[doomed]" not in text(at)


# Deploy ----------------------------------------------------------------------------------
def fill_deploy(at: AppTest, **fields: str) -> AppTest:
    for name, value in fields.items():
        if name == "secrets":
            at.text_area(key="deploy_secrets").input(value)
        else:
            at.text_input(key=f"deploy_{name}").input(value)
    at.button(key="deploy_submit").click().run()
    assert not at.exception, at.exception
    return at


def error_under(at: AppTest, label: str) -> str:
    """The error shown right after the widget labelled `label` (and the only one)."""
    order = nodes(at)
    field = next(i for i, n in enumerate(order) if getattr(n, "label", None) == label)
    assert type(order[field + 1]).__name__ == "Error", order[field + 1]
    assert len(at.error) == 1, [e.value for e in at.error]
    return order[field + 1].value


@pytest.mark.parametrize(("fields", "label", "message"), [
    ({"repo": REPO, "subdomain": "Bad_Name!"}, "App URL (custom subdomain)",
     "is not a valid subdomain"),
    ({"repo": "not-a-url"}, "Repository", "is not a git URL"),
    ({"repo": REPO, "main_file": "app.txt"}, "Main file path", "ending in .py"),
    ({"repo": REPO, "branch": "bad..branch"}, "Branch", "is not a valid branch name"),
    ({"repo": REPO, "secrets": "key = 'ok'\nbroken line"}, "Secrets",
     "Line 2, column 8"),
])
def test_deploy_form_shows_the_error_under_its_field(dash: Dash, fields: dict[str, str],
                                                     label: str, message: str) -> None:
    at = fill_deploy(open_dashboard(dash.admin, ui.DEPLOY), **fields)
    assert message in error_under(at, label)
    assert apps.list_apps(dash.ctx, dash.admin) == []


def test_deploy_checks_the_branch_and_main_file_before_anything_is_queued(
        dash: Dash, tmp_path: Path) -> None:
    repo = local_repo(tmp_path, {"app.py": "print()\n", "pages/other.py": ""})
    at = fill_deploy(open_dashboard(dash.admin, ui.DEPLOY), repo=repo, main_file="main.py")
    message = error_under(at, "Main file path")
    assert "no file 'main.py' on branch 'main'" in message and "app.py" in message
    at = fill_deploy(at, main_file="app.py", branch="nope")
    assert "branch 'nope' does not exist" in error_under(at, "Branch")
    at = fill_deploy(at, repo=str(tmp_path / "missing.git"), branch="main")
    assert "There is no git repository at" in error_under(at, "Repository")
    assert apps.list_apps(dash.ctx, dash.admin) == []
    at = fill_deploy(at, repo=repo)
    assert [a.main_file for a in apps.list_apps(dash.ctx, dash.admin)] == ["app.py"]


def test_deploy_says_as_you_type_whether_the_subdomain_is_free(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="taken")
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.text_input(key="deploy_subdomain").input("taken").run()
    assert "**taken** is taken" in text(at)
    at.text_input(key="deploy_subdomain").input("free-one").run()
    assert "✓ available" in text(at) and "free-one.cloud.test" in text(at)
    at = fill_deploy(at, repo=REPO, subdomain="taken")
    assert "is taken" in error_under(at, "App URL (custom subdomain)")


def test_deploy_suggests_a_free_subdomain_and_shows_the_url(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO)  # takes "hello"
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.text_input(key="deploy_repo").input(REPO).run()
    assert at.text_input(key="deploy_subdomain").value == "hello-2"
    assert "http\\://hello-2.cloud.test\\:8080" in text(at)


def test_valid_deploy_queues_the_app_with_python_and_secrets_and_follows_it(
        dash: Dash, tmp_path: Path) -> None:
    ctx = dash.ctx
    repo = local_repo(tmp_path, {"app/main.py": "import streamlit\n"}, branch="dev")
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.selectbox(key="deploy_python").select(ctx.settings.default_python)
    at = fill_deploy(at, repo=repo, branch="dev", main_file="app/main.py", subdomain="fresh",
                     secrets='token = "s3cret-value"\n')
    [app] = apps.list_apps(ctx, dash.admin)
    assert (app.subdomain, app.repo_url, app.branch, app.main_file, app.state) == \
        ("fresh", repo, "dev", "app/main.py", "queued")
    assert app_secrets.get_secrets(ctx, dash.admin, app.id) == 'token = "s3cret-value"\n'
    assert app_secrets.runtime_env_vars(ctx.settings, app.id) == {"token": "s3cret-value"}
    assert db_app(ctx, app.id).restart_generation == 0  # queued: no reboot needed
    assert "🍳 Your app is in the oven" in text(at)

    log = build_log_path(ctx.settings, app.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Cloning the repository\nInstalling streamlit\n")
    move(ctx, app.id, "building", reason="Building the environment")
    at.run()
    assert "Installing streamlit" in text(at)
    move(ctx, app.id, "starting", "running")
    at.run()
    assert [b.proto.url for b in at.get("link_button")] == [dash.url("fresh")]
    assert "Your app is live" in text(at)


def test_failed_deploy_shows_the_reason_and_the_log_tail(dash: Dash, tmp_path: Path) -> None:
    at = fill_deploy(open_dashboard(dash.admin, ui.DEPLOY), repo=local_repo(tmp_path))
    [app] = apps.list_apps(dash.ctx, dash.admin)
    log = build_log_path(dash.ctx.settings, app.id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Resolving\nerror: No matching distribution for pandas==9.9\n")
    move(dash.ctx, app.id, "building", "build_failed", reason="Installing packages failed")
    at.run()
    assert any("Build failed: Installing packages failed" in e.value for e in at.error)
    assert any("No matching distribution for pandas==9.9" in c.value for c in at.code)


def test_viewer_cannot_deploy_into_a_workspace(dash: Dash, tmp_path: Path) -> None:
    repo = local_repo(tmp_path)  # owner "owner" (…/repos/hello/owner/hello.git)
    apps.deploy_app(dash.ctx, dash.admin, repo_url=repo, subdomain="first")
    carol = add_member(dash.ctx, "carol", "owner", "viewer")
    at = fill_deploy(open_dashboard(carol, ui.DEPLOY), repo=repo, subdomain="second")
    assert any("need the developer role" in e.value for e in at.error)
    assert [a.subdomain for a in apps.list_apps(dash.ctx, dash.admin)] == ["first"]


# App page --------------------------------------------------------------------------------
def test_app_page_shows_status_events_and_links(dash: Dash) -> None:
    ctx = dash.ctx
    other = apps.deploy_app(ctx, dash.admin, repo_url=REPO, subdomain="other")
    app = apps.deploy_app(ctx, dash.admin, repo_url=REPO, subdomain="detailed")
    move(ctx, app.id, "building", "starting", "crashed", reason="Exited with code 1")

    at = open_dashboard(dash.admin, ui.APP, {"app": str(app.id)})
    assert at.selectbox(key=ui.APP_PICK_KEY).value == app.id
    page = text(at)
    assert ":red-badge[🔴 Crashed]" in page and "Exited with code 1" in page
    assert ui.md(dash.url("detailed")) in page
    events = at.dataframe[0].value
    assert "Deployed by admin" in set(events["Reason"])
    assert {"detail_reboot", "detail_delete", "detail_star"} <= button_keys(at)
    links = {link.proto.label for link in at.get("page_link")}
    assert {"Logs", "Settings"} <= links

    at.selectbox(key=ui.APP_PICK_KEY).select(other.id).run()
    assert at.query_params["app"] == str(other.id)
    assert at.subheader[0].value == "other"


def test_favorite_from_the_app_page(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="starred")
    at = open_dashboard(dash.admin, ui.APP, {"app": str(app.id)})
    click(at, "detail_star")
    assert favorites.favorite_ids(dash.ctx, dash.admin) == {app.id}
    assert at.subheader[0].value == "⭐ starred"


def test_delete_from_the_app_page_goes_back_to_the_list(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="bye")
    at = open_dashboard(dash.admin, ui.APP, {"app": str(app.id)})
    at.button(key="detail_delete").click().run()
    at.button(key="confirm_delete").click().run()
    assert db_app(dash.ctx, app.id).desired_state == "deleted"
    assert [t.value for t in at.title] == ["My apps"]


# Account ---------------------------------------------------------------------------------
def change_password(at: AppTest, current: str, new: str, repeat: str) -> AppTest:
    at.text_input(key="pw_current").input(current)
    at.text_input(key="pw_new").input(new)
    at.text_input(key="pw_repeat").input(repeat)
    next(b for b in at.button if b.label == "Change password").click().run()
    assert not at.exception, at.exception
    return at


def test_change_password(dash: Dash) -> None:
    bob = auth.create_user(dash.ctx, "bob", "old-password")
    at = open_dashboard(bob, ui.ACCOUNT)
    change_password(at, "wrong-password", "new-password", "new-password")
    assert any("current password is not right" in e.value for e in at.error)
    change_password(at, "old-password", "new-password", "other-password")
    assert any("differ" in e.value for e in at.error)
    assert auth.authenticate(dash.ctx, "bob", "old-password") is not None

    change_password(at, "old-password", "new-password", "new-password")
    assert not at.error
    assert "Your password is changed" in text(at)
    assert auth.authenticate(dash.ctx, "bob", "new-password") is not None


def test_changing_your_password_signs_out_your_other_sessions(dash: Dash) -> None:
    """Two browsers of bob; a password change in one signs the other out on its next run
    (session epoch), while the one that changed it stays signed in."""
    bob = auth.create_user(dash.ctx, "bob", "old-password")
    here = open_dashboard(bob, ui.ACCOUNT)
    elsewhere = open_dashboard(bob)
    change_password(here, "old-password", "new-password", "new-password")
    assert "Your password is changed" in text(here)

    elsewhere.run()
    assert elsewhere.session_state["authentication_status"] is None
    assert [t.label for t in elsewhere.text_input] == ["Username", "Password"]
    assert "Your password was changed; sign in again." in text(elsewhere)

    here.run()  # the session that changed it stays signed in
    assert here.session_state["authentication_status"] is True
    assert any("@bob" in m.value for m in here.sidebar.markdown)
    assert here.session_state["_sign_in_cookie_pending"] is True  # a cookie after the epoch

    # Signing in again (new password) is a session from after the change.
    sign_in_form(elsewhere, "bob", "new-password")
    assert elsewhere.session_state["authentication_status"] is True
    elsewhere.run()
    assert any("@bob" in m.value for m in elsewhere.sidebar.markdown)


def test_an_admin_reset_signs_the_user_out(dash: Dash) -> None:
    bob = auth.create_user(dash.ctx, "bob", "old-password")
    at = open_dashboard(bob)
    users.reset_account_password(dash.ctx, dash.admin, "bob", "reset-password")
    at.run()
    assert at.session_state["authentication_status"] is None
    assert "Your password was changed; sign in again." in text(at)
    assert auth.session_is_current(auth.get_user(dash.ctx, "bob"), time.time())
    assert not auth.session_is_current(auth.get_user(dash.ctx, "bob"), time.time() - 60)


# Helpers of the pages --------------------------------------------------------------------
def test_relative_time() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert ui.relative_time(now - timedelta(seconds=3), now) == "just now"
    assert ui.relative_time(now - timedelta(seconds=42), now) == "42 seconds ago"
    assert ui.relative_time(now - timedelta(minutes=1, seconds=5), now) == "1 minute ago"
    assert ui.relative_time(now - timedelta(minutes=3), now) == "3 minutes ago"
    assert ui.relative_time(now - timedelta(hours=5), now) == "5 hours ago"
    assert ui.relative_time(now - timedelta(days=2), now) == "2 days ago"
    assert ui.relative_time(now - timedelta(days=30), now) == "on 2026-10-26"
    naive = (now - timedelta(minutes=3)).replace(tzinfo=None)
    assert ui.relative_time(naive, now) == "3 minutes ago"


def test_markdown_escaping_keeps_names_literal() -> None:
    assert ui.md("my_app*v2") == "my\\_app\\*v2"
    assert ui.md("crashed-app/main.py") == "crashed-app/main.py"
    assert ui.md(":red[x] $y$") == "\\:red\\[x\\] \\$y\\$"
    assert ui.md("- item") == "\\- item"
    assert ui.md("12. x") == "12\\. x"


def test_sign_in_refreshes_github_roles_and_shows_a_failure(
        dash: Dash, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.errors import BackendError
    from backend.github import accounts as github
    calls: list[str] = []

    def refresh(ctx: Context, user: Any, **kw: Any) -> None:
        calls.append(user.username)
        raise BackendError("GitHub is rate limiting us until 10:00 UTC.")

    monkeypatch.setattr(github, "refresh_user", refresh)
    at = sign_in_form(open_dashboard(), "admin", dash.admin_password)
    assert calls == ["admin"]
    assert any("rate limiting us" in w.value for w in at.sidebar.warning)
    at.run()
    assert calls == ["admin"], "refreshed on sign-in only, not on every run"
