"""Models: migrations build the schema the tables declare, keep data across re-runs, and
SQLite runs in WAL mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel, select

from models import App, AppEvent, Workspace, make_engine, migrate, session_scope


def test_migrations_match_the_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"tables changed without a migration in models/migrations: {diff}"


def test_migrations_match_the_tables_on_postgresql(
        new_postgres_database: Callable[[], str]) -> None:
    engine = make_engine(new_postgres_database())  # migrated by the template
    migrate(engine)  # at head already: a no-op that must not fail
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"PostgreSQL schema differs from the tables: {diff}"


def test_migrate_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    migrate(engine)
    with session_scope(engine) as s:
        ws = Workspace(name="team")
        s.add(ws)
        s.flush()
        s.add(App(workspace_id=ws.id, subdomain="kept", repo_url="/r/team/x"))
    engine.dispose()
    again = make_engine(url)
    migrate(again)
    with session_scope(again) as s:
        assert s.exec(select(App.subdomain)).all() == ["kept"]
        assert s.exec(text("PRAGMA journal_mode")).one()[0] == "wal"  # type: ignore[call-overload]  # raw SQL


def test_times_are_utc_aware(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    with session_scope(engine) as s:
        s.add(AppEvent(app_id=1, to_state="queued"))
    with session_scope(engine) as s:
        event = s.exec(select(AppEvent)).one()
        assert event.time.utcoffset() is not None and event.time.utcoffset().total_seconds() == 0
