"""App ids are never reused: a new app never inherits a deleted app's events or builds, on
SQLite (AUTOINCREMENT, and a migration that rebuilds an existing table) and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, Table, inspect, text
from sqlmodel import SQLModel, select

from backend.accounts import auth
from backend.apps import service as apps
from backend.context import Context
from models import App, AppEvent, Build, User, Workspace, make_engine, session_scope
from models.engine import MIGRATIONS_DIR, migrate
from supervisor.builds import records as builds
from supervisor.control.lifecycle import Lifecycle
from tests import conftest as pg

PREVIOUS_HEAD = "0008"


class NothingRunning:
    """A runtime with no instances: deleting an app only has rows and files to remove."""

    name = "none"

    async def stop(self, app_id: int, state: dict[str, Any]) -> None:
        return None


def _deploy(ctx: Context, user: User, name: str) -> int:
    return apps.deploy_app(ctx, user, repo_url=f"/srv/git/team/{name}.git", subdomain=name).id


def test_a_new_app_never_takes_a_deleted_apps_id(db_ctx: Context) -> None:
    auth.ensure_first_admin(db_ctx)
    admin = auth.get_user(db_ctx, db_ctx.settings.admin_username)
    old = _deploy(db_ctx, admin, "first")
    with session_scope(db_ctx.engine) as s:
        s.add(Build(app_id=old, commit="c0ffee", status="failed", error="old app's build"))
    apps.delete_app(db_ctx, admin, old)
    asyncio.run(Lifecycle(db_ctx, NothingRunning()).delete(old))  # type: ignore[arg-type]  # stand-in

    new = _deploy(db_ctx, admin, "second")
    assert new != old
    reasons = [e.reason for e in apps.app_events(db_ctx, admin, new)]
    assert not any("Deleted" in r for r in reasons), f"the old app's events show: {reasons}"
    # The old app's failed build of c0ffee must not make polling skip that commit for the new one.
    assert not builds.commit_failed(db_ctx, new, "c0ffee")


def _upgrade(engine: Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def _schema(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    columns = insp.get_columns("app")
    return {"columns": [(c["name"], str(c["type"]), c["nullable"]) for c in columns],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in insp.get_indexes("app")),
            "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                    tuple(f["referred_columns"]))
                                   for f in insp.get_foreign_keys("app")),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints("app"))}


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM app ORDER BY id"))]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database (no migrations run yet)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        yield engine
        engine.dispose()
        return
    server: pg.TestPostgres = request.getfixturevalue("test_postgres")
    name = f"stcloud_t_{uuid.uuid4().hex[:12]}"
    pg._pg_admin(server.server_url, f'CREATE DATABASE "{name}"')
    engine = make_engine(pg._pg_url(server.server_url, name))
    yield engine
    engine.dispose()
    pg._pg_admin(server.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _insert(engine: Engine, row: SQLModel) -> int:
    """Insert `row` with only the columns its table has at the migrated revision (later
    migrations add columns the model already declares); returns the new id."""
    name = type(row).__tablename__
    table = Table(name, MetaData(), autoload_with=engine)
    values = {k: v for k, v in row.model_dump().items() if k in table.c and k != "id"}
    with engine.begin() as conn:
        return int(conn.execute(table.insert().values(**values)).inserted_primary_key[0])


def test_migration_keeps_rows_and_never_reuses_an_id(empty_engine: Engine) -> None:
    _upgrade(empty_engine, PREVIOUS_HEAD)
    ws = _insert(empty_engine, Workspace(name="team"))
    owner = _insert(empty_engine, User(username="dev"))
    _kept, built, logged = (
        _insert(empty_engine, App(workspace_id=ws, owner_id=owner, subdomain=name,
                                  repo_url="/r/x"))
        for name in ("kept", "gone-built", "gone-logged"))
    # The two newest apps were deleted; only their build and event rows remain.
    _insert(empty_engine, Build(app_id=built, commit="c0ffee", status="failed"))
    _insert(empty_engine, AppEvent(app_id=logged, to_state="deleted", reason="Deleted"))
    with empty_engine.begin() as conn:
        conn.execute(text("DELETE FROM app WHERE id IN (:a, :b)"), {"a": built, "b": logged})
    before_rows, before_schema = _rows(empty_engine), _schema(empty_engine)

    _upgrade(empty_engine, "0009")

    assert _rows(empty_engine) == before_rows
    assert _schema(empty_engine) == before_schema
    new = _insert(empty_engine, App(workspace_id=ws, owner_id=owner, subdomain="new",
                                    repo_url="/r/y"))
    assert new > logged, f"new app took id {new}; ids up to {logged} were used"
    migrate(empty_engine)  # later migrations keep the sequence
    newer = _insert(empty_engine, App(workspace_id=ws, owner_id=owner, subdomain="newer",
                                      repo_url="/r/z"))
    assert newer > new
    with session_scope(empty_engine) as s:
        assert s.exec(select(App.subdomain).order_by(App.id)).all() == \
            ["kept", "new", "newer"]
