"""The oven page's "Latest step": the build log's newest line without its timestamp, and
the block hidden while there is no step (the page's polling keeps both in step)."""

from __future__ import annotations

from backend.platform.settings_load import load_settings
from supervisor.proxy import pages
from supervisor.routes import Route


def oven(progress: str) -> str:
    route = Route(app_id=1, subdomain="hello", state="building", address=None,
                  reason="Building the environment")
    return pages.oven_page(route, load_settings(env={}), progress).text


def test_latest_step_shows_the_step_without_its_timestamp() -> None:
    html = oven("[2026-12-07 06:00:00] Reusing the environment 0123abcd (same dependencies).")
    assert '<div id="latest-step"><p class="muted">Latest step:</p>' in html
    assert ">Reusing the environment 0123abcd (same dependencies).</pre>" in html


def test_latest_step_is_hidden_without_a_step() -> None:
    html = oven("")
    assert '<div id="latest-step" hidden><p class="muted">Latest step:</p>' in html
    assert '<pre id="progress" class="progress"></pre>' in html
    assert "p.parentNode.hidden=!s" in html  # the polling hides it again when it empties


def test_latest_step_is_escaped() -> None:
    assert "&lt;script&gt;" in oven("[2026-12-07 06:00:00] <script>")
