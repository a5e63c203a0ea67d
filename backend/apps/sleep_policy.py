"""Sleep policies: when an app goes to sleep, and what a visit to a sleeping app does.
Pure (no database, no clock: every function takes `now`); `backend.apps.sleep_settings`
stores them, `supervisor/control/hibernation.py` applies them.

Kinds, as the app's developers choose them within the operator's bounds:
- `default`: the installation's policy, the setting `sleep_default_policy`; when it is
  empty, Community Cloud's: asleep after `hibernate_after_days` without a view, public apps
  only unless `hibernate_private_apps`, with a warning email after
  `hibernate_warn_after_days`.
- `idle`: asleep after `idle_minutes` without a view (at least `sleep_min_idle_minutes`);
  periods of two days or more get the warning email a day before.
- `never`: always on (when `sleep_never_allowed`; `sleep_never_max_per_workspace` caps how
  many apps of a workspace may have it).
- `schedule`: awake on `days` from `start_minute` to `end_minute` (minutes after local
  midnight, end up to 24:00) in the IANA time zone `timezone`: the supervisor wakes the app
  at each window's start, and at its end the app goes to sleep once nobody viewed it for
  `SCHEDULE_GRACE`. Outside the hours a visit wakes it, and it sleeps again after
  `SCHEDULE_GRACE` without a view. Windows are local wall-clock times, so across a DST
  change a window keeps its hours and moves in UTC; a start in the spring-forward gap
  (02:30 that does not exist) is read with the offset before the change (03:30 new time).
`wake_on_visit`: a visit to the sleeping app wakes it by itself (the visitor sees the oven,
then the app); otherwise the visitor sees the sleeping page and its button.

The idle clock of an app (`idle_since`) starts at its last view or last deploy or push,
whichever is newer (its creation when it has neither).

Text form (CLI, API `policy`, the `sleep_default_policy` setting): `default`, `never`,
`idle 90m` / `idle 12h` / `idle 7d` (a bare number is minutes),
`schedule mon-fri 08:00-18:00 Europe/Berlin` (days: a range, a comma list, or `daily`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from backend.errors import ValidationError

KINDS = ("default", "idle", "never", "schedule")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCHEDULE_GRACE = timedelta(minutes=15)
MAX_IDLE_DAYS = 365
_UNITS = {"m": 1.0, "min": 1.0, "h": 60.0, "d": 1440.0}
FIELD = "policy"


@dataclass(frozen=True)
class Policy:
    """One app's policy (module docstring); `Policy()` is `default`."""

    kind: str = "default"
    idle_minutes: float = 0.0
    days: tuple[int, ...] = ()  # 0 is Monday
    start_minute: int = 0
    end_minute: int = 0
    timezone: str = "UTC"
    wake_on_visit: bool = False


INSTALLATION = Policy("default")  # what `default` resolves to without sleep_default_policy


def _refuse(message: str) -> ValidationError:
    return ValidationError(FIELD, message)


# Text form ----------------------------------------------------------------------------
def parse(text: str, wake_on_visit: bool = False) -> Policy:
    """The policy written as `text` (module docstring); ValidationError saying what is
    wrong and how to write it."""
    words = text.strip().split()
    kind = words[0].lower() if words else ""
    if kind in ("default", "never") and len(words) == 1:
        return Policy(kind, wake_on_visit=wake_on_visit)
    if kind == "idle" and len(words) == 2:
        return Policy("idle", idle_minutes=parse_duration(words[1]),
                      wake_on_visit=wake_on_visit)
    if kind == "schedule" and len(words) == 4:
        days = parse_days(words[1])
        start, end = parse_hours(words[2])
        zone = check_zone(words[3])
        return Policy("schedule", days=days, start_minute=start, end_minute=end,
                      timezone=zone, wake_on_visit=wake_on_visit)
    raise _refuse(f"'{text.strip()}' is not a sleep policy. Write one of: default, never, "
                  "idle 90m (or 12h, 7d), schedule mon-fri 08:00-18:00 Europe/Berlin.")


