"""Settings changed live on the Server settings page, over the defaults, the file and the
environment (`backend.platform.settings`), without a restart.

Only the settings in `LIVE` can change while the platform runs: ones every reader takes
afresh on each use (email, links, sleep rules, the default memory limit and its warning).
Keys, paths, the database, the runtime and ports are read once at start and stay where they
came from.

A change is validated as the settings table says (the same coercion and checks as
`load_settings`, and each live setting's own bounds), stored as a `SettingOverride` row and
recorded as a `SettingChange` row (who, when, old and new value). A secret (`smtp_password`)
is stored sealed under the server key (`backend.accounts.sealing`) and its changes are
recorded as "(hidden)": its value is in no row, no log line and no page. The highest change id is
the live settings' version: `refresh(ctx)` compares it with the one the context applied (one
cheap query) and, when it moved, swaps `ctx.settings` for the base settings overlaid by the
current overrides. The dashboard refreshes on every page run, the supervisor and the
standalone proxy on every pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from backend.accounts import sealing
from backend.apps.settings import MAX_MEMORY_MB, MIN_MEMORY_MB
from backend.apps.sharing import validate_email
from backend.context import Context
from backend.errors import BackendError, PermissionDenied, ValidationError
from backend.platform.settings import SECRET_SETTINGS, Settings
from backend.platform.settings_load import check_settings, coerce_setting, setting_help
from backend.platform.supervisor_report import wake_supervisor
from models import User, session_scope, utcnow
from models.setting_overrides import SettingChange, SettingOverride

log = logging.getLogger("backend.platform.setting_overrides")

LIVE = ("smtp_host", "smtp_port", "smtp_tls", "smtp_user", "smtp_password", "smtp_from",
        "support_url",
        "docs_url", "hibernate_after_days", "hibernate_warn_after_days",
        "hibernate_private_apps", "memory_limit_mb", "sleep_default_policy",
        "sleep_min_idle_minutes", "sleep_never_allowed", "sleep_never_max_per_workspace",
        "memory_warning_percent", "memory_warning_minutes")
HIDDEN = json.dumps("(hidden)")  # what the history records of a secret's values
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


@dataclass(frozen=True)
class LiveChange:
    name: str
    old: str  # "" when the setting had no live value before (file, environment, default)
    new: str  # "" when the change put it back to that value
    changed_by: str
    changed_at: datetime


# Validation -------------------------------------------------------------------------------
def _check_value(name: str, value: Any) -> None:
    """Each live setting's own bounds; ValidationError saying what to enter instead."""
    def bad(message: str) -> ValidationError:
        return ValidationError(name, f"{name}: {message}")

    if name == "smtp_host" and value and not HOST_RE.match(value):
        raise bad(f"{value!r} is not a host name or address; enter one such as "
                  "smtp.example.org or 127.0.0.1 (no scheme, no port), or leave it empty "
                  "to keep emails in the outbox.")
    if name == "smtp_port" and not 0 <= value <= 65535:
        raise bad(f"{value} is not a port; enter 1 to 65535, or 0 for the TLS mode's "
                  "usual port.")
    if name == "smtp_tls" and value not in ("starttls", "ssl", "none"):
        raise bad(f"{value!r} is not a TLS mode; enter starttls, ssl or none.")
    if name == "smtp_from" and value:
        try:
            validate_email(value)
        except ValidationError:
            raise bad(f"{value!r} is not an email address; enter one such as "
                      "cloud@example.org, or leave it empty for noreply@<domain>.") from None
    if name in ("support_url", "docs_url") and (value or name == "docs_url") \
            and not URL_RE.match(value):
        raise bad(f"{value!r} is not a web address; enter one starting with https:// or "
                  "http://" + (", or leave it empty for no support link." if
                               name == "support_url" else "."))
    if name in ("hibernate_after_days", "hibernate_warn_after_days") \
            and not (math.isfinite(value) and 0 <= value <= 3650):
        raise bad(f"{value:g} is not a number of days; enter 0 to 3650 (0 turns it off).")
    if name == "sleep_min_idle_minutes" and not (math.isfinite(value) and 0 < value <= 525600):
        raise bad(f"{value:g} is not a number of minutes; enter more than 0, up to 525600 "
                  "(a year).")
    if name == "sleep_never_max_per_workspace" and value < 0:
        raise bad(f"{value} is not a number of apps; enter 0 (no cap) or more.")
    if name == "memory_warning_percent" and not (math.isfinite(value) and 0 <= value <= 100):
        raise bad(f"{value:g} is not a share of the limit; enter 0 to 100 percent (0 turns "
                  "the warning off).")
    if name == "memory_warning_minutes" and not (math.isfinite(value) and 0 < value <= 1440):
        raise bad(f"{value:g} is not a number of minutes; enter more than 0, up to 1440.")
    if name == "memory_limit_mb" and not MIN_MEMORY_MB <= value <= MAX_MEMORY_MB:
        raise bad(f"{value} MiB is outside {MIN_MEMORY_MB} to {MAX_MEMORY_MB} MiB.")


def _field(names: list[str], *preferred: str) -> str:
    """The field a combined refusal belongs to: the first of `preferred` being changed,
    else the first setting being changed."""
    return next((n for n in preferred if n in names), names[0] if names else "")


def _check_together(settings: Settings, names: list[str]) -> None:
    warn, sleep = settings.hibernate_warn_after_days, settings.hibernate_after_days
    if warn > 0 and sleep > 0 and warn >= sleep:
        name = _field(names, "hibernate_after_days", "hibernate_warn_after_days")
        raise ValidationError(name, f"{name}: the warning (hibernate_warn_after_days, "
                              f"{warn:g} days) must come before the sleep "
                              f"(hibernate_after_days, {sleep:g} days); lower the warning "
                              "first, or set it to 0 for no warning.")


def _value(name: str, raw: Any) -> Any:
    """`raw` as live setting `name`'s type within its bounds, or ValidationError."""
    if name not in setting_help():
        raise ValidationError(name, f"There is no setting {name!r}.")
    if name not in LIVE:
        raise ValidationError(name, f"{name} cannot be changed while the platform runs (it "
                              f"is read once at start): set it in the settings file or "
                              f"STCLOUD_{name.upper()} and restart the platform.")
    try:
        value = coerce_setting(name, raw.strip() if isinstance(raw, str) else raw)
    except ValueError as e:
        raise ValidationError(name, str(e)) from None
    _check_value(name, value)
    return value


def _checked(settings: Settings, names: list[str]) -> Settings:
    try:
        check_settings(settings)
    except ValueError as e:  # "Setting 'X': ...": under X, else a changed one of X's kind
        named = re.match(r"Setting '(\w+)'", str(e))
        kind = named.group(1) if named else ""
        raise ValidationError(_field(names, kind, *[n for n in names if kind and
                                                     n.split("_")[0] == kind.split("_")[0]]),
                              str(e)) from None
    _check_together(settings, names)
    return settings


def validate(current: Settings, name: str, raw: Any) -> Any:
    """`raw` as live setting `name`'s value with the others as in `current`, or
    ValidationError (unknown setting, one that cannot change live, a value of the wrong type
    or out of bounds, one that contradicts another setting) saying what to do."""
    value = _value(name, raw)
    _checked(dataclasses.replace(current, **{name: value}), [name])
    return value


# The overlay ------------------------------------------------------------------------------
def version(s: Session) -> int:
    """The live settings' version: the id of the latest change (0: none ever)."""
    return int(s.exec(select(func.max(SettingChange.id))).one() or 0)


def overlay(base: Settings, rows: list[SettingOverride],
            unseal: Callable[[str], str] | None = None) -> Settings:
    """`base` with the overrides' values; a secret's sealed value is opened with `unseal`
    (skipped without one). A row that is no longer valid (a setting taken off `LIVE`, a
    value a newer version refuses, a secret sealed under another key) is skipped and logged,
    never fatal; so are all of them when they contradict each other or the base."""
    values: dict[str, Any] = {}
    for row in rows:
        try:
            raw = json.loads(row.value_json)
            if isinstance(raw, dict) and "sealed" in raw:
                if unseal is None:
                    continue
                raw = unseal(str(raw["sealed"]))
            values[row.name] = _value(row.name, raw)
        except (ValidationError, ValueError, BackendError) as e:
            log.warning("live setting %s ignored: %s", row.name, e)
    try:
        return _checked(dataclasses.replace(base, **values), list(values))
    except ValidationError as e:
        log.warning("live settings ignored: %s", e)
        return base


def refresh(ctx: Context) -> bool:
    """Swap `ctx.settings` for the current live settings when they changed since the last
    refresh (one query when they did not). True when they changed."""
    with session_scope(ctx.engine) as s:
        seen = version(s)
        if seen == ctx.settings_version:
            return False
        rows = list(s.exec(select(SettingOverride)))  # read after the version: never older
    if ctx.base_settings is None:
        ctx.base_settings = ctx.settings
    ctx.settings = overlay(ctx.base_settings, rows, lambda token: sealing.unseal(
        ctx, token, "The SMTP password changed live"))
    ctx.settings_version = seen
    log.info("live settings version=%d applied: %s", seen,
             " ".join(sorted(r.name for r in rows)) or "none")
    return True


def refresh_or_keep(ctx: Context) -> bool:
    """`refresh` for loops that must go on: when the database cannot be read, the settings
    stay as they are (logged) and the next call tries again."""
    try:
        return refresh(ctx)
    except SQLAlchemyError:
        log.exception("live settings not refreshed; keeping the current ones")
        return False


# Changing ---------------------------------------------------------------------------------
def _require_admin(user: User) -> None:
    if not user.is_admin:
        raise PermissionDenied("Only a server administrator can change the server's "
                               "settings.")


def _store(ctx: Context, user: User, name: str, new: str) -> bool:
    """Record `name`'s live value as JSON `new` ("": none), audited; False when unchanged."""
    with session_scope(ctx.engine) as s:
        row = s.get(SettingOverride, name)
        old = row.value_json if row is not None else ""
        if old == new:
            return False
        if row is not None and not new:
            s.delete(row)
        elif new:
            row = row or SettingOverride(name=name, value_json=new, changed_by=user.username)
            row.value_json, row.changed_by, row.changed_at = new, user.username, utcnow()
            s.add(row)
        if name in SECRET_SETTINGS:
            old, new = old and HIDDEN, new and HIDDEN
        s.add(SettingChange(name=name, old_json=old, new_json=new, changed_by=user.username))
    log.info("setting %s changed live by %s: %s -> %s", name, user.username, old or "-",
             new or "-")
    refresh(ctx)
    wake_supervisor(ctx)
    return True


def change_many(ctx: Context, user: User, raws: dict[str, Any]) -> list[str]:
    """Set several live settings at once (site admins), checked together (so the sleep and
    the warning can move past each other in one go); a value equal to the one the platform
    started with removes the live value instead. Each is recorded as a `SettingChange`;
    every process picks them up on its next refresh (the supervisor is woken). Returns the
    names that changed; ValidationError for the first bad value, and then nothing changes."""
    _require_admin(user)
    refresh(ctx)
    values = {name: _value(name, raw) for name, raw in raws.items()}
    _checked(dataclasses.replace(ctx.settings, **values), list(values))
    base = ctx.base_settings or ctx.settings
    return [name for name, value in values.items()
            if _store(ctx, user, name, "" if value == getattr(base, name) else
                      _stored(ctx, name, value))]


def _stored(ctx: Context, name: str, value: Any) -> str:
    """The JSON a live value is kept as: sealed for a secret."""
    if name in SECRET_SETTINGS:
        return json.dumps({"sealed": sealing.seal(ctx, str(value))})
    return json.dumps(value)


def change(ctx: Context, user: User, name: str, raw: Any) -> bool:
    """`change_many` of one setting: True when it changed."""
    return bool(change_many(ctx, user, {name: raw}))


def reset(ctx: Context, user: User, name: str) -> bool:
    """Remove `name`'s live value (site admins): back to the file, environment or default."""
    _require_admin(user)
    return _store(ctx, user, name, "")


def live_sources(ctx: Context) -> dict[str, str]:
    """name -> "changed live by <user> at <time>" for every setting with a live value."""
    with session_scope(ctx.engine) as s:
        return {r.name: f"changed live by {r.changed_by} at "
                f"{r.changed_at:%Y-%m-%d %H:%M} UTC" for r in s.exec(select(SettingOverride))}


def history(ctx: Context, user: User, limit: int = 20) -> list[LiveChange]:
    """The latest live changes, newest first (site admins)."""
    _require_admin(user)
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(SettingChange).order_by(SettingChange.id.desc())  # type: ignore[union-attr]
                      .limit(limit))
        return [LiveChange(r.name, r.old_json, r.new_json, r.changed_by, r.changed_at)
                for r in rows]
