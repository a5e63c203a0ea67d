"""The dashboard's My apps page under AppTest beyond the basics: the workspace switcher and
view-only workspaces, favorites, search and paging of many apps, the row menu; and the
account page's links. Settings and logs are in test_dashboard_settings.py, members, users
and status in test_dashboard_admin_pages.py.

Same approach as tests/integration/test_dashboard.py (helpers in tests/support/dashboard.py):
the real Home.py, settings in STCLOUD_* variables, data prepared through `backend`.
"""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from backend import workspaces
from backend.accounts import auth
from backend.apps import favorites
from backend.apps import service as apps
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    Dash,
    add_member,
    button_keys,
    click,
    click_in_menu,
    deploy,
    move,
    open_dashboard,
    open_menus,
    text,
    ws_id,
)

PAGE_SIZE = 25  # pages/dashboard/my_apps.py
SEARCH_FROM = 8


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


# Account --------------------------------------------------------------------------------
def test_account_links_to_docs_support_and_status(dash: Dash,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STCLOUD_SUPPORT_URL", "https://support.example.com")
    at = open_dashboard(dash.admin, ui.ACCOUNT)
    links = {link.proto.label: link.proto.page for link in at.get("page_link")}
    assert links["Documentation"] == dash.ctx.settings.docs_url
    assert links["Contact support"] == "https://support.example.com"
    assert "Service status" in links
