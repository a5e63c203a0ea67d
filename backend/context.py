"""The context every service takes: settings plus the database engine."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from backend.platform.settings import Settings, load_settings
from models import make_engine, migrate


@dataclass(frozen=True)
class Context:
    settings: Settings
    engine: Engine


def open_context(settings: Settings | None = None, run_migrations: bool = True) -> Context:
    """Settings from the environment (unless given), an engine, and the schema migrated."""
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if run_migrations:
        migrate(engine)
    return Context(settings=settings, engine=engine)
