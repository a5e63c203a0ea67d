"""The Status page says where hosted apps run and how they are isolated, as the supervisor
recorded it at start (backend/platform/installation.py): site admins see the whole sentence (a
warning in single-tenant mode), other signed-in users a short line, signed-out visitors
nothing. The real Home.py under AppTest, as tests/integration/test_dashboard.py."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from backend.accounts import auth
from backend.platform import installation
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    HOME,
    Dash,
    open_dashboard,
    text,
)

UNSANDBOXED = ("single-tenant mode: hosted apps run unsandboxed as the platform's user; "
               "every developer is trusted")


def record(d: Dash, engine: str, isolation: str, detail: str = "") -> None:
    installation.set_engine(d.ctx, engine)
    installation.record_isolation(d.ctx, isolation, detail)


def test_single_tenant_mode_is_a_warning_for_admins(dash: Dash) -> None:
    record(dash, "process", "single-tenant")
    at = open_dashboard(dash.admin, ui.STATUS)
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("Apps run in: process runtime" in w and UNSANDBOXED in w for w in warnings)

    bob = auth.create_user(dash.ctx, "bob", "bob-password")
    page = text(open_dashboard(bob, ui.STATUS))
    assert "Apps run in: process runtime, single-tenant (apps are not sandboxed)." in page
    assert UNSANDBOXED not in page  # the short line only


def test_sandboxed_and_container_modes(dash: Dash) -> None:
    record(dash, "process", "sandboxed", "bubblewrap")
    at = open_dashboard(dash.admin, ui.STATUS)
    assert [i.value for i in at.info] == ["Apps run in: process runtime, sandboxed "
                                          "(bubblewrap)."]
    assert "single-tenant" not in text(at)
    record(dash, "docker", "containers", "docker")
    at = open_dashboard(dash.admin, ui.STATUS)
    assert [i.value for i in at.info] == ["Apps run in: docker runtime, one container per app."]


def test_a_host_that_cannot_sandbox_says_apps_are_refused(dash: Dash) -> None:
    record(dash, "process", "unavailable", "bwrap not found")
    at = open_dashboard(dash.admin, ui.STATUS)
    assert any("cannot sandbox apps (bwrap not found)" in w.value and "refused" in w.value
               for w in at.warning)


def test_nothing_for_signed_out_visitors(dash: Dash) -> None:
    record(dash, "process", "single-tenant")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.run()
    at.switch_page(ui.STATUS).run()
    assert not at.exception and "Apps run in" not in text(at)
