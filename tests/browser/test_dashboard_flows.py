"""The dashboard in a real browser (Playwright + Debian's Chromium) against a real supervisor
(tests/support/supervisor_harness.py) on the process runtime: what a person does, click by click.

One supervisor and one browser serve the whole module (the tests run in file order and
share the app they deploy): sign in → deploy from a local git repository and watch the
progress → favorite from the list and from the ︙ menu → change the subdomain and open the
new URL → make the app private and public again → add a secret and read it on the app's
page → reboot → the logs → sleep, then wake with the moon → delete → the status page
without signing in. Screenshots (1280×800) go to test-artifacts/, and with
STCLOUD_SCREENSHOTS set the docs' screenshots too (tests/browser/docs_shots.py). Waits poll
a condition (the database, a page text), never a fixed time. Setup and helpers:
tests/browser/flow_support.py.

Skipped when Chromium or Playwright is missing, except with CI=true, where that fails.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from backend.accounts import auth
from backend.apps import favorites, sharing
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from models import App, session_scope
from tests.browser.docs_shots import docs_shot
from tests.browser.flow_support import (
    ARTIFACTS,
    BUILD_TIMEOUT,
    PASSWORD,
    UI_TIMEOUT,
    Flow,
    app_serves,
    button,
    click_key,
    expect,
    http_status,
    open_menu,
    open_my_apps,
    wait_order,
    wait_text,
)
from tests.support.supervisor_harness import load_app, wait_for_state, wait_until

SECRET = "hello-from-secrets"


def instance_pid(flow: Flow) -> int | None:
    state = json.loads(flow.row().runtime_state or "{}")
    return state.get("instance", {}).get("pid")


# The flows, in order ---------------------------------------------------------------------
def test_sign_in_deploy_and_watch_the_progress(flow: Flow) -> None:
    page = flow.page
    page.goto(flow.base + "/")
    # The dashboard's first page: its Streamlit process renders it for the first time.
    expect()(page.get_by_role("textbox", name="Username", exact=True)).to_be_visible(
        timeout=2 * UI_TIMEOUT)
    docs_shot(page, "sign-in")
    page.get_by_role("textbox", name="Username", exact=True).fill("admin")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # .first: while Streamlit reruns, the previous run's heading can still be in the page
    expect()(page.get_by_role("heading", name="My apps").first).to_be_visible(
        timeout=UI_TIMEOUT)
    wait_text(flow, "You have no apps yet")
    flow.shot("01-empty")

    page.get_by_role("link", name="Deploy an app").first.click()
    expect()(page.get_by_role("heading", name="Deploy an app")).to_be_visible()
    # The page's first run has ended (its last widget is there, the defaults filled in)
    # before typing: a rerun that interrupts a first run can lose widgets the browser had
    # not been sent yet (seen once: an empty Branch).
    expect()(page.get_by_role("button", name="Deploy", exact=True)).to_be_visible()
    expect()(page.get_by_role("textbox", name="Branch", exact=True)).to_have_value("main")
    page.get_by_role("textbox", name="Repository", exact=True).fill(flow.repo.url)
    page.get_by_role("textbox", name="Repository", exact=True).press("Tab")
    subdomain = page.get_by_role("textbox", name="App URL (custom subdomain)", exact=True)
    expect()(subdomain).to_have_value("flow")
    docs_shot(page, "deploy-form")
    page.get_by_role("textbox", name="Main file path", exact=True).fill("missing.py")
    page.get_by_role("textbox", name="Main file path", exact=True).press("Tab")
    page.get_by_role("button", name="Deploy", exact=True).click()
    wait_text(flow, "There is no file 'missing.py' on branch 'main'")
    flow.shot("02-main-file-error")
    assert apps.list_apps(flow.ctx, flow.admin) == []

    page.get_by_role("textbox", name="Main file path", exact=True).fill("streamlit_app.py")
    page.get_by_role("textbox", name="Main file path", exact=True).press("Tab")
    page.get_by_role("button", name="Deploy", exact=True).click()
    wait_text(flow, "Your app is in the oven")
    flow.shot("03-in-the-oven", docs="deploy-progress")
    [app] = apps.list_apps(flow.ctx, flow.admin)
    flow.state["app_id"] = app.id
    wait_text(flow, "Your app is live!", timeout=BUILD_TIMEOUT * 1000)
    flow.shot("04-live")
    assert flow.row().state == "running"
    assert app_serves(flow, "flow")


def test_favorite_from_the_list_and_from_the_menu(flow: Flow) -> None:
    first = flow.app_id()
    second = apps.deploy_app(flow.ctx, flow.admin, repo_url=flow.repo.url,
                             subdomain="second").id
    open_my_apps(flow)
    expect()(flow.page.locator(f".st-key-app_{second}")).to_be_visible()
    wait_order(flow, [second, first])  # newest first

    click_key(flow, f"star_{first}")  # the star on the row
    button(flow, f"star_{first}", "⭐")
    wait_order(flow, [first, second])
    assert favorites.favorite_ids(flow.ctx, flow.admin) == {first}
    flow.shot("05-favorite")

    open_menu(flow, second)  # the ︙ menu
    flow.shot("06-menu", docs="my-apps-menu")
    click_key(flow, f"favmenu_{second}")
    wait_until(lambda: favorites.favorite_ids(flow.ctx, flow.admin) == {first, second}, 10,
               "the second favorite")
    open_menu(flow, first)
    click_key(flow, f"favmenu_{first}")  # Unfavorite
    wait_until(lambda: favorites.favorite_ids(flow.ctx, flow.admin) == {second}, 10,
               "the unfavorite")
    button(flow, f"star_{first}", "☆")
    wait_order(flow, [second, first])
    apps.delete_app(flow.ctx, flow.admin, second)  # keep the machine for the main app


def open_settings(flow: Flow, tab: str | None = None) -> None:
    flow.page.goto(f"{flow.base}/settings?app={flow.app_id()}")
    expect()(flow.page.get_by_role("heading", name="App settings")).to_be_visible()
    if tab:
        flow.page.get_by_role("tab", name=tab).click()


def test_change_the_subdomain_and_open_the_new_url(flow: Flow) -> None:
    old = flow.row().subdomain
    open_settings(flow)
    box = flow.page.get_by_role("textbox", name="Subdomain", exact=True)
    box.fill("renamed-flow")
    wait_text(flow, "is available")
    click_key(flow, "save_subdomain")
    wait_text(flow, f"now at {flow.app_url('renamed-flow')}")
    flow.shot("07-subdomain", docs="settings-general")
    wait_until(lambda: app_serves(flow, "renamed-flow"), 20, "the new subdomain to serve",
               flow.supervisor)
    wait_until(lambda: http_status(flow.settings, f"{old}.localhost")[0] == 404, 20,
               "the old subdomain to stop resolving", flow.supervisor)
    flow.page.goto(flow.app_url("renamed-flow"))
    wait_text(flow, "Flow app", timeout=60_000)
    flow.shot("08-new-url")


def test_make_the_app_private_and_public_again(flow: Flow) -> None:
    app_id = flow.app_id()
    open_settings(flow, "Sharing")
    flow.page.get_by_text("🔒 Private").click()
    wait_text(flow, "only workspace members and invited viewers can open the app")
    flow.shot("09-private", docs="settings-sharing")
    assert flow.row().visibility == "private"
    assert not sharing.can_view(flow.ctx, None, app_id)
    assert sharing.can_view(flow.ctx, flow.admin, app_id)
    outsider = auth.create_user(flow.ctx, "stranger", "stranger-password")
    assert not sharing.can_view(flow.ctx, outsider, app_id)

    flow.page.get_by_text("🌐 Public").click()
    wait_text(flow, "anyone with the link can open the app")
    assert sharing.can_view(flow.ctx, None, app_id)


def test_add_a_secret_and_the_app_reads_it(flow: Flow) -> None:
    generation = flow.row().restart_generation
    open_settings(flow, "Secrets")
    editor = flow.page.get_by_role("textbox", name="Secrets (TOML)", exact=True)
    editor.fill("greeting = \n")
    click_key(flow, "save_secrets")
    wait_text(flow, "Line 1")  # validated, with the line
    editor.fill(f'greeting = "{SECRET}"\n')
    click_key(flow, "save_secrets")
    wait_text(flow, "The app is restarting to use them")
    flow.shot("10-secrets", docs="settings-secrets")
    wait_until(lambda: flow.row().restart_generation == generation + 1, 10, "the restart")
    wait_until(lambda: flow.row().state == "running" and instance_generation(flow) ==
               generation + 1, 60, "the restarted app", flow.supervisor)
    flow.page.goto(flow.app_url(flow.row().subdomain))
    wait_text(flow, f"secret: {SECRET}", timeout=60_000)
    flow.shot("11-app-reads-secret")
    wait_text(flow, f"env: {SECRET}")  # top-level secrets are environment variables too
    assert app_secrets.runtime_env_vars(flow.settings, flow.app_id()) == {"greeting": SECRET}


def instance_generation(flow: Flow) -> int | None:
    state = json.loads(flow.row().runtime_state or "{}")
    return state.get("generation")


def test_reboot_with_confirmation(flow: Flow) -> None:
    app_id = flow.app_id()
    wait_until(lambda: instance_pid(flow), 30, "a running instance")
    pid = instance_pid(flow)
    open_my_apps(flow)
    open_menu(flow, app_id)
    click_key(flow, f"reboot_{app_id}")
    wait_text(flow, "interrupts everyone using it")
    flow.shot("12-reboot-dialog", docs="reboot-dialog")
    click_key(flow, "confirm_reboot")
    wait_until(lambda: instance_pid(flow) not in (None, pid) and flow.row().state == "running",
               60, "a new instance", flow.supervisor)
    assert app_serves(flow, flow.row().subdomain)


def test_logs_show_build_and_runtime_output(flow: Flow) -> None:
    flow.page.goto(f"{flow.base}/logs?app={flow.app_id()}")
    expect()(flow.page.get_by_role("heading", name="Logs")).to_be_visible()
    expect()(flow.page.get_by_role("tab", name="Runtime log")).to_be_visible()
    flow.page.get_by_role("tab", name="Build log").click()
    wait_text(flow, "Checked out commit")
    flow.shot("13-logs", docs="logs")
    assert flow.page.get_by_role("button", name="Download").count() >= 1


def test_wake_a_sleeping_app_with_the_moon(flow: Flow) -> None:
    app_id = flow.app_id()
    long_ago = datetime.now(UTC) - timedelta(days=30)
    with session_scope(flow.ctx.engine) as s:  # nobody viewed it for a month
        row = s.get(App, app_id)
        row.last_viewed_at = row.last_deployed_at = long_ago
        s.add(row)
    wait_for_state(flow.ctx, app_id, {"sleeping"}, timeout=30, sup=flow.supervisor)
    open_my_apps(flow)
    moon = button(flow, f"moon_{app_id}")
    expect()(moon).to_be_visible()
    flow.shot("14-sleeping")
    moon.click()
    wait_for_state(flow.ctx, app_id, {"running"}, timeout=60, sup=flow.supervisor)
    assert app_serves(flow, flow.row().subdomain)


def test_delete_with_confirmation(flow: Flow) -> None:
    app_id = flow.app_id()
    subdomain = flow.row().subdomain
    open_my_apps(flow)
    open_menu(flow, app_id)
    click_key(flow, f"delete_{app_id}")
    wait_text(flow, "Deleting stops the app for everyone using it")
    flow.shot("15-delete-dialog")
    click_key(flow, "confirm_delete")
    wait_until(lambda: load_app(flow.ctx, app_id) is None, 60, "the app to be removed",
               flow.supervisor)
    assert http_status(flow.settings, f"{subdomain}.localhost")[0] == 404
    assert not (flow.settings.apps_path / str(app_id)).exists()
    open_my_apps(flow)
    wait_text(flow, "No apps in owner yet")
    flow.shot("16-deleted")


def test_status_page_without_signing_in(flow: Flow) -> None:
    context = flow.page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(flow.base + "/")
        page.get_by_role("link", name="Service status").click()
        expect()(page.get_by_role("heading", name="Status")).to_be_visible(timeout=UI_TIMEOUT)
        expect()(page.get_by_text("All systems operational")).to_be_visible(
            timeout=UI_TIMEOUT)
        for part in ("Supervisor", "Proxy", "Database", "Disk"):
            expect()(page.get_by_text(part, exact=True)).to_be_visible()
        expect()(page.get_by_role("link", name="Sign in")).to_be_visible()
        docs_shot(page, "status")
        page.screenshot(path=str(ARTIFACTS / "dashboard-17-status.png"), full_page=True)
        assert page.get_by_text("Apps by state").count() == 0
    finally:
        context.close()

