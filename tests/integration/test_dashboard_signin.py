"""The dashboard's sign-in form, signing out, and the account page (password changes that
sign other sessions out), under Streamlit's AppTest on the real Home.py
(tests/support/dashboard.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from backend.accounts import auth, users
from backend.apps import service as apps
from backend.context import Context
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    REPO,
    Dash,
    button_keys,
    open_dashboard,
    sign_in_form,
    text,
)


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
