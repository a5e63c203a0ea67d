"""The dashboard (Home.py and pages/dashboard/) under Streamlit's AppTest: My apps (status,
owners, menus by role, reboot, delete), the app page, and the pages' formatting helpers.

Every test runs the real entrypoint, Home.py, as `streamlit run` would (helpers in
tests/support/dashboard.py). The dashboard reads its settings from STCLOUD_* variables, as
under the supervisor, so each test points them at its own data dir (the `dash` fixture) and
prepares users and apps through `backend`; tests start signed in by setting the
session_state keys streamlit-authenticator's `login()` sets. Signing in with the form and
the account page are in test_dashboard_signin.py, the deploy form in
test_dashboard_deploy.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import streamlit as st

from backend.accounts import auth
from backend.apps import favorites
from backend.apps import service as apps
from models import App, session_scope
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
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
