"""The Settings page's viewer identity section (pages/dashboard/_viewer_identity.py) under
AppTest on the real Home.py: a developer turns the identity headers on and off; a viewer
sees the switch disabled."""

from __future__ import annotations

from backend.accounts import oidc_clients
from tests.support.dashboard import Dash, add_member, deploy, open_settings, text


def test_developer_turns_identity_headers_on_and_off(dash: Dash) -> None:
    app = deploy(dash, "whoami")
    at = open_settings(dash, app)
    assert "st.login()" in text(at)
    at.toggle(key=f"identity_headers_{app.id}").set_value(True).run()
    assert oidc_clients.identity_headers_on(dash.ctx, app.id)
    assert any("now receives the viewer's identity headers" in s.value for s in at.success)
    at.toggle(key=f"identity_headers_{app.id}").set_value(False).run()
    assert not oidc_clients.identity_headers_on(dash.ctx, app.id)


def test_a_viewer_sees_the_switch_disabled(dash: Dash) -> None:
    app = deploy(dash, "whoami")
    viewer = add_member(dash.ctx, "vic", "owner", "viewer")
    at = open_settings(dash, app, viewer)
    assert at.toggle(key=f"identity_headers_{app.id}").disabled
