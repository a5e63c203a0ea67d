"""Sleep policy rules with a fake clock (every function takes `now`): the text form, the
operator's bounds, when each kind goes to sleep, the warning, and schedule windows across
DST changes (Europe/Berlin: clocks go forward on 2026-03-29 and back on 2026-10-25)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from backend.apps import sleep_policy as sp
from backend.errors import ValidationError
from backend.platform.settings import Settings

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday
OFFICE = sp.parse("schedule mon-fri 08:00-18:00 Europe/Berlin")


def settings(**kw: Any) -> Settings:
    return dataclasses.replace(Settings(), **kw)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_text_form_round_trips() -> None:
    for text in ("default", "never", "idle 90m", "idle 12h", "idle 7d", "idle 1.5m",
                 "schedule mon-fri 08:00-18:00 Europe/Berlin", "schedule daily 00:00-24:00 UTC",
                 "schedule mon,wed,fri 09:30-17:15 America/New_York"):
        assert sp.spec(sp.parse(text)) == text
    assert sp.parse("idle 45").idle_minutes == 45
    assert sp.parse("IDLE 2h", wake_on_visit=True) == sp.Policy("idle", 120,
                                                                 wake_on_visit=True)
    assert sp.parse("schedule fri-mon 08:00-09:00 UTC").days == (0, 4, 5, 6)
    assert OFFICE.days == (0, 1, 2, 3, 4) and (OFFICE.start_minute, OFFICE.end_minute) == \
        (480, 1080)


@pytest.mark.parametrize(("text", "says"), [
    ("sometimes", "Write one of: default, never, idle 90m"),
    ("idle soon", "write minutes, hours or days"),
    ("idle 0m", "longer than zero"),
    ("idle 99999999999999d", "at most 365 days"),
    ("schedule someday 08:00-18:00 UTC", "are not weekdays"),
    ("schedule mon-fri 8-18 UTC", "write them as 08:00-18:00"),
    ("schedule mon-fri 18:00-08:00 UTC", "end before they start"),
    ("schedule mon-fri 08:00-25:00 UTC", "hours go from 00:00 to 24:00"),
    ("schedule mon-fri 08:00-18:00 Mars/Olympus", "not a time zone"),
    ("schedule mon-fri 08:00-18:00 America", "not a time zone"),  # a directory of zones
    ("schedule mon-fri 08:00-18:00 ../../etc/passwd", "not a time zone"),
])
def test_parse_errors_say_how_to_write_it(text: str, says: str) -> None:
    with pytest.raises(ValidationError) as e:
        sp.parse(text)
    assert says in str(e.value) and e.value.field == "policy"


def test_bounds_refuse_with_the_bound_in_the_message() -> None:
    strict = settings(sleep_min_idle_minutes=30.0, sleep_never_allowed=False)
    with pytest.raises(ValidationError, match="shortest idle period this server allows is "
                       "30 minutes; choose 30 minutes or more"):
        sp.validate(sp.parse("idle 10m"), strict)
    assert sp.validate(sp.parse("idle 30m"), strict).idle_minutes == 30
    with pytest.raises(ValidationError, match="does not allow apps that never sleep"):
        sp.validate(sp.parse("never"), strict)
    assert sp.validate(sp.parse("never"), settings()).kind == "never"
    with pytest.raises(ValidationError, match="at least one weekday"):
        sp.validate(dataclasses.replace(OFFICE, days=()), strict)
    with pytest.raises(ValidationError, match="not a kind"):
        sp.validate(sp.Policy("sometimes"), strict)


def test_default_is_community_clouds_unless_the_operator_sets_one() -> None:
    s = settings()
    assert sp.effective(sp.Policy(), s) == sp.INSTALLATION
    assert sp.sleep_at(sp.Policy(), s, T0, T0) == T0 + timedelta(days=7)
    assert sp.sleep_at(sp.Policy(), s, T0, T0, private=True) is None  # private apps: never
    assert sp.sleep_at(sp.Policy(), settings(hibernate_private_apps=True), T0, T0,
                       private=True) == T0 + timedelta(days=7)
    assert sp.sleep_at(sp.Policy(), settings(hibernate_after_days=0), T0, T0) is None
    assert sp.warn_at(sp.Policy(), s, T0, T0 + timedelta(days=7)) == T0 + timedelta(days=5)
    assert "asleep after 7 days" in sp.describe(sp.Policy(), s)
    twelve = settings(sleep_default_policy="idle 12h")
    assert sp.effective(sp.Policy(wake_on_visit=True), twelve) == \
        sp.Policy("idle", 720, wake_on_visit=True)
    assert sp.sleep_at(sp.Policy(), twelve, T0, T0, private=True) == T0 + timedelta(hours=12)
    assert sp.describe(sp.Policy(), twelve) == \
        "the server's default (asleep after 12 hours without a viewer)"


def test_idle_and_never() -> None:
    s = settings()
    minute = sp.parse("idle 1m")
    assert sp.sleep_at(minute, s, T0, T0) == T0 + timedelta(minutes=1)
    assert sp.warn_at(minute, s, T0, T0 + timedelta(minutes=1)) is None  # too short to warn
    week = sp.parse("idle 7d")
    assert sp.warn_at(week, s, T0, T0 + timedelta(days=7)) == T0 + timedelta(days=6)
    assert sp.sleep_at(sp.parse("never"), s, T0, T0 + timedelta(days=999)) is None
    assert sp.describe(sp.parse("never"), s) == "never sleeps"


def test_schedule_sleeps_outside_its_hours_and_wakes_at_their_start() -> None:
    s = settings()
    # Monday 7 December, Berlin is UTC+1: awake 07:00-17:00 UTC.
    assert sp.window_at(OFFICE, utc(2026, 12, 7, 12)) == (utc(2026, 12, 7, 7),
                                                          utc(2026, 12, 7, 17))
    # Inside the hours: asleep at their end, or later if it was viewed within the grace.
    assert sp.sleep_at(OFFICE, s, T0 - timedelta(days=3), T0) == utc(2026, 12, 7, 17)
    late_view = utc(2026, 12, 7, 16, 55)
    assert sp.sleep_at(OFFICE, s, late_view, utc(2026, 12, 7, 16, 56)) == \
        late_view + sp.SCHEDULE_GRACE
    # Outside (Saturday): a visit woke it; asleep again after the grace without a view.
    saturday = utc(2026, 12, 12, 10)
    assert sp.window_at(OFFICE, saturday) is None
    assert sp.sleep_at(OFFICE, s, saturday, saturday) == saturday + sp.SCHEDULE_GRACE
    assert sp.next_window(OFFICE, saturday) == (utc(2026, 12, 14, 7), utc(2026, 12, 14, 17))
    # Woken once per window: at Monday 07:00 UTC, not again after that.
    monday = utc(2026, 12, 14, 7, 1)
    assert sp.scheduled_wake(OFFICE, s, saturday, None) is None
    assert sp.scheduled_wake(OFFICE, s, monday, utc(2026, 12, 11, 7)) == utc(2026, 12, 14, 7)
    assert sp.scheduled_wake(OFFICE, s, monday, utc(2026, 12, 14, 7)) is None
    assert sp.scheduled_wake(sp.parse("never"), s, monday, None) is None


def test_schedule_windows_keep_local_hours_across_dst() -> None:
    # Friday 27 March: UTC+1; Monday 30 March: UTC+2 (clocks went forward on Sunday).
    assert sp.window_at(OFFICE, utc(2026, 3, 27, 12)) == (utc(2026, 3, 27, 7),
                                                          utc(2026, 3, 27, 17))
    assert sp.next_window(OFFICE, utc(2026, 3, 28, 12)) == (utc(2026, 3, 30, 6),
                                                            utc(2026, 3, 30, 16))
    assert sp.window_at(OFFICE, utc(2026, 3, 30, 16, 30)) is None  # 18:30 in Berlin
    # Back on Sunday 25 October: Monday 26 is UTC+1 again.
    assert sp.window_at(OFFICE, utc(2026, 10, 23, 6, 30)) == (utc(2026, 10, 23, 6),
                                                              utc(2026, 10, 23, 16))
    assert sp.window_at(OFFICE, utc(2026, 10, 26, 6, 30)) is None  # 07:30 in Berlin
    # A night window over the change lasts an hour less in spring, one more in autumn.
    night = sp.parse("schedule daily 01:00-04:00 Europe/Berlin")
    spring = sp.window_at(night, utc(2026, 3, 29, 0, 30))
    autumn = sp.window_at(night, utc(2026, 10, 25, 0, 30))
    assert spring and spring[1] - spring[0] == timedelta(hours=2)
    assert autumn and autumn[1] - autumn[0] == timedelta(hours=4)
    # A start in the spring-forward gap (02:30 does not exist) reads as 03:30 new time.
    gap = sp.parse("schedule sun 02:30-05:00 Europe/Berlin")
    assert sp.window_at(gap, utc(2026, 3, 29, 1, 45)) == (utc(2026, 3, 29, 1, 30),
                                                          utc(2026, 3, 29, 3))
    # Until 24:00 ends at the next local midnight.
    late = sp.parse("schedule mon 20:00-24:00 Europe/Berlin")
    assert sp.window_at(late, utc(2026, 12, 7, 22, 59)) == (utc(2026, 12, 7, 19),
                                                            utc(2026, 12, 7, 23))


def test_idle_since_is_the_newest_view_or_deploy() -> None:
    app = SimpleNamespace(created_at=datetime(2026, 1, 1), last_viewed_at=None,
                          last_deployed_at=None)
    assert sp.idle_since(app) == utc(2026, 1, 1)  # naive times are UTC
    app.last_deployed_at, app.last_viewed_at = utc(2026, 1, 3), utc(2026, 1, 2)
    assert sp.idle_since(app) == utc(2026, 1, 3)


def test_a_default_policy_out_of_bounds_is_refused_at_start() -> None:
    from backend.platform.settings_load import load_settings
    assert load_settings(env={}, sleep_default_policy="idle 12h").sleep_default_policy
    with pytest.raises(ValueError, match="'sleep_default_policy': The shortest idle period"):
        load_settings(env={}, sleep_default_policy="idle 1m")
    with pytest.raises(ValueError, match="is not a sleep policy"):
        load_settings(env={"STCLOUD_SLEEP_DEFAULT_POLICY": "sometimes"})


WORDS = st.sampled_from(["default", "never", "idle", "schedule", "mon-fri", "sun-tue", "daily",
                         "08:00-18:00", "24:00-25:00", "90m", "0", "1e9", "9999999999d",
                         "UTC", "America", "Europe/Berlin", "../x", "mon,,fri", "-", ""])


@hypothesis_settings(max_examples=300, derandomize=True, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(WORDS, max_size=5).map(" ".join)))
def test_any_text_is_a_policy_or_a_validation_error(text: str) -> None:
    try:
        policy = sp.validate(sp.parse(text), settings())
    except ValidationError as e:
        assert e.field == "policy" and e.message
        return
    assert sp.parse(sp.spec(policy)) == policy  # what is stored reads back the same
