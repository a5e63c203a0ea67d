"""In Chromium, against the real supervisor: the controls we put on a hosted app, as its
developer sees them. `?embed=true` shows the app alone (nothing of ours in the page); the
star sits clear of Streamlit's header and its running indicator; the Manage app panel
starts at the top, opens its ︙ menu below the logs (covering neither them nor a dialog),
says "Download logs", always offers "Contact support", and asks before a reboot; Delete
app, confirmed in its dialog, lands the tab on the deleted app's page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.docs_shots import docs_shot
from tests.support.browser import chromium_path, screenshot, sign_in
from tests.support.supervisor_harness import load_app
from tests.support.watch_cloud import TIMEOUT, WatchCloud, open_app, overlaps, start_watch_cloud

APPS = {"controls": "controls", "doomed": "controls"}


@pytest.fixture(scope="module")
def ccloud(tmp_path_factory: pytest.TempPathFactory, shared_envs_dir: Path,
           module_database_url: str) -> Iterator[WatchCloud]:
    chromium_path()  # skip before starting anything
    yield from start_watch_cloud(tmp_path_factory.mktemp("controls"), shared_envs_dir,
                                 module_database_url, APPS)


@pytest.fixture
def dev_page(browser: Any, ccloud: WatchCloud) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, ccloud, "dev")
    yield page
    context.close()


def panel(page: Any) -> Any:
    page.get_by_role("button", name="Manage app").click()
    frame = page.frame_locator("iframe[title^='Manage app']")
    frame.get_by_text("Cloud logs").wait_for(timeout=TIMEOUT)
    return frame


def open_menu(frame: Any) -> None:
    frame.locator(".st-key-panel_menu button:visible").click()
    frame.get_by_role("button", name="Reboot app").wait_for(timeout=TIMEOUT)


def test_embed_page_has_nothing_of_ours(dev_page: Any, ccloud: WatchCloud) -> None:
    page = dev_page
    open_app(page, ccloud, "controls")  # a developer: the overlay is there without embed
    page.get_by_role("button", name="Manage app").wait_for(timeout=TIMEOUT)
    for query in ("?embed=true", "?embed=True&embed_options=light_theme"):
        with page.expect_response(lambda r: r.request.resource_type == "document") as doc:
            open_app(page, ccloud, "controls", query)
        assert "/__stcloud/" not in doc.value.text()
        page.wait_for_load_state("networkidle")
        assert page.locator("stcloud-overlay").count() == 0
        assert page.get_by_role("button", name="Manage app").count() == 0
        assert page.get_by_role("button", name="Add to favorites").count() == 0
    screenshot(page, "app-embed")


def test_star_is_clear_of_streamlits_status_indicator(dev_page: Any,
                                                      ccloud: WatchCloud) -> None:
    page = dev_page
    open_app(page, ccloud, "controls")
    star = page.get_by_role("button", name="Add to favorites")
    star.wait_for(timeout=TIMEOUT)
    page.get_by_role("button", name="Work a while").click()
    status = page.locator('[data-testid="stStatusWidget"]')
    running = page.locator('[data-testid="stStatusWidgetRunningIcon"]')
    running.wait_for(timeout=TIMEOUT)
    star_box = star.bounding_box()
    for widget in (running, status, page.locator('[data-testid="stToolbar"]')):
        box = widget.bounding_box()
        assert box is not None and star_box is not None
        assert not overlaps(star_box, box), (star_box, box)
    manage_box = page.get_by_role("button", name="Manage app").bounding_box()
    assert manage_box is not None and not overlaps(star_box, manage_box)
    page.get_by_text("Done working").wait_for(timeout=TIMEOUT)


def test_panel_layout_menu_and_reboot_confirmation(dev_page: Any, ccloud: WatchCloud) -> None:
    page = dev_page
    app_id = ccloud.ids["controls"]
    open_app(page, ccloud, "controls")
    frame = panel(page)
    # The app's name starts at the top of the panel, not below a blank band.
    name = frame.get_by_text("controls", exact=True).first
    name.wait_for(timeout=TIMEOUT)
    iframe_box = page.locator("iframe[title^='Manage app']").bounding_box()
    name_box = name.bounding_box()
    assert name_box["y"] - iframe_box["y"] < 48, (name_box, iframe_box)
    # The ︙ menu opens under the logs: no item covers them.
    open_menu(frame)
    logs_box = frame.locator(".st-key-cloud_logs").bounding_box()
    for item in ("Download logs", "Reboot app", "Delete app", "Settings", "Analytics",
                 "App dashboard", "Documentation", "Contact support", "Sign out"):
        control = frame.get_by_text(item, exact=True)
        control.wait_for(timeout=TIMEOUT)
        box = control.bounding_box()
        assert not overlaps(box, logs_box), (item, box, logs_box)
    # No support link is set here: Contact support opens the documentation.
    support = frame.get_by_role("link", name="Contact support")
    assert support.get_attribute("href") == ccloud.settings.docs_url
    # Reboot asks first; Cancel leaves the app alone.
    frame.get_by_role("button", name="Reboot app").click()
    dialog = frame.get_by_role("dialog")
    dialog.get_by_text("interrupts everyone using it").wait_for(timeout=TIMEOUT)
    assert frame.get_by_role("button", name="Download logs").count() == 0  # menu closed
    docs_shot(page, "manage-app-reboot-confirm")
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached", timeout=TIMEOUT)
    assert load_app(ccloud.ctx, app_id).state == "running"
    open_menu(frame)
    frame.get_by_role("button", name="Reboot app").click()
    frame.get_by_role("dialog").get_by_role("button", name="Reboot controls").click()
    page.get_by_role("heading", name="Your app is in the oven").wait_for(timeout=TIMEOUT)
    page.get_by_role("heading", name="Watched app").wait_for(timeout=TIMEOUT)


def test_in_app_delete_lands_on_the_deleted_apps_page(dev_page: Any,
                                                      ccloud: WatchCloud) -> None:
    page = dev_page
    open_app(page, ccloud, "doomed")
    frame = panel(page)
    open_menu(frame)
    frame.get_by_role("button", name="Delete app").click()
    dialog = frame.get_by_role("dialog")
    confirm = dialog.get_by_role("button", name="Delete doomed")
    confirm.wait_for(timeout=TIMEOUT)
    assert frame.get_by_role("button", name="Reboot app").count() == 0  # menu closed
    confirm.click()  # Playwright clicks only what is not covered
    gone = re.compile(r"^No app lives at doomed\.localhost")
    page.get_by_role("heading", name=gone).wait_for(timeout=TIMEOUT)
    assert load_app(ccloud.ctx, ccloud.ids["doomed"]) is None
    assert page.get_by_text("Connection failed").count() == 0
    screenshot(page, "deleted-app")
