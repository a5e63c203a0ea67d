"""In Chromium, against the real supervisor: the Manage app button and panel (live Cloud
logs, reboot from the ︙ menu through the oven), the star, a viewer's view, a private app's
sign-in, the sleeping page's wake button. See conftest.py for the setup."""

from __future__ import annotations

import re
from typing import Any

from backend.accounts.auth import get_user, reset_password
from backend.apps import favorites
from tests.browser.docs_shots import docs_shot
from tests.support.browser import PASSWORD, Cloud, asleep_after_idle, screenshot, sign_in
from tests.support.supervisor_harness import load_app, wait_until

TIMEOUT = 60_000  # ms, for Playwright's waits
PASSWORD_CHANGED = "Your password was changed; sign in again."  # Home.py


def open_app(page: Any, cloud: Cloud, sub: str = "overlay") -> None:
    page.goto(cloud.url(sub))
    page.get_by_role("heading", name="Overlay test app").wait_for(timeout=TIMEOUT)


def panel_frame(page: Any) -> Any:
    return page.frame_locator("iframe[title^='Manage app']")


def test_developer_panel_live_logs_and_reboot(cloud: Cloud, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    try:
        sign_in(page, cloud, "dev")
        open_app(page, cloud)
        manage = page.get_by_role("button", name="Manage app")
        manage.wait_for(timeout=TIMEOUT)
        docs_shot(page, "app-manage-button")
        screenshot(page, "app-developer")
        manage.click()
        frame = panel_frame(page)
        frame.get_by_text("Cloud logs").wait_for(timeout=TIMEOUT)
        # A line the app prints after the panel opened shows up without a reload.
        page.get_by_role("button", name="Print a line").click()
        printed = page.get_by_text(re.compile(r"^Printed [0-9a-f]{8}$"))
        printed.wait_for(timeout=TIMEOUT)
        token = printed.inner_text().split()[-1]
        frame.get_by_text(f"printed {token}").wait_for(timeout=TIMEOUT)
        docs_shot(page, "manage-app-panel")
        screenshot(page, "panel-logs")
        # The ︙ menu: Reboot → the oven → the app again.
        frame.locator(".st-key-panel_menu button:visible").click()
        reboot = frame.get_by_role("button", name="Reboot app")
        reboot.wait_for(timeout=TIMEOUT)
        for item in ("Download logs", "Delete app", "Settings", "Analytics", "App dashboard",
                     "Documentation", "Sign out"):
            # The menu's rows render one by one: wait for each, as a person would look.
            frame.get_by_text(item, exact=True).first.wait_for(timeout=TIMEOUT)
        docs_shot(page, "manage-app-menu")
        screenshot(page, "panel-menu")
        reboot.click()
        frame.get_by_role("dialog").get_by_role("button", name="Reboot overlay").click()
        page.get_by_role("heading", name="Your app is in the oven").wait_for(timeout=TIMEOUT)
        screenshot(page, "oven")
        page.get_by_role("heading", name="Overlay test app").wait_for(timeout=TIMEOUT)
        page.get_by_role("button", name="Manage app").wait_for(timeout=TIMEOUT)
    finally:
        context.close()


def test_star_toggles_a_favorite_then_sign_out(cloud: Cloud, browser: Any) -> None:
    dev = get_user(cloud.ctx, "dev")
    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, cloud, "dev")
        open_app(page, cloud)
        star = page.get_by_role("button", name="Add to favorites")
        star.click()
        page.get_by_role("button", name="Remove from favorites").wait_for(timeout=TIMEOUT)
        assert cloud.public_id in favorites.favorite_ids(cloud.ctx, dev)
        screenshot(page, "star-on")
        page.get_by_role("button", name="Remove from favorites").click()
        page.get_by_role("button", name="Add to favorites").wait_for(timeout=TIMEOUT)
        assert cloud.public_id not in favorites.favorite_ids(cloud.ctx, dev)
        # Sign out from the panel's ︙ menu: signed out of the app host and the dashboard.
        page.get_by_role("button", name="Manage app").click()
        frame = panel_frame(page)
        frame.locator(".st-key-panel_menu button:visible").click()
        frame.get_by_role("button", name="Sign out").click()
        page.get_by_role("textbox", name="Username").wait_for(timeout=TIMEOUT)
        assert page.url.startswith(cloud.url())
        assert "stcloud_dashboard" not in {c["name"] for c in context.cookies()}
    finally:
        context.close()


