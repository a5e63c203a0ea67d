"""The app's sleep policy on the dashboard: the Settings page's Sleep tab (developers edit
it within the server's bounds; everyone else reads it) and the one-line summary other
pages show ("Sleep: asleep after 12 hours without a viewer; goes to sleep at …").

The form writes the policy's text form (`backend.apps.sleep_policy`) and hands it to
`backend.apps.sleep_settings.set_policy`, which checks the role and the bounds again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time
from typing import Any
from zoneinfo import available_timezones

import streamlit as st

from backend.apps import sleep_policy as sp
from backend.apps import sleep_settings
from backend.context import Context
from backend.errors import BackendError, ValidationError
from pages.dashboard import _ui as ui

ss = st.session_state
KIND_LABELS = {"default": "The server's default", "idle": "After a time without viewers",
               "never": "Never (always on)", "schedule": "On a weekly schedule"}
UNITS = {"minutes": 1, "hours": 60, "days": 1440}
DAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def summary(view: sleep_settings.SleepPolicyView) -> str:
    visits = "a visit wakes it by itself" if view.wake_on_visit else \
        "a visit shows a button that wakes it"
    said = view.description  # our own words (time zones are validated names): no escaping
    return f"{said[:1].upper()}{said[1:]}; {visits}. Now: {view.next_sleep}."


def sleep_fact(ctx: Context, user: Any, app_id: int) -> None:
    """One line: the app's policy and when it next sleeps (App details)."""
    try:
        view = sleep_settings.get_policy(ctx, user, app_id)
    except BackendError:
        return
    st.markdown(f"**Sleep:** {summary(view)}")


def _unit_of(minutes: float) -> tuple[float, str]:
    for unit in ("days", "hours"):
        if minutes >= UNITS[unit] and minutes % UNITS[unit] == 0:
            return minutes / UNITS[unit], unit
    return minutes, "minutes"


def _defaults(policy: sp.Policy) -> None:
    amount, unit = _unit_of(policy.idle_minutes or 720)
    ss.setdefault("new_sleep_kind", policy.kind)
    ss.setdefault("new_sleep_amount", float(amount))
    ss.setdefault("new_sleep_unit", unit)
    ss.setdefault("new_sleep_days", [DAY_LABELS[d] for d in policy.days or range(5)])
    start, end = (policy.start_minute, policy.end_minute) if policy.kind == "schedule" \
        else (480, 1080)
    ss.setdefault("new_sleep_start", time(start // 60, start % 60))
    ss.setdefault("new_sleep_end", time((end // 60) % 24, end % 60))
    ss.setdefault("new_sleep_zone", policy.timezone)
    ss.setdefault("new_sleep_wake", policy.wake_on_visit)


def policy_text() -> str:
    """The text form of what the form holds (ValidationError: a schedule without days)."""
    kind = ss["new_sleep_kind"]
    if kind == "idle":
        minutes = float(ss["new_sleep_amount"]) * UNITS[ss["new_sleep_unit"]]
        return f"idle {minutes:g}m"
    if kind == "schedule":
        days = ",".join(d.lower() for d in DAY_LABELS if d in ss["new_sleep_days"])
        if not days:
            raise ValidationError(sp.FIELD, "A schedule needs at least one weekday; choose "
                                  "them under Awake on.")
        start, end = ss["new_sleep_start"], ss["new_sleep_end"]
        end_text = "24:00" if end == time(0) else f"{end:%H:%M}"
        return f"schedule {days} {start:%H:%M}-{end_text} {ss['new_sleep_zone']}"
    return str(kind)


def bounds_caption(settings: Any) -> str:
    low = sp.duration_text(settings.sleep_min_idle_minutes, False)
    if not settings.sleep_never_allowed:
        never = "apps that never sleep are not allowed"
    elif settings.sleep_never_max_per_workspace > 0:
        never = f"at most {settings.sleep_never_max_per_workspace} app(s) per workspace " \
            "may never sleep"
    else:
        never = "apps may be always on"
    return f"On this server idle periods are at least {low}, and {never}."


def sleep_tab(ctx: Context, user: Any, app_id: int,
              run: Callable[[str, Any, Any], None], show: Callable[[str], None]) -> None:
    """The Settings page's Sleep tab; `run` and `show` are the page's form helpers."""
    st.markdown("#### Sleep policy")
    try:
        view = sleep_settings.get_policy(ctx, user, app_id)
    except BackendError as e:
        st.error(str(e), icon=ui.ICON["error"])
        return
    st.caption("A sleeping app keeps its code and environment and starts again in seconds. "
               "Sleeping apps use no memory.")
    st.markdown(summary(view))
    if not view.can_manage:
        st.caption("Developers of this app's workspace can change it.")
        return
    _defaults(sp.parse(view.policy, view.wake_on_visit))
    st.radio("When should the app go to sleep?", list(KIND_LABELS), key="new_sleep_kind",
             format_func=KIND_LABELS.__getitem__)
    kind = ss["new_sleep_kind"]
    if kind == "default":
        st.caption(f"Now: {sp.describe(sp.Policy(), ctx.settings)}.")
    elif kind == "idle":
        left, right = st.columns([1, 1], vertical_alignment="bottom")
        left.number_input("Without viewers for", min_value=0.0, step=1.0,
                          key="new_sleep_amount")
        right.selectbox("Unit", list(UNITS), key="new_sleep_unit")
    elif kind == "schedule":
        st.multiselect("Awake on", DAY_LABELS, key="new_sleep_days")
        left, mid, right = st.columns([1, 1, 2], vertical_alignment="bottom")
        left.time_input("From", key="new_sleep_start", step=900)
        mid.time_input("Until (00:00 is midnight)", key="new_sleep_end", step=900)
        zones = sorted(available_timezones())
        right.selectbox("Time zone", zones, key="new_sleep_zone")
        st.caption("Asleep outside these hours: the server wakes the app when they begin, "
                   "and a visit outside them wakes it until nobody has looked for "
                   f"{int(sp.SCHEDULE_GRACE.total_seconds() // 60)} minutes.")
    st.checkbox("A visit wakes the app by itself (visitors see the oven, then the app; "
                "off: they see the sleeping page and press \"Yes, get this app back up!\")",
                key="new_sleep_wake")
    st.caption(bounds_caption(ctx.settings))
    st.button("Save sleep policy", key="save_sleep", icon=ui.ICON["save"], on_click=run,
              args=("sleep", lambda: sleep_settings.set_policy(
                  ctx, user, app_id, policy_text(), bool(ss["new_sleep_wake"])),
                  lambda saved: f"Saved: {saved.description}; {saved.next_sleep}."))
    show("sleep")
