"""The dashboard under Streamlit's AppTest: the real entrypoint, Home.py, run as `streamlit
run` would (AppTest follows `st.navigation`, and `switch_page()` opens the other pages
through Home.py, so sign-in and the sidebar run too), with helpers that read and click the
page as a person would. The `dash` fixture (tests/integration/conftest.py) points the
dashboard's STCLOUD_* settings at a fresh data dir with the first admin created.

What the supervisor would do (move an app through its states, write logs) is done here
through `backend.apps.state`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from backend import workspaces
from backend.accounts import auth
from backend.apps import service as apps
from backend.apps import state as appstate
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



def dashboard_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  database_url: str) -> Iterator[Dash]:
    """A data dir and settings in the environment, as the dashboard reads them under the
    supervisor, with the first admin created; Streamlit's caches are cleared afterwards
    (they outlive an AppTest run)."""
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
    st.cache_data.clear()
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



def deploy(d: Dash, subdomain: str, repo: str = REPO) -> Any:
    """Deploys `repo` as the admin under `subdomain` (through backend, not the form)."""
    return apps.deploy_app(d.ctx, d.admin, repo_url=repo, subdomain=subdomain)


def ws_id(d: Dash, name: str) -> int:
    """The id of the admin's workspace `name`."""
    return next(w.id for w, _ in workspaces.list_workspaces(d.ctx, d.admin) if w.name == name)


def open_settings(d: Dash, app: Any, user: Any = None) -> AppTest:
    """The app's settings page, as `user` (the admin by default)."""
    return open_dashboard(user or d.admin, ui.SETTINGS, {"app": str(app.id)})


def submit(at: AppTest, label: str) -> None:
    """Clicks the form button labelled `label` and runs the page."""
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception
