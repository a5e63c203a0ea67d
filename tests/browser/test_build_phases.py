"""The oven page shows a deploy's phases as they happen (supervisor/builds/phases.py), in a
real browser against a real supervisor (process runtime, tests/browser/flow_support.py).

The app's requirements name a local package whose build waits for a gate file the test
writes (tests/support/lifecycle_support.py): while it waits, the page lists the clone and
resolve as done, the download as running with a time that keeps growing between the
page's own polls (a stuck build looks stuck), the later phases as waiting. Once the gate
opens, the running phase advances in order to the start or health check, and the tab
lands on the app. With STCLOUD_SCREENSHOTS set, the waiting page is the docs screenshot
`oven-phases`.
"""

from __future__ import annotations

import time
from typing import Any

from backend.apps import service as apps
from supervisor.builds.phases import ORDER
from tests.browser.docs_shots import docs_shot
from tests.browser.flow_support import BUILD_TIMEOUT, Flow, expect
from tests.conftest import GitRepo
from tests.support.lifecycle_support import build_visible_dir, gated_package, package_files
from tests.support.runtimes import REQUIREMENTS
from tests.support.supervisor_harness import wait_until

APP = 'import streamlit as st\n\nst.title("Phases app")\n'
STATES = """() => Object.fromEntries([...document.querySelectorAll("li.phase")]
  .map(li => [li.dataset.phase, li.dataset.state]))"""
RUNNING_TIME = """() => { const li = document.querySelector('li.phase.running');
  return li ? li.textContent : null; }"""


def phase_states(page: Any) -> dict[str, str]:
    return dict(page.evaluate(STATES))


def test_the_oven_page_shows_the_phases_advance(flow: Flow) -> None:
    pkg, gate = gated_package(build_visible_dir(flow.settings, "phases"))
    repo = GitRepo(flow.settings.data_dir.parent / "repos" / "phases", branch="main")
    repo.commit({"streamlit_app.py": APP, "requirements.txt": REQUIREMENTS + "./gatedpkg\n",
                 **package_files(pkg)}, "gated build")
    apps.deploy_app(flow.ctx, flow.admin, repo_url=repo.url, subdomain="phases")
    tab = flow.page.context.new_page()
    tab.goto(flow.app_url("phases"))
    try:
        # Blocked in the gated package's build: clone and resolve done, download running.
        wait_until(lambda: phase_states(tab).get("download") == "running", 120,
                   "the download phase to run", flow.supervisor, interval=0.2)
        states = phase_states(tab)
        assert states["clone"] == "done" and states["resolve"] == "done", states
        assert all(states[p] == "waiting" for p in ("install", "start", "health")), states
        first = tab.evaluate(RUNNING_TIME)
        wait_until(lambda: tab.evaluate(RUNNING_TIME) not in (first, None), 10,
                   "the running phase's time to grow without a reload", interval=0.2)
        assert tab.evaluate("() => performance.getEntriesByType('navigation').length") == 1
        summary = tab.locator("#phase-summary").text_content() or ""
        assert summary.startswith("Step 3 of 6"), summary
        docs_shot(tab, "oven-phases")

        gate.write_text("go")
        seen: list[str] = ["download"]
        deadline = time.monotonic() + BUILD_TIMEOUT
        while not tab.get_by_text("Phases app").first.is_visible():
            assert time.monotonic() < deadline, f"the app never served; phases {seen}"
            try:
                running = [p for p, s in phase_states(tab).items() if s == "running"]
            except Exception:  # the page is reloading onto the app
                running = []
            if running and running[0] != seen[-1]:
                seen.append(running[0])
            tab.wait_for_timeout(100)  # the sampling interval of this loop
            assert flow.supervisor.alive(), seen
        assert seen == sorted(seen, key=ORDER.index), f"phases went back: {seen}"
        assert set(seen) & {"install", "start", "health"}, seen
        expect()(tab.get_by_text("Phases app").first).to_be_visible(
            timeout=BUILD_TIMEOUT * 1000)
    finally:
        if not gate.exists():
            gate.write_text("fail")
        tab.close()