def parse_duration(text: str) -> float:
    """Minutes in `90m`, `12h`, `7d` or `45` (minutes)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(m|min|h|d)?", text.strip().lower())
    if not found:
        raise _refuse(f"'{text}' is not an idle period; write minutes, hours or days such "
                      "as 90m, 12h or 7d.")
    minutes = float(found[1]) * _UNITS[found[2] or "m"]
    if minutes <= 0:
        raise _refuse("An idle period is longer than zero; choose minutes, hours or days.")
    if minutes > MAX_IDLE_DAYS * 1440:
        raise _refuse(f"An idle period is at most {MAX_IDLE_DAYS} days; for an app that "
                      "should stay on, choose never.")
    return minutes


def parse_days(text: str) -> tuple[int, ...]:
    """Weekdays in `mon-fri`, `mon,wed,fri`, `sat-sun` or `daily`."""
    text = text.strip().lower()
    if text in ("daily", "every-day", "mon-sun"):
        return tuple(range(7))
    out: set[int] = set()
    for part in text.split(","):
        ends = part.split("-")
        if not 1 <= len(ends) <= 2 or any(e[:3] not in DAYS or len(e) < 3 for e in ends):
            raise _refuse(f"'{text}' are not weekdays; write e.g. mon-fri, mon,wed,fri or "
                          "daily.")
        first, last = DAYS.index(ends[0][:3]), DAYS.index(ends[-1][:3])
        out.update(range(first, last + 1) if first <= last else
                   [*range(first, 7), *range(0, last + 1)])
    return tuple(sorted(out))


def parse_hours(text: str) -> tuple[int, int]:
    """(start, end) minutes after midnight in `08:00-18:00`; end may be 24:00."""
    found = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", text.strip())
    if not found:
        raise _refuse(f"'{text}' are not hours; write them as 08:00-18:00.")
    sh, sm, eh, em = (int(g) for g in found.groups())
    start, end = sh * 60 + sm, eh * 60 + em
    if sh > 23 or sm > 59 or em > 59 or end > 1440:
        raise _refuse(f"'{text}' is not a time of day; hours go from 00:00 to 24:00.")
    if end <= start:
        raise _refuse(f"The awake hours {text} end before they start; write the start "
                      "first, e.g. 08:00-18:00 (hours past midnight are not supported: end "
                      "them at 24:00).")
    return start, end


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_zone(name: str) -> str:
    """`name` when it is an IANA time zone this machine knows (only names from its list: a
    path such as `America` or `../x` never reaches the zone files)."""
    try:
        if name not in _zones():
            raise ZoneInfoNotFoundError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _refuse(f"'{name[:64]}' is not a time zone; write an IANA name such as "
                      "Europe/Berlin, America/New_York or UTC.") from None
    return name


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _days_text(days: tuple[int, ...]) -> str:
    if days == tuple(range(7)):
        return "daily"
    if len(days) > 1 and days == tuple(range(days[0], days[-1] + 1)):
        return f"{DAYS[days[0]]}-{DAYS[days[-1]]}"
    return ",".join(DAYS[d] for d in days)


def duration_text(minutes: float, short: bool = True) -> str:
    for unit, size, word in (("d", 1440, "day"), ("h", 60, "hour")):
        if minutes >= size and minutes % size == 0:
            n = int(minutes // size)
            return f"{n}{unit}" if short else f"{n} {word}{'' if n == 1 else 's'}"
    text = f"{minutes:g}"
    return f"{text}m" if short else f"{text} minute{'' if minutes == 1 else 's'}"


def spec(p: Policy) -> str:
    """The text form of `p` (parse(spec(p)) == p, wake_on_visit aside)."""
    if p.kind == "idle":
        return f"idle {duration_text(p.idle_minutes)}"
    if p.kind == "schedule":
        return (f"schedule {_days_text(p.days)} {_hhmm(p.start_minute)}-"
                f"{_hhmm(p.end_minute)} {p.timezone}")
    return p.kind


def describe(p: Policy, settings: Any) -> str:
    """What `p` does, in a sentence for people (the dashboard, the warning email)."""
    if p.kind == "default":
        resolved = effective(p, settings)
        if resolved.kind != "default":
            return f"the server's default ({describe(resolved, settings)})"
        days = settings.hibernate_after_days
        if days <= 0:
            return "the server's default (never sleeps)"
        return (f"the server's default (asleep after {duration_text(days * 1440, False)} "
                "without a viewer)")
    if p.kind == "idle":
        return f"asleep after {duration_text(p.idle_minutes, False)} without a viewer"
    if p.kind == "never":
        return "never sleeps"
    days = _days_text(p.days).replace("-", "–").title()
    return (f"awake {days} {_hhmm(p.start_minute)}–{_hhmm(p.end_minute)} ({p.timezone}), "
            "asleep outside those hours")


# Bounds -------------------------------------------------------------------------------
def validate(p: Policy, settings: Any) -> Policy:
    """`p` when the operator's bounds allow it; else ValidationError naming the bound and
    what to do. (The cap on `never` per workspace needs the database:
    `backend.apps.sleep_settings`.)"""
    if p.kind not in KINDS:
        raise _refuse(f"'{p.kind}' is not a kind of sleep policy; choose one of "
                      f"{', '.join(KINDS)}.")
    if p.kind == "idle":
        low = settings.sleep_min_idle_minutes
        if p.idle_minutes < low:
            raise _refuse(f"The shortest idle period this server allows is "
                          f"{duration_text(low, False)}; choose {duration_text(low, False)} "
                          "or more (the server's administrators set this bound).")
    if p.kind == "never" and not settings.sleep_never_allowed:
        raise _refuse("This server does not allow apps that never sleep; choose an idle "
                      "period or a schedule, or ask an administrator.")
    if p.kind == "schedule":
        if not p.days:
            raise _refuse("A schedule needs at least one weekday; write e.g. mon-fri.")
        if not 0 <= p.start_minute < p.end_minute <= 1440:
            raise _refuse("A schedule's awake hours start before they end, between 00:00 "
                          "and 24:00; write them as 08:00-18:00.")
        check_zone(p.timezone)
    return p


def effective(p: Policy, settings: Any) -> Policy:
    """`p` with `default` resolved to the installation's `sleep_default_policy`
    (`INSTALLATION` when that is empty); `wake_on_visit` stays `p`'s."""
    if p.kind != "default" or not settings.sleep_default_policy.strip():
        return p
    resolved = parse(settings.sleep_default_policy)
    if resolved.kind == "default":
        return p
    return Policy(**{**resolved.__dict__, "wake_on_visit": p.wake_on_visit})


