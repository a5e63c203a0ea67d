"""The Server settings page's live settings (AppTest): a change is saved and shown as changed
live by the admin, a bad value says what to enter under its field and changes nothing, an
undo goes back to the start value; and a running supervisor picks up a changed
`hibernate_after_days` and SMTP host without a restart."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from backend.accounts import auth
from backend.context import open_context
from backend.platform import setting_overrides, settings_view
from backend.platform.settings import Settings
from tests.support.dashboard import Dash, open_dashboard, text
from tests.support.lifecycle_support import MailSink
from tests.support.supervisor_harness import SupervisorProcess, wait_until

PAGE = "pages/dashboard/admin_settings.py"


def sources(at: AppTest) -> dict[str, tuple[str, str]]:
    frame = at.dataframe[0].value  # the settings table comes before the live history
    return {row["Setting"]: (row["Value"], row["From"]) for _, row in frame.iterrows()}


def save(at: AppTest) -> AppTest:
    [button] = [b for b in at.button if b.label == "Save changes"]
    return button.click().run()


def test_change_validate_and_undo_on_the_page(dash: Dash) -> None:
    at = open_dashboard(dash.admin, PAGE)
    assert not at.exception, at.exception
    at.text_input(key="live_smtp_host").input("mail.example.org")
    at.number_input(key="live_smtp_port").set_value(2525)
    at = save(at)
    assert not at.exception, at.exception
    assert "Saved smtp_host, smtp_port" in text(at), text(at)
    value, source = sources(at)["smtp_host"]
    assert value == "mail.example.org" and source.startswith("changed live by admin at ")
    assert open_context().settings.smtp_host == ""  # the environment is unchanged...
    other = open_context()
    setting_overrides.refresh(other)
    assert other.settings.smtp_port == 2525  # ...and another process sees the change

    at.text_input(key="live_support_url").input("help.example.org")
    at = save(at)
    assert "support_url: 'help.example.org' is not a web address; enter one starting with " \
        "https://" in text(at), text(at)
    assert sources(at)["support_url"] == ("", "default")

    at.selectbox(key="undo_pick").set_value("smtp_host")
    at = at.button(key="undo_live").click().run()
    assert "smtp_host is back to the value it started with" in text(at)
    assert sources(at)["smtp_host"] == ("", "default")
    assert at.text_input(key="live_smtp_host").value == ""


def test_a_running_supervisor_picks_up_live_changes(settings: Settings,
                                                    tmp_path: Path) -> None:
    ctx = open_context(settings)
    sink = MailSink().start()
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        auth.ensure_first_admin(ctx)
        admin = auth.get_user(ctx, settings.admin_username)
        setting_overrides.change_many(ctx, admin, {
            "hibernate_after_days": "9", "smtp_host": "127.0.0.1", "smtp_port": sink.port,
            "smtp_tls": "none"})
        log = tmp_path / "supervisor.log"
        wait_until(lambda: "applied: hibernate_after_days smtp_host smtp_port smtp_tls"
                   in log.read_text(), 30, "the supervisor never applied the live settings")
        settings_view.queue_test_email(ctx, admin, "ops@example.org")
        wait_until(lambda: sink.matching("Test email from"), 60,
                   "the test email never reached the SMTP server the supervisor was told of")
    finally:
        sup.stop()
        sink.stop()
