"""Deploy and restart in a real browser (Playwright + Debian's Chromium) against a real
supervisor on the process runtime (tests/browser/flow_support.py), in file order:

1. The admin deploys from the dashboard's form; a second tab opens the app's URL as soon as
   the deploy is accepted (its row exists) and, from that first answer until the app
   serves, every page it is shown is the oven page, never "No app lives at …"; its Latest
   step is shown only with a step in it.
2. With 20 apps running, the platform is stopped the Ctrl-C way and started again: no build
   is recorded, "Deployed" in My apps shows the same time as before, an app tab opened
   during the restart lands on the app, and at most `start_concurrency` apps were between
   "Starting from its checkout" and "Serving" at once.

Skipped when Chromium or Playwright is missing, except with CI=true, where that fails.
"""

from __future__ import annotations

from typing import Any

from backend.apps import service as apps
from supervisor.control.restart import start_limit
from tests.browser.flow_support import (
    BUILD_TIMEOUT,
    PASSWORD,
    UI_TIMEOUT,
    Flow,
    expect,
    open_my_apps,
)
from tests.support.restarts import (
    build_count,
    last_event_id,
    most_at_once,
    start_windows,
)
from tests.support.supervisor_harness import all_apps, wait_for_state, wait_until

APPS = 20
# Latest step: hidden, or holding a step (false while the oven page is not shown).
STEP_OK = """() => { const d = document.getElementById("latest-step");
  if (!d) return null; const p = d.querySelector("pre");
  return d.hidden ? p.textContent.trim() === "" : p.textContent.trim() !== ""; }"""


def watch_documents(page: Any) -> list[int]:
    """The status of every main-frame document the page is answered with, redirects
    (the silent sign-in bounce between the app host and the dashboard) left out."""
    seen: list[int] = []

    def on_response(response: Any) -> None:
        if response.request.resource_type == "document" and \
                response.frame == page.main_frame and not 300 <= response.status < 400:
            seen.append(response.status)
    page.on("response", on_response)
    return seen


def sign_in(flow: Flow) -> None:
    page = flow.page
    page.goto(flow.base + "/")
    expect()(page.get_by_role("textbox", name="Username", exact=True)).to_be_visible(
        timeout=2 * UI_TIMEOUT)
    page.get_by_role("textbox", name="Username", exact=True).fill("admin")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect()(page.get_by_role("heading", name="My apps").first).to_be_visible()


def test_the_url_shows_the_oven_from_the_moment_deploy_is_accepted(flow: Flow) -> None:
    page = flow.page
    sign_in(flow)
    page.get_by_role("link", name="Deploy an app").first.click()
    expect()(page.get_by_role("button", name="Deploy", exact=True)).to_be_visible()
    expect()(page.get_by_role("textbox", name="Branch", exact=True)).to_have_value("main")
    page.get_by_role("textbox", name="Repository", exact=True).fill(flow.repo.url)
    page.get_by_role("textbox", name="Repository", exact=True).press("Tab")
    expect()(page.get_by_role("textbox", name="App URL (custom subdomain)",
                              exact=True)).to_have_value("flow")
    tab = page.context.new_page()
    documents = watch_documents(tab)
    page.get_by_role("button", name="Deploy", exact=True).click()
    wait_until(lambda: apps.list_apps(flow.ctx, flow.admin), 60, "the deploy to be accepted",
               flow.supervisor, interval=0.01)
    tab.goto(flow.app_url("flow"))
    step_checks = []
    while not tab.get_by_text("Flow app").first.is_visible():
        ok = tab.evaluate(STEP_OK)
        if ok is not None:
            step_checks.append(ok)
        assert 404 not in documents and "not found" not in tab.title(), documents
        tab.wait_for_timeout(100)  # the polling interval of this loop, not a sync guess
        assert len(step_checks) < BUILD_TIMEOUT * 10, "the app never served"
    assert documents and documents[0] == 503, "the first answer is the oven page"
    assert step_checks and all(step_checks), "Latest step is shown only with a step in it"
    assert 404 not in documents, documents
    flow.state["app_id"] = apps.list_apps(flow.ctx, flow.admin)[0].id
    tab.close()


def deployed_titles(flow: Flow) -> list[str]:
    """The exact times of the "Deployed …" captions in My apps, one per app."""
    open_my_apps(flow)
    captions = flow.page.locator("span[title]", has_text="Deployed")
    wait_until(lambda: captions.count() == APPS, 60, "every app's Deployed caption")
    return sorted(str(c.get_attribute("title")) for c in captions.all())


def test_a_restart_with_20_apps_rebuilds_none_and_staggers_the_starts(flow: Flow) -> None:
    flow.app_id()
    for i in range(1, APPS):
        apps.deploy_app(flow.ctx, flow.admin, repo_url=flow.repo.url, subdomain=f"more{i:02d}")
    for app in all_apps(flow.ctx):
        assert wait_for_state(flow.ctx, app.id or 0, {"running", "crashed", "build_failed"},
                              timeout=600, sup=flow.supervisor).state == "running"
    before = deployed_titles(flow)
    builds = build_count(flow.ctx)
    flow.supervisor.stop()  # SIGINT, as Ctrl-C: the apps stop too
    mark = last_event_id(flow.ctx)
    flow.supervisor.start()
    tab = flow.page.context.new_page()
    documents = watch_documents(tab)
    tab.goto(flow.app_url("more13"))
    expect()(tab.get_by_text("Flow app").first).to_be_visible(timeout=BUILD_TIMEOUT * 1000)
    assert 404 not in documents, documents
    tab.close()
    wait_until(lambda: all(a.state == "running" and a.runtime_state not in ("", "{}")
                           for a in all_apps(flow.ctx)), 600, "every app to serve again",
               flow.supervisor)
    assert build_count(flow.ctx) == builds, "the restart built nothing"
    windows = start_windows(flow.ctx, mark)
    assert len(windows) == APPS
    assert most_at_once(windows) <= start_limit(flow.settings)
    assert deployed_titles(flow) == before, "Deployed keeps each deploy's time"
