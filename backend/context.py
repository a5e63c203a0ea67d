"""The context every service takes: settings plus the database engine."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from backend.platform.settings import Settings
from backend.platform.settings_load import load_settings
from models import make_engine, migrate


@dataclass(eq=False)
class Context:
    """`settings` are the effective ones: what the process started with (`base_settings`;
    None means `settings` itself) overlaid by the settings changed live on the Server
    settings page. `backend.platform.setting_overrides.refresh` swaps them in place when
    the live ones changed (`settings_version` is the change it last applied), so every
    holder of this context sees a change on its next read, without a restart."""

    settings: Settings
    engine: Engine
    base_settings: Settings | None = None
    settings_version: int = 0


def open_context(settings: Settings | None = None, run_migrations: bool = True) -> Context:
    """Settings from the environment (unless given), an engine, and the schema migrated."""
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if run_migrations:
        migrate(engine)
    return Context(settings=settings, engine=engine)
