"""Loading the settings: defaults, then the TOML file, the environment and overrides
(`backend.platform.settings` holds the table itself), each value coerced to its field's type
and the whole checked before any process acts on it."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

from backend.platform.settings import ENV_PREFIX, Settings


def setting_help() -> dict[str, str]:
    """name -> help text, for documentation and its test."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(Settings)}


def _coerce(kind: Any, raw: Any, name: str) -> Any:
    text = str(raw)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind in (Path, Path | None):
            return Path(text).expanduser() if text else None
        return text
    except ValueError:
        raise ValueError(f"Setting {name!r} has an invalid value {text!r}; "
                         f"expected {getattr(kind, '__name__', kind)}.") from None


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from defaults, the TOML file, the environment and overrides."""
    env = dict(os.environ if env is None else env)
    hints = get_type_hints(Settings)
    names = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    data_dir = env.get(ENV_PREFIX + "DATA_DIR") or overrides.get("data_dir")
    config_file = env.get(ENV_PREFIX + "CONFIG")
    if not config_file:
        base = Path(data_dir) if data_dir else Settings.data_dir
        candidate = Path(base) / "config.toml"
        config_file = str(candidate) if candidate.exists() else ""
    if config_file:
        with open(config_file, "rb") as fh:
            for key, raw in tomllib.load(fh).items():
                if key not in names:
                    raise ValueError(f"Unknown setting {key!r} in {config_file}.")
                values[key] = _coerce(hints[key], raw, key)
    if env.get("DATABASE_URL"):
        values["database_url"] = env["DATABASE_URL"]
    for name in names:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _coerce(hints[name], raw, name)
    for name, raw in overrides.items():
        values[name] = _coerce(hints[name], raw, name) if isinstance(raw, str) else raw
    return check_settings(Settings(**values))


def coerce_setting(name: str, raw: Any) -> Any:
    """`raw` (text from a file, the environment or a form; or a value) as setting `name`'s
    type, or ValueError saying what was expected."""
    return _coerce(get_type_hints(Settings)[name], raw, name)


def check_settings(settings: Settings) -> Settings:
    """`settings` when its values are ones the platform accepts, else ValueError."""
    if settings.runtime not in {"auto", "docker", "swarm", "process"}:
        raise ValueError(f"Setting 'runtime' must be auto, docker, swarm or process, "
                         f"not {settings.runtime!r}.")
    if settings.env_sharing not in {"installation", "workspace"}:
        raise ValueError(f"Setting 'env_sharing' must be installation or workspace, "
                         f"not {settings.env_sharing!r}.")
    if settings.sleep_default_policy.strip():
        from backend.apps import sleep_policy  # its rules import nothing of the platform
        from backend.errors import ValidationError
        try:
            sleep_policy.validate(sleep_policy.parse(settings.sleep_default_policy), settings)
        except ValidationError as e:
            raise ValueError(f"Setting 'sleep_default_policy': {e.message}") from None
    return settings
