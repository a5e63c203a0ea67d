"""The Analytics page: the Altair charts' Vega specs, the page under AppTest on the
dashboard's settings (the `dash` fixture), and screenshots of both tabs in Chromium.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import models.analytics  # noqa: F401  (registers the aggregate tables)
from backend.accounts import auth
from backend.analytics import reports as analytics
from backend.apps import service as apps
from tests.support.dashboard import Dash

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "dashboard" / "analytics.py")
ARTIFACTS = ROOT / "test-artifacts"


# Charts ----------------------------------------------------------------------------------
def page_module() -> Any:
    sys.path.insert(0, str(ROOT))
    from pages.dashboard import analytics as page
    return page


def line_layers(spec: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(solid line layers, dashed line layers) of a layered Vega-Lite spec."""
    lines = [layer for layer in spec["layer"]
             if (layer["mark"]["type"] if isinstance(layer["mark"], dict)
                 else layer["mark"]) == "line"]
    dashed = [layer for layer in lines if layer["mark"].get("strokeDash")]
    return [layer for layer in lines if layer not in dashed], dashed


def test_monthly_chart_is_solid_then_dashed_for_the_current_month() -> None:
    page = page_module()
    points = [analytics.MonthPoint(date(2024, m, 1), n, m < 4)
              for m, n in ((1, 5), (2, 7), (3, 6), (4, 2))]
    spec = page.monthly_chart(points).to_dict()
    solid, dashed = line_layers(spec)
    assert len(solid) == 1 and len(dashed) == 1
    assert [r["month"][:7] for r in solid[0]["data"]["values"]] == ["2024-01", "2024-02",
                                                                      "2024-03"]
    assert [r["month"][:7] for r in dashed[0]["data"]["values"]] == ["2024-03", "2024-04"]
    assert solid[0]["encoding"]["x"]["title"] == "Month (UTC)"
    tooltips = [t["title"] for layer in spec["layer"]
                for t in layer.get("encoding", {}).get("tooltip", [])]
    assert {"Month (UTC)", "Unique viewers"} <= set(tooltips)
    only_current = page.monthly_chart([analytics.MonthPoint(date(2024, 4, 1), 2, False)])
    solid, dashed = line_layers(only_current.to_dict())
    assert solid[0]["data"]["values"] == [] and len(dashed[0]["data"]["values"]) == 1


# The page under AppTest ------------------------------------------------------------------


def seed(d: Dash) -> tuple[Any, Any]:
    """Two apps of workspace "owner" with views over 14 months up to now."""
    hello = apps.deploy_app(d.ctx, d.admin, repo_url="https://github.com/owner/hello",
                            subdomain="hello")
    other = apps.deploy_app(d.ctx, d.admin, repo_url="https://github.com/owner/other",
                            subdomain="other")
    now = datetime.now(UTC)
    rng = random.Random(3)
    events = [(hello.id, f"v:{rng.randrange(80)}", now - timedelta(minutes=rng.randrange(
        420 * 24 * 60))) for _ in range(600)]
    events += [(other.id, f"u:{d.admin.id}", now - timedelta(hours=2)),
               (hello.id, f"u:{d.admin.id}", now - timedelta(minutes=3))]
    analytics.record_views(d.ctx, events)
    return hello, other


def open_page(user: Any, query: dict[str, str] | None = None,
              tab: str | None = None) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=30)
    app.session_state["authentication_status"] = True
    app.session_state["username"] = user.username
    if query:
        app.query_params.update(query)
    if tab:
        app.session_state["analytics_tab"] = tab
    app.run()
    assert not app.exception, app.exception
    return app


def charts(app: AppTest) -> list[dict[str, Any]]:
    return [json.loads(e.proto.spec) for e in app.get("vega_lite_chart")]


def page_text(app: AppTest) -> str:
    parts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "error"):
        parts += [str(e.value) for e in getattr(app, kind)]
    parts += [f"{m.label}={m.value}" for m in app.metric]
    return "\n".join(parts)


def test_page_workspace_tab_renders_the_chart(dash: Dash) -> None:
    seed(dash)
    app = open_page(dash.admin)
    assert [t.value for t in app.title] == ["Analytics"]
    assert [t.label for t in app.tabs] == ["Workspace", "App viewers"]
    (spec,) = charts(app)
    solid, dashed = line_layers(spec)
    assert solid and dashed and solid[0]["data"]["values"]
    assert len(dashed[0]["data"]["values"]) == 2
    text = page_text(app)
    assert "so far" in text and "Months are calendar months in UTC." in text
    assert app.get("download_button")[0].proto.label == "Download CSV"
    assert "App" not in [s.label for s in app.selectbox]  # the other tab did not run