def test_viewer_sees_neither_manage_button_nor_star(cloud: Cloud, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, cloud, "vera")
        with page.expect_response(lambda r: r.url.endswith("/__stcloud/me")) as me:
            open_app(page, cloud)
        data = me.value.json()
        assert data["signed_in"] and data["role"] == "viewer"
        assert not data["can_manage"] and not data["can_favorite"]
        page.locator("html[data-stcloud-overlay='none']").wait_for(state="attached",
                                                                   timeout=TIMEOUT)
        assert page.get_by_role("button", name="Manage app").count() == 0
        assert page.get_by_role("button", name="Add to favorites").count() == 0
        assert page.locator("stcloud-overlay").count() == 0
        screenshot(page, "app-viewer")
    finally:
        context.close()


def test_private_app_sends_visitors_to_sign_in(cloud: Cloud, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(cloud.url("secret"))
        page.get_by_role("textbox", name="Username").wait_for(timeout=TIMEOUT)
        assert page.url.startswith(cloud.url())  # the dashboard's sign-in
        screenshot(page, "private-sign-in")
        sign_in(page, cloud, "otto", goto=False)  # signed in, but not invited
        page.get_by_role("heading", name="You don't have access to this app").wait_for(
            timeout=TIMEOUT)
        screenshot(page, "private-no-access")
        page.get_by_role("button", name="Sign in as someone else").click()
        page.get_by_role("textbox", name="Username").wait_for(timeout=TIMEOUT)
        sign_in(page, cloud, "vera", goto=False)  # a member of the workspace
        page.get_by_role("heading", name="Overlay test app").wait_for(timeout=TIMEOUT)
        assert page.url == cloud.url("secret")
    finally:
        context.close()


def test_sleeping_page_wakes_the_app(cloud: Cloud, browser: Any) -> None:
    app_id = cloud.public_id

    # The supervisor's hibernation pass (every second here) puts it to sleep.
    wait_until(asleep_after_idle(cloud.ctx, app_id), 60, "the app to go to sleep",
               cloud.supervisor)
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(cloud.url("overlay"))
        page.get_by_role("heading", name=re.compile("gone to sleep due to inactivity")).wait_for(
            timeout=TIMEOUT)
        docs_shot(page, "state-sleeping")
        screenshot(page, "sleeping")
        page.get_by_role("button", name="Yes, get this app back up!").click()
        page.get_by_role("heading", name="Overlay test app").wait_for(timeout=TIMEOUT)
        assert load_app(cloud.ctx, app_id).state == "running"
    finally:
        context.close()


def test_a_password_change_ends_a_sign_in_by_cookie(cloud: Cloud, browser: Any) -> None:
    """A new tab signs in by the dashboard's cookie (no session state of its own). After the
    password changed (elsewhere), a tab opened with that older cookie is signed out and
    told why, and the form works with the new password. (It used to stay signed in: the
    cookie component's rerun cut the run before the session's start was recorded, which
    then counted from "now".)"""
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, cloud, "otto")
        by_cookie = context.new_page()
        by_cookie.goto(cloud.url())
        by_cookie.get_by_text("Signed in as").wait_for(timeout=TIMEOUT)
        assert by_cookie.get_by_role("button", name="Sign in").count() == 0

        reset_password(cloud.ctx, "otto", "a-new-password-1")
        later = context.new_page()
        later.goto(cloud.url())
        # .first: while the cookie component reruns the page, Streamlit can show the
        # previous run's notice next to the new one for a moment.
        later.get_by_text(PASSWORD_CHANGED).first.wait_for(timeout=TIMEOUT)
        later.get_by_role("button", name="Sign in").wait_for(timeout=TIMEOUT)
        assert later.get_by_text("Signed in as").count() == 0
        later.get_by_role("textbox", name="Username").fill("otto")
        later.get_by_role("textbox", name="Password").fill("a-new-password-1")
        later.get_by_role("button", name="Sign in").click()
        later.get_by_text("Signed in as").wait_for(timeout=TIMEOUT)
    finally:
        context.close()
        reset_password(cloud.ctx, "otto", PASSWORD)
