"""The Settings page's Sleep tab under AppTest, on the real Home.py: the policy and when the
app next sleeps are shown; a developer sets an idle period (refused below the server's
bound, with the bound in the message), a schedule and wake_on_visit; a viewer reads it
without the form; App details shows the same one line, My apps a few words per row."""

from __future__ import annotations

from datetime import time

from backend.apps import sleep_settings
from backend.apps.sleep_policy import Policy
from pages.dashboard import _sleep as sleep_view
from pages.dashboard import _ui as ui
from tests.support.dashboard import (
    Dash,
    add_member,
    button_keys,
    click,
    deploy,
    move,
    open_dashboard,
    open_settings,
    text,
)


def test_sleep_tab_sets_idle_schedule_and_wake_on_visit(dash: Dash) -> None:
    app = deploy(dash, "sleepy")
    at = open_settings(dash, app)
    assert "The server's default (asleep after 7 days without a viewer)" in text(at)
    at.radio(key="new_sleep_kind").set_value("idle").run()
    at.number_input(key="new_sleep_amount").set_value(2.0).run()
    at.selectbox(key="new_sleep_unit").set_value("minutes").run()
    click(at, "save_sleep")
    assert any("shortest idle period this server allows is 5 minutes" in e.value
               for e in at.error)
    assert sleep_settings.get_policy(dash.ctx, dash.admin, app.id).kind == "default"

    at.selectbox(key="new_sleep_unit").set_value("hours").run()
    at.checkbox(key="new_sleep_wake").check().run()
    click(at, "save_sleep")
    assert not at.error
    saved = sleep_settings.get_policy(dash.ctx, dash.admin, app.id)
    assert (saved.policy, saved.wake_on_visit) == ("idle 2h", True)
    assert any("Saved: asleep after 2 hours without a viewer" in s.value for s in at.success)

    at.radio(key="new_sleep_kind").set_value("schedule").run()
    at.multiselect(key="new_sleep_days").set_value([]).run()
    click(at, "save_sleep")
    assert any("needs at least one weekday" in e.value for e in at.error)
    at.multiselect(key="new_sleep_days").set_value(["Sat", "Sun"]).run()
    at.time_input(key="new_sleep_start").set_value(time(9, 30)).run()
    at.time_input(key="new_sleep_end").set_value(time(0, 0)).run()
    at.selectbox(key="new_sleep_zone").set_value("Europe/Berlin").run()
    click(at, "save_sleep")
    assert not at.error
    assert sleep_settings.get_policy(dash.ctx, dash.admin, app.id).policy == \
        "schedule sat-sun 09:30-24:00 Europe/Berlin"
    assert "Awake Sat–Sun 09:30–24:00 (Europe/Berlin)" in text(open_settings(dash, app))

    details = open_dashboard(dash.admin, ui.APP, {"app": str(app.id)})
    assert "Sleep:" in text(details) and "Awake Sat–Sun" in text(details)


def test_a_viewer_reads_the_policy_without_the_form(dash: Dash) -> None:
    app = deploy(dash, "looked-at")
    sleep_settings.set_policy(dash.ctx, dash.admin, app.id, "never")
    viewer = add_member(dash.ctx, "watcher", app.workspace, "viewer")
    at = open_settings(dash, app, viewer)
    assert "Never sleeps; a visit shows a button that wakes it" in text(at)
    assert "Developers of this app's workspace can change it." in text(at)
    assert "save_sleep" not in button_keys(at)


def test_summary_line_words() -> None:
    view = sleep_settings.SleepPolicyView(
        app_id=1, kind="idle", policy="idle 1d", wake_on_visit=True,
        description="asleep after 1 day without a viewer", state="running",
        next_sleep_at=None, next_sleep="stays awake", can_manage=True)
    assert sleep_view.summary(view) == ("Asleep after 1 day without a viewer; a visit wakes it "
                                        "by itself. Now: stays awake.")
    assert Policy().kind == "default"


def test_my_apps_says_when_each_app_sleeps(dash: Dash) -> None:
    idle, always, asleep = (deploy(dash, n) for n in ("two-hours", "always", "asleep"))
    for app in (idle, always, asleep):
        move(dash.ctx, app.id, "building", "starting", "running")
    move(dash.ctx, asleep.id, "sleeping")
    sleep_settings.set_policy(dash.ctx, dash.admin, idle.id, "idle 2h")
    sleep_settings.set_policy(dash.ctx, dash.admin, always.id, "never")
    sleep_settings.set_policy(dash.ctx, dash.admin, asleep.id, "idle 1d", wake_on_visit=True)
    at = open_dashboard(dash.admin)
    captions = [c.value for c in at.caption]
    assert "💤 sleeps in 2 h" in captions and "always on" in captions
    assert "💤 asleep, a visit wakes it" in captions
