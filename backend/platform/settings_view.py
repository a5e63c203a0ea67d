"""Every setting with its effective value and where that value came from, for the admin
Settings page. Secrets (`SECRET_SETTINGS`) are never returned: only whether one is set.

The sources, lowest to highest precedence, as `settings_load.load_settings` applies them: the
built-in default, the TOML file (`STCLOUD_CONFIG`, else `<data_dir>/config.toml`), the
environment (`STCLOUD_<NAME>`; `DATABASE_URL` for the database). A value that differs from
what those give was set by the process that started the platform (an override).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from backend.apps.sharing import validate_email
from backend.context import Context
from backend.errors import PermissionDenied, ValidationError
from backend.platform import setting_overrides
from backend.platform.settings import ENV_PREFIX, SECRET_SETTINGS, Settings
from backend.platform.settings_load import setting_help
from backend.platform.supervisor_report import wake_supervisor
from models import EmailOutbox, User, session_scope

OPERATOR_ENV = "STCLOUD__OPERATOR_ENV"  # not a setting: see child_env


@dataclass(frozen=True)
class SettingRow:
    name: str
    value: str  # "(set, hidden)" / "(not set)" for a secret
    source: str  # default, file <path>, environment <VARIABLE>, or set at start
    help: str


def config_file(env: dict[str, str]) -> Path | None:
    """The TOML file `load_settings` reads for `env`, when there is one."""
    named = env.get(ENV_PREFIX + "CONFIG")
    if named:
        return Path(named)
    base = Path(env.get(ENV_PREFIX + "DATA_DIR") or Settings.data_dir)
    candidate = base / "config.toml"
    return candidate if candidate.exists() else None


def child_env(settings: Settings, parent: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process (the dashboard) that reproduces `settings`: the
    parent's (the process environment by default) plus every setting as STCLOUD_<NAME>, and
    `OPERATOR_ENV` naming the variables the operator really set, so that the child's
    Server settings page still tells the environment from the file and the defaults."""
    parent = dict(os.environ if parent is None else parent)
    operator = parent.get(OPERATOR_ENV)
    if operator is None:
        operator = ",".join(sorted(k for k in parent
                                   if k.startswith(ENV_PREFIX) or k == "DATABASE_URL"))
    return {**parent, **settings.to_env(), OPERATOR_ENV: operator}


def _source(name: str, env: dict[str, str], from_file: dict[str, object],
            file: Path | None) -> str:
    variable = ENV_PREFIX + name.upper()
    operator = env.get(OPERATOR_ENV)
    real = set(operator.split(",")) if operator is not None else set(env)
    if variable in env and variable in real:
        return f"environment {variable}"
    if name == "database_url" and env.get("DATABASE_URL") and "DATABASE_URL" in real:
        return "environment DATABASE_URL"
    if name in from_file:
        return f"file {file}"
    return "default"


def describe(settings: Settings, env: dict[str, str] | None = None,
             live: dict[str, str] | None = None) -> list[SettingRow]:
    """The rows for `settings` as loaded from `env` (the process environment by default);
    `live` names the source of the settings changed live (setting_overrides.live_sources)."""
    env = dict(os.environ if env is None else env)
    file = config_file(env)
    from_file: dict[str, object] = {}
    if file is not None and file.is_file():
        with open(file, "rb") as fh:
            from_file = tomllib.load(fh)
    helps = setting_help()
    defaults = Settings()
    rows = []
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        source = (live or {}).get(f.name) or _source(f.name, env, from_file, file)
        if source == "default" and value != getattr(defaults, f.name):
            source = "set at start"
        if f.name in SECRET_SETTINGS:
            shown = "(set, hidden)" if value else "(not set)"
        else:
            shown = "" if value is None else str(value)
        rows.append(SettingRow(f.name, shown, source, helps[f.name]))
    return rows


def settings_for_admin(ctx: Context, user: User) -> list[SettingRow]:
    """`describe` of the running settings, for site admins only."""
    if not user.is_admin:
        raise PermissionDenied("Only a server administrator can see the server's settings.")
    setting_overrides.refresh(ctx)
    return describe(ctx.settings, live=setting_overrides.live_sources(ctx))


def queue_test_email(ctx: Context, user: User, to_addr: str) -> None:
    """Put a test message to `to_addr` in the outbox (site admins); the supervisor's mailer
    sends it through the configured SMTP server within `email_interval` seconds, and the
    outbox (Status page) records whether it went."""
    if not user.is_admin:
        raise PermissionDenied("Only a server administrator can send a test email.")
    if not ctx.settings.smtp_host:
        raise ValidationError("smtp_host", "No SMTP server is configured (smtp_host): set "
                              "the SMTP host under Change live (or STCLOUD_SMTP_HOST, or "
                              "smtp_host in the settings file, and restart), then send the "
                              "test again.")
    to_addr = validate_email(to_addr)
    with session_scope(ctx.engine) as s:
        s.add(EmailOutbox(kind="test", to_addr=to_addr,
                          subject=f"Test email from {ctx.settings.public_url()}",
                          body_text=f"{user.username} sent this test from the Server settings "
                          f"page. SMTP server: {ctx.settings.smtp_host}:"
                          f"{ctx.settings.smtp_port}. If you read this, email works.\n"))
    wake_supervisor(ctx)
