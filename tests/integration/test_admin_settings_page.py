"""The Server settings page: site admins see every setting's effective value and where it
came from (default, file, environment); secrets are never on the page; anyone else gets
neither the page in the navigation nor its content."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend.context import open_context
from backend.errors import PermissionDenied
from backend.platform import settings_view
from models import Workspace, session_scope
from supervisor import mailer
from tests.support.dashboard import (
    Dash,
    add_member,
    open_dashboard,
    text,
)
from tests.support.lifecycle_support import MailSink

PAGE = "pages/dashboard/admin_settings.py"
SECRET = "smtp-pass-never-shown-4711"


def table(at: AppTest) -> dict[str, tuple[str, str]]:
    frame = at.dataframe[0].value
    return {row["Setting"]: (row["Value"], row["From"]) for _, row in frame.iterrows()}


def test_admin_sees_values_and_sources_but_no_secret(dash: Dash, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    config.write_text('support_url = "https://help.example.org"\n')
    monkeypatch.setenv("STCLOUD_CONFIG", str(config))
    monkeypatch.setenv("STCLOUD_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("STCLOUD_SMTP_PASSWORD", SECRET)
    at = open_dashboard(dash.admin, PAGE)
    assert not at.exception, at.exception
    rows = table(at)
    assert rows["smtp_host"] == ("127.0.0.1", "environment STCLOUD_SMTP_HOST")
    assert rows["support_url"] == ("https://help.example.org", f"file {config}")
    assert rows["smtp_password"] == ("(set, hidden)", "environment STCLOUD_SMTP_PASSWORD")
    assert rows["hibernate_after_days"][1] == "default"
    assert SECRET not in text(at) and SECRET not in str(at.dataframe[0].value.to_dict())


def test_non_admin_gets_no_settings(dash: Dash) -> None:
    with session_scope(dash.ctx.engine) as s:
        s.add(Workspace(name="team"))
    member = add_member(dash.ctx, "member", "team", "developer")
    with pytest.raises(PermissionDenied):
        settings_view.settings_for_admin(dash.ctx, member)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_dashboard(member, PAGE)  # not registered for them at all


def test_test_email_arrives_at_the_smtp_server(dash: Dash,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MailSink().start()
    try:
        for name, value in sink.settings().items():
            monkeypatch.setenv("STCLOUD_" + name.upper(), str(value))
        at = open_dashboard(dash.admin, PAGE)
        at.text_input(key="test_email_to").input("ops@example.org").run()
        at.button(key="send_test_email").click().run()
        assert "Queued a test email to ops@example.org" in text(at), text(at)
        ctx = open_context()  # the settings the supervisor would start with
        assert asyncio.run(mailer.send_pending(ctx)) == 1
        [msg] = sink.matching("Test email from")
        assert msg["To"] == "ops@example.org"
        assert "email works" in msg.get_content()
    finally:
        sink.stop()
