"""The dashboard's workspace members, users and status pages under AppTest, on the real
Home.py (tests/support/dashboard.py): who may add, change and remove members, create users
and reset passwords, and what the status page shows to whom.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from backend import workspaces
from backend.accounts import auth
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    HOME,
    Dash,
    add_member,
    click,
    deploy,
    move,
    open_dashboard,
    submit,
    text,
    ws_id,
)


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