def test_page_app_viewers_tab_lists_recent_viewers(dash: Dash) -> None:
    hello, _ = seed(dash)
    app = open_page(dash.admin, tab="App viewers")
    (select_app,) = [s for s in app.selectbox if s.key == "analytics_app"]
    assert select_app.value == hello.id  # the first app (by name) is preselected
    assert app.query_params["app"] == str(hello.id)
    text = page_text(app)
    assert "Unique viewers (all time)=81" in text
    names = [m.value for m in app.markdown if m.value.startswith(("👤", "🎭"))]
    assert len(names) == 20 and names[0] == "👤 **Administrator** :blue-badge[member]"
    assert "3 minutes ago" in [c.value for c in app.caption]
    assert any(c.proto.help.startswith("Last view: ") for c in app.caption)
    assert [c["mark"]["type"] for c in charts(app)] == ["bar"]
    assert {b.proto.label for b in app.get("download_button")} == {
        "Download daily views (CSV)", "Download recent viewers (CSV)"}
    app.session_state["analytics_tab"] = "Workspace"
    app.run()
    assert "app" not in app.query_params and len(charts(app)) == 1


def test_page_query_app_preselects_the_app_and_tab(dash: Dash) -> None:
    _, other = seed(dash)
    alone = apps.deploy_app(dash.ctx, dash.admin, repo_url="https://github.com/solo/app",
                            subdomain="solo-app")
    app = open_page(dash.admin, query={"app": str(other.id)})
    assert app.session_state["analytics_tab"] == "App viewers"
    assert app.selectbox(key="analytics_app").value == other.id
    assert "👤 **Administrator** :blue-badge[member]" in [m.value for m in app.markdown]
    # An app of another workspace switches the workspace too.
    app = open_page(dash.admin, query={"app": str(alone.id)})
    solo = next(w for w in analytics.viewable_workspaces(dash.ctx, dash.admin)
                if w.name == "solo")
    assert app.selectbox(key="current_workspace").value == solo.id  # the dashboard's
    assert app.selectbox(key="analytics_app").value == alone.id
    assert "Nobody has viewed this app yet." in page_text(app)
    app = open_page(dash.admin, query={"app": "12345"})
    assert "There is no app 12345" in page_text(app)


NAV = """
import streamlit as st
st.navigation([st.Page({other!r}, title="Other", default=True),
               st.Page({page!r}, title="Analytics", url_path="analytics")]).run()
"""


def test_page_link_from_another_page_opens_app_viewers_each_time(dash: Dash,
                                                                tmp_path: Path) -> None:
    """As from an app's menu on My apps: ?app= opens App viewers, also a second time for the
    same app after the user went back to Workspace and left the page."""
    hello, other = seed(dash)
    (tmp_path / "other.py").write_text("import streamlit as st\nst.title('Other')\n")
    nav = tmp_path / "nav.py"
    nav.write_text(NAV.format(other=str(tmp_path / "other.py"), page=PAGE))
    app = AppTest.from_file(str(nav), default_timeout=30)
    app.session_state["authentication_status"] = True
    app.session_state["username"] = dash.admin.username
    app.run()
    for _ in range(2):
        app.query_params["app"] = str(other.id)
        app.switch_page(PAGE).run()
        assert not app.exception, app.exception
        assert app.session_state["analytics_tab"] == "App viewers"
        assert app.selectbox(key="analytics_app").value == other.id
        app.session_state["analytics_tab"] = "Workspace"
        app.run()
        assert "app" not in app.query_params and len(charts(app)) == 1
        app.session_state["analytics_tab"] = "App viewers"
        app.run()  # the app chosen before is still chosen, and back in the URL
        assert app.selectbox(key="analytics_app").value == other.id
        assert app.query_params["app"] == str(other.id)
        app.switch_page(str(tmp_path / "other.py")).run()
        assert [t.value for t in app.title] == ["Other"]


def test_page_empty_state(dash: Dash) -> None:
    apps.deploy_app(dash.ctx, dash.admin, repo_url="https://github.com/owner/hello")
    app = open_page(dash.admin)
    assert "No viewers yet" in page_text(app)
    assert charts(app) == []
    nobody = auth.create_user(dash.ctx, "nobody", "nobody-password")
    assert "You are not in any workspace yet" in page_text(open_page(nobody))


# Chromium: screenshots of both tabs ------------------------------------------------------
HARNESS = """
import streamlit as st
st.set_page_config(page_title="Analytics", layout="wide")
st.session_state["authentication_status"] = True
st.session_state["username"] = "admin"
st.navigation([st.Page({page!r}, title="Analytics")], position="hidden").run()
"""


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.mark.browser
def test_screenshots_of_both_tabs(dash: Dash, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (apt-get install chromium)")
    seed(dash)
    from tests.conftest import free_port
    harness = tmp_path / "analytics_harness.py"
    harness.write_text(HARNESS.format(page=PAGE))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(harness), "--server.headless=true",
         f"--server.port={port}", "--server.address=127.0.0.1",
         "--browser.gatherUsageStats=false"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health")
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            chart = page.locator("[data-testid='stVegaLiteChart']").first
            chart.wait_for(state="visible", timeout=30_000)
            page.wait_for_timeout(1500)
            box = chart.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100
            page.screenshot(path=str(ARTIFACTS / "analytics-workspace.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 2000})
            page.get_by_role("tab", name="App viewers").click()
            page.get_by_text("Recent viewers").wait_for(timeout=30_000)
            page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            assert page.get_by_text("Administrator").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "analytics-app-viewers.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
