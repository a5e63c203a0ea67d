"""In Chromium, against a running supervisor: the site admin changes the SMTP server on the
Server settings page to a local SMTP server (aiosmtpd) this test started and the test email
arrives there, without a restart; a live `hibernate_after_days` puts an idle app to sleep;
and My apps' row ︙ menu puts an app to sleep now, stops and starts it, and moves it to
another workspace. With STCLOUD_SCREENSHOTS set it writes the docs' screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from backend import workspaces
from backend.apps import service as apps
from backend.platform.setting_overrides import live_sources
from models import App, Workspace, session_scope
from tests.browser.docs_shots import docs_shot
from tests.browser.flow_support import (
    BUILD_TIMEOUT,
    Flow,
    button,
    expect,
    open_menu,
    open_my_apps,
    sign_in_admin,
    wait_text,
)
from tests.support.lifecycle_support import MailSink
from tests.support.supervisor_harness import load_app, wait_for_state, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink().start()
    yield sink
    sink.stop()


def open_server_settings(flow: Flow) -> None:
    """Through the sidebar, as an admin would (a fresh load right after signing in can
    come before the sign-in cookie)."""
    flow.page.get_by_role("link", name="Server settings").first.click()
    expect()(flow.page.get_by_role("heading", name="Change live")).to_be_visible()


def save_and_wait(flow: Flow, said: str) -> None:
    flow.page.get_by_role("button", name="Save changes").click()
    wait_text(flow, said)


def test_admin_points_smtp_at_a_local_server_and_the_test_email_arrives(
        flow: Flow, mail_sink: MailSink) -> None:
    sign_in_admin(flow)
    page = flow.page
    open_server_settings(flow)
    page.get_by_label("SMTP port", exact=True).fill("70000")
    save_and_wait(flow, "smtp_port: 70000 is not a port; enter 1 to 65535")

    page.get_by_label("SMTP host", exact=True).fill("127.0.0.1")
    page.get_by_label("SMTP port", exact=True).fill(str(mail_sink.port))
    page.get_by_label("Sender address", exact=True).fill("cloud@example.com")
    page.get_by_role("combobox", name="SMTP TLS").click()
    page.get_by_role("option", name="none", exact=True).click()
    save_and_wait(flow, "Saved smtp_host, smtp_port, smtp_tls, smtp_from")
    assert live_sources(flow.ctx)["smtp_host"].startswith("changed live by admin at ")
    docs_shot(page, "server-settings-live")

    page.get_by_label("Send a test email to", exact=True).fill("ops@example.org")
    page.get_by_role("button", name="Send a test email").click()
    wait_text(flow, "Queued a test email to ops@example.org")
    wait_until(lambda: mail_sink.matching("Test email from"), 60,
               "the test email to reach the SMTP server set on the page", flow.supervisor)
    [msg] = mail_sink.matching("Test email from")
    assert msg["To"] == "ops@example.org" and msg["From"] == "cloud@example.com"


def test_my_apps_menu_sleeps_stops_starts_and_moves_an_app(flow: Flow) -> None:
    ctx, admin = flow.ctx, flow.admin
    view = apps.deploy_app(ctx, admin, repo_url=flow.repo.url, subdomain="menu-actions")
    flow.state["app_id"] = view.id
    wait_for_state(ctx, view.id, {"running"}, timeout=BUILD_TIMEOUT, sup=flow.supervisor)
    open_my_apps(flow)

    open_menu(flow, view.id)
    button(flow, f"menu_sleep_{view.id}").click()
    wait_for_state(ctx, view.id, {"sleeping"}, timeout=60, sup=flow.supervisor)

    open_menu(flow, view.id)
    button(flow, f"menu_stop_{view.id}").click()
    wait_until(lambda: getattr(load_app(ctx, view.id), "desired_state", "") == "stopped", 30,
               "the app to be stopped", flow.supervisor)
    open_menu(flow, view.id)
    button(flow, f"menu_start_{view.id}").click()
    wait_for_state(ctx, view.id, {"running"}, timeout=60, sup=flow.supervisor)

    with session_scope(ctx.engine) as s:  # made now: My apps stays on the app's workspace
        s.add(Workspace(name="archive"))
    archive = next(w for w, _ in workspaces.list_workspaces(ctx, admin) if w.name == "archive")
    open_menu(flow, view.id)
    docs_shot(flow.page, "my-apps-admin-menu")
    flow.page.get_by_role("combobox", name="Move to workspace (admin)").click()
    flow.page.get_by_role("option", name="archive", exact=True).click()
    button(flow, f"menu_move_{view.id}").click()
    wait_text(flow, "menu-actions is now in workspace archive")
    assert getattr(load_app(ctx, view.id), "workspace_id", None) == archive.id


def test_a_live_hibernate_after_days_puts_an_idle_app_to_sleep(flow: Flow) -> None:
    app_id = flow.app_id()
    wait_for_state(flow.ctx, app_id, {"running"}, timeout=60, sup=flow.supervisor)
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    with session_scope(flow.ctx.engine) as s:  # idle for two days: awake under the default 7
        row = s.get(App, app_id)
        assert row is not None
        row.last_viewed_at = row.last_deployed_at = two_days_ago
        s.add(row)
    page = flow.page
    open_server_settings(flow)
    page.get_by_label("Days without a view before the warning email", exact=True).fill("0")
    page.get_by_label("Days without a view before an app sleeps", exact=True).fill("1")
    save_and_wait(flow, "Saved hibernate_after_days, hibernate_warn_after_days")
    wait_for_state(flow.ctx, app_id, {"sleeping"}, timeout=60, sup=flow.supervisor)