# Times --------------------------------------------------------------------------------
def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def idle_since(app: Any) -> datetime:
    """When the app's idle clock started: its last view or last deploy or push, whichever
    is newer; its creation when it has neither."""
    times = [t for t in (app.last_viewed_at, app.last_deployed_at) if t] or [app.created_at]
    return max(_aware(t) for t in times)


def windows(p: Policy, around: datetime) -> list[tuple[datetime, datetime]]:
    """The schedule's awake windows (UTC) from the day before `around` to 8 days after."""
    zone = ZoneInfo(p.timezone)
    day0 = _aware(around).astimezone(zone).date() - timedelta(days=1)
    out = []
    for n in range(10):
        day = day0 + timedelta(days=n)
        if day.weekday() not in p.days:
            continue
        start = datetime.combine(day, time(p.start_minute // 60, p.start_minute % 60), zone)
        end_day = day + timedelta(days=p.end_minute // 1440)
        end_min = p.end_minute % 1440
        end = datetime.combine(end_day, time(end_min // 60, end_min % 60), zone)
        out.append((start.astimezone(UTC), end.astimezone(UTC)))
    return out


def window_at(p: Policy, now: datetime) -> tuple[datetime, datetime] | None:
    """The awake window of a schedule that `now` is in, else None."""
    now = _aware(now)
    return next(((s, e) for s, e in windows(p, now) if s <= now < e), None)


def next_window(p: Policy, now: datetime) -> tuple[datetime, datetime] | None:
    """The first awake window of a schedule starting after `now`."""
    now = _aware(now)
    return next(((s, e) for s, e in windows(p, now) if s > now), None)


def sleep_at(p: Policy, settings: Any, since: datetime, now: datetime,
             private: bool = False) -> datetime | None:
    """When a running app with policy `p`, idle since `since`, goes to sleep (at or before
    `now`: it is due); None when it stays awake."""
    e = effective(p, settings)
    if e.kind == "default":
        if settings.hibernate_after_days <= 0 or (private and
                                                  not settings.hibernate_private_apps):
            return None
        return since + timedelta(days=settings.hibernate_after_days)
    if e.kind == "idle":
        return since + timedelta(minutes=e.idle_minutes)
    if e.kind == "schedule":
        window = window_at(e, now)
        after_grace = since + SCHEDULE_GRACE
        return max(window[1], after_grace) if window else after_grace
    return None


def warn_at(p: Policy, settings: Any, since: datetime, sleeps: datetime) -> datetime | None:
    """When the developers get the warning email before a sleep at `sleeps`: Community
    Cloud's day (`hibernate_warn_after_days`) for the installation's policy, a day before
    for idle periods of two days or more, never for shorter ones and schedules."""
    e = effective(p, settings)
    if e.kind == "default":
        if settings.hibernate_warn_after_days <= 0:
            return None
        at = since + timedelta(days=settings.hibernate_warn_after_days)
        return at if at < sleeps else None
    if e.kind == "idle" and e.idle_minutes >= 2 * 1440:
        return sleeps - timedelta(days=1)
    return None


def scheduled_wake(p: Policy, settings: Any, now: datetime,
                   last_wake: datetime | None) -> datetime | None:
    """The start of the window a sleeping app with a schedule should be woken for at
    `now` (once per window: not when `last_wake` is that start or later), else None."""
    e = effective(p, settings)
    if e.kind != "schedule":
        return None
    window = window_at(e, now)
    if window is None or (last_wake is not None and _aware(last_wake) >= window[0]):
        return None
    return window[0]
