"""Every dashboard page a site admin can open renders in Chromium, with real data behind it,
against the real supervisor (process runtime): My apps with apps in different states (one
running, one asleep, one whose branch does not exist), App details with its state history
and memory chart, Analytics (the monthly and daily Altair charts), Notifications, Users,
Workspace, Account and the admin's Status page. Each page shows its content and no
Streamlit exception.

The memory samples, views and notices are written through the same backend functions the
supervisor uses (the sampler, the proxy's view flush, the incident notifier), with times
spread over past months, which a test run cannot wait for. With STCLOUD_SCREENSHOTS set,
each page is also saved for the docs (tests/browser/docs_shots.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from backend import workspaces
from backend.accounts import auth
from backend.analytics.store import record_views
from backend.apps import service as apps
from backend.platform import notifications
from models import App, session_scope
from models.usage import UsageSample
from tests.browser.docs_shots import docs_shot
from tests.browser.flow_support import (
    BUILD_TIMEOUT,
    Flow,
    button,
    expect,
    open_my_apps,
    sign_in_admin,
    wait_text,
)
from tests.support.supervisor_harness import wait_for_state, wait_until

MIB = 1 << 20


def no_exception(flow: Flow) -> None:
    assert flow.page.locator('[data-testid="stException"]').count() == 0, \
        flow.page.locator('[data-testid="stException"]').first.inner_text()


def open_page(flow: Flow, path: str, heading: str) -> None:
    flow.page.goto(flow.base + path)
    expect()(flow.page.get_by_role("heading", name=heading).first).to_be_visible()


def sleep_now(flow: Flow, app_id: int) -> None:
    """Nobody viewed the app for a month: the supervisor's hibernation pass (every second
    here) puts it to sleep. Set again on each poll, as a flushed view moves it forward."""
    def asleep() -> bool:
        with session_scope(flow.ctx.engine) as s:
            row = s.get(App, app_id)
            if row.state == "sleeping":
                return True
            row.last_viewed_at = row.last_deployed_at = datetime.now(UTC) - timedelta(days=30)
            s.add(row)
        return False
    wait_until(asleep, 60, "the app to go to sleep", flow.supervisor)


def test_my_apps_lists_each_state(flow: Flow) -> None:
    ctx, admin = flow.ctx, flow.admin
    broken = apps.deploy_app(ctx, admin, repo_url=flow.repo.url, branch="release",
                             subdomain="forecast")
    sleepy = apps.deploy_app(ctx, admin, repo_url=flow.repo.url, subdomain="weekly-report")
    main = apps.deploy_app(ctx, admin, repo_url=flow.repo.url, subdomain="sales-dashboard")
    flow.state["app_id"] = main.id  # the newest: listed first
    for user, role in (("dana", "developer"), ("vera", "viewer")):
        auth.create_user(ctx, user, f"{user}-password-1", name=user.title(),
                         email=f"{user}@example.com")
        workspaces.set_member(ctx, admin, main.workspace_id, user, role)
    sign_in_admin(flow)
    assert wait_for_state(ctx, broken.id, {"build_failed"}, timeout=60,
                          sup=flow.supervisor).state == "build_failed"
    for app_id in (main.id, sleepy.id):
        wait_for_state(ctx, app_id, {"running"}, timeout=BUILD_TIMEOUT, sup=flow.supervisor)
    sleep_now(flow, sleepy.id)
    open_my_apps(flow)
    for app_id, badge in ((main.id, "🟢 Running"), (sleepy.id, "🌙 Sleeping"),
                          (broken.id, "🔴 Build failed")):
        row = flow.page.locator(f'.st-key-app_{app_id}:not([data-stale="true"])')
        expect()(row.get_by_text(badge, exact=True).first).to_be_visible()
    expect()(button(flow, f"moon_{sleepy.id}")).to_be_visible()
    wait_text(flow, "branch 'release' does not exist")
    no_exception(flow)
    docs_shot(flow.page, "my-apps")


def test_app_details_with_history_and_memory(flow: Flow) -> None:
    app_id = flow.app_id()
    now = datetime.now(UTC)
    with session_scope(flow.ctx.engine) as s:  # the sampler's rows over the last day
        for i in range(144):
            memory = 160 + 60 * math.sin(i / 9) + i * 0.8
            s.add(UsageSample(app_id=app_id, at=now - timedelta(minutes=10 * (144 - i)),
                              memory_bytes=int(memory * MIB),
                              memory_limit_bytes=1024 * MIB))
    open_page(flow, f"/app?app={app_id}", "App details")
    wait_text(flow, "sales-dashboard")
    chart = flow.page.locator('[data-testid="stVegaLiteChart"]').first
    expect()(chart).to_be_visible()
    no_exception(flow)
    docs_shot(flow.page, "app-details")
    chart.scroll_into_view_if_needed()
    docs_shot(flow.page, "app-details-memory")


def seed_views(flow: Flow, app_id: int) -> None:
    """Five months of views, busier lately: anonymous visitors and two members."""
    now = datetime.now(UTC)
    events = []
    for day in range(150):
        for n in range(1 + (150 - day) // 30 + day % 3):
            events.append((app_id, f"v:docs-visitor-{(day * 5 + n) % 60}",
                           now - timedelta(days=day, minutes=n * 7 + 1)))
    for hours, username in ((2, "dana"), (5, "vera")):
        user = auth.get_user(flow.ctx, username)
        events.append((app_id, f"u:{user.id}", now - timedelta(hours=hours)))
    assert record_views(flow.ctx, events, dedupe=False) == len(events)


def test_analytics_charts(flow: Flow) -> None:
    app_id = flow.app_id()
    seed_views(flow, app_id)
    open_page(flow, "/analytics", "Analytics")
    chart = flow.page.locator('[data-testid="stVegaLiteChart"]').first
    expect()(chart).to_be_visible()
    expect()(chart.locator("canvas, svg").first).to_be_attached()
    no_exception(flow)
    docs_shot(flow.page, "analytics-workspace")
    open_page(flow, f"/analytics?app={app_id}", "Analytics")  # as from the app's menu
    flow.page.get_by_role("tab", name="App viewers").click()
    wait_text(flow, "Recent viewers")
    wait_text(flow, "Dana")  # a member, by name
    daily = flow.page.get_by_text("Daily views, last 30 days")
    expect()(daily).to_be_visible()
    no_exception(flow)
    docs_shot(flow.page, "analytics-app-viewers")
    daily.scroll_into_view_if_needed()
    expect()(flow.page.locator('[data-testid="stVegaLiteChart"]:visible').first).to_be_visible()
    docs_shot(flow.page, "analytics-daily-views")


def test_notifications(flow: Flow) -> None:
    app_id = flow.app_id()
    with session_scope(flow.ctx.engine) as s:  # what the supervisor's incident handling writes
        app = s.get(App, app_id)
        notified = notifications.notify(s, flow.settings, app, "over_limit", "docs-1",
                                        limit_mb="1024")
        notifications.notify(s, flow.settings, app, "sleep_warning", "docs-2",
                             idle_days="6", sleep_days="7", sleep_at="tomorrow")
    assert notified.in_dashboard >= 1
    open_page(flow, "/notifications", "Notifications")
    wait_text(flow, "Over its resource limits")
    wait_text(flow, "Going to sleep")
    no_exception(flow)
    docs_shot(flow.page, "notifications")


def test_admin_pages(flow: Flow) -> None:
    open_page(flow, "/users", "Users")
    wait_text(flow, "Create a user")
    wait_text(flow, "Accounts (3)")
    expect()(flow.page.get_by_test_id("stDataFrame").first).to_be_visible()
    expect()(flow.page.get_by_role("textbox", name="Username").first).to_be_visible()
    no_exception(flow)
    docs_shot(flow.page, "users")
    open_page(flow, "/workspace", "Workspace")
    wait_text(flow, "dana")
    no_exception(flow)
    docs_shot(flow.page, "workspace")
    open_page(flow, "/account", "Account")
    wait_text(flow, "Change password")
    no_exception(flow)
    docs_shot(flow.page, "account")
    # From the sidebar: a page load of /status is the public page until the sign-in
    # cookie is read, and the public page does not wait for it.
    flow.page.get_by_test_id("stSidebarNav").get_by_role("link", name="Status").click()
    expect()(flow.page.get_by_role("heading", name="Status").first).to_be_visible()
    wait_text(flow, "Apps by state")  # the admin's details
    no_exception(flow)
    flow.page.get_by_text("Apps by state").first.scroll_into_view_if_needed()
    docs_shot(flow.page, "status-admin")
