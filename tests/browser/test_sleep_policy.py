"""The sleep policy in Chromium against a real supervisor (process runtime): the admin sets
an idle period of two hours with "a visit wakes the app by itself" on the app's Settings →
Sleep tab; the app idle past it goes to sleep, and opening it shows the oven and then the
app with no button to press; with wake_on_visit turned off again, a visit shows the
sleeping page, whose button wakes it. The idle clock is moved back in the database
(hibernation checks every second); every wait polls a condition. The Settings tab is the
docs screenshot `settings-sleep`."""

from __future__ import annotations

from datetime import timedelta

from backend.apps import admin_actions, sleep_settings
from backend.apps import service as apps
from models import App, AppEvent, session_scope, utcnow
from tests.browser.docs_shots import docs_shot
from tests.browser.flow_support import (
    BUILD_TIMEOUT,
    UI_TIMEOUT,
    Flow,
    app_serves,
    click_key,
    expect,
    sign_in_admin,
    wait_text,
)
from tests.support.supervisor_harness import wait_for_state, wait_until


def idle_for(flow: Flow, app_id: int, age: timedelta) -> None:
    with session_scope(flow.ctx.engine) as s:
        app = s.get(App, app_id)
        app.last_viewed_at = app.last_deployed_at = utcnow() - age
        s.add(app)


def open_sleep_tab(flow: Flow, app_id: int) -> None:
    flow.page.goto(f"{flow.base}/settings?app={app_id}")
    expect()(flow.page.get_by_role("heading", name="App settings")).to_be_visible()
    flow.page.get_by_role("tab", name="Sleep").click()
    wait_text(flow, "When should the app go to sleep?")


def test_set_an_idle_policy_that_wakes_on_a_visit(flow: Flow) -> None:
    view = apps.deploy_app(flow.ctx, flow.admin, repo_url=flow.repo.url, subdomain="dozy")
    flow.state["app_id"] = view.id
    wait_for_state(flow.ctx, view.id, {"running"}, timeout=BUILD_TIMEOUT,
                   sup=flow.supervisor)
    flow.page.goto(flow.base + "/")  # the dashboard's first run can be slow under load
    expect()(flow.page.get_by_role("textbox", name="Username", exact=True)).to_be_visible(
        timeout=4 * UI_TIMEOUT)
    sign_in_admin(flow)
    wait_until(lambda: any(c["name"] == "stcloud_dashboard"  # before leaving the page
                           for c in flow.page.context.cookies()), 30, "the sign-in cookie")
    open_sleep_tab(flow, view.id)
    page = flow.page
    page.get_by_text("After a time without viewers").click()
    box = page.get_by_label("Without viewers for", exact=True)
    box.fill("1")
    box.press("Enter")
    page.get_by_role("combobox", name="Unit").click()
    page.get_by_role("option", name="minutes", exact=True).click()
    click_key(flow, "save_sleep")
    wait_text(flow, "The shortest idle period this server allows is 5 minutes")
    page.get_by_role("combobox", name="Unit").click()
    page.get_by_role("option", name="hours", exact=True).click()
    box.fill("2")
    box.press("Enter")
    page.get_by_text("A visit wakes the app by itself").click()
    click_key(flow, "save_sleep")
    wait_text(flow, "Saved: asleep after 2 hours without a viewer")
    docs_shot(page, "settings-sleep")
    saved = sleep_settings.get_policy(flow.ctx, flow.admin, view.id)
    assert (saved.policy, saved.wake_on_visit) == ("idle 2h", True)

    idle_for(flow, view.id, timedelta(hours=3))
    wait_for_state(flow.ctx, view.id, {"sleeping"}, timeout=60, sup=flow.supervisor)
    page.goto(flow.app_url("dozy"))
    wait_text(flow, "Flow app", timeout=120_000)  # the oven, then the app by itself
    with session_scope(flow.ctx.engine) as s:
        reasons = [e.reason for e in s.query(AppEvent).filter(AppEvent.app_id == view.id)]
    assert "Waking up (requested by admin)" in reasons


def test_without_wake_on_visit_the_sleeping_page_has_the_button(flow: Flow) -> None:
    app_id = flow.app_id()
    open_sleep_tab(flow, app_id)
    flow.page.get_by_text("A visit wakes the app by itself").click()  # off again
    click_key(flow, "save_sleep")
    wait_text(flow, "Saved: asleep after 2 hours without a viewer")
    assert not sleep_settings.wakes_on_visit(flow.ctx, app_id)
    admin_actions.sleep_now(flow.ctx, flow.admin, app_id)
    wait_for_state(flow.ctx, app_id, {"sleeping"}, timeout=60, sup=flow.supervisor)
    flow.page.goto(flow.app_url("dozy"))
    wake = flow.page.get_by_role("button", name="Yes, get this app back up!")
    expect()(wake).to_be_visible()
    assert flow.row().state == "sleeping"  # the visit alone did not wake it
    wake.click()
    wait_text(flow, "Flow app", timeout=120_000)
    wait_until(lambda: app_serves(flow, "dozy"), 30, "the woken app", flow.supervisor)
