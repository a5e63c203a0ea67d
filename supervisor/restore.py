"""Restore of a platform backup (supervisor/backup.py writes them): the database and keys
put in place for a stopped supervisor, then migrated, and every app's secrets decrypted
with the restored key and written to their runtime files.

Restore refuses: while a supervisor heartbeat on this data dir is fresh
(backend.platform.supervisor_report); a backup of a newer schema than this code knows
(upgrade the platform first); a database that already holds users, unless `force` (the
old SQLite file and keys are then moved to `<data_dir>/pre-restore-<time>/`, nothing is
deleted). A SQLite backup restores into a server database through the table export.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, inspect, text

from backend.platform.settings import Settings
from backend.platform.supervisor_report import read_platform_of
from models.engine import MIGRATIONS_DIR, make_engine
from supervisor.backup import (
    CHUNK,
    FORMAT,
    MANIFEST,
    SQLITE_MEMBER,
    TABLES_PREFIX,
    BackupError,
    Manifest,
    decode_value,
    export_tables,
    known_revisions,
    sha256_of,
)

log = logging.getLogger("supervisor.backup")


@dataclass
class RestoreResult:
    schema_revision: str
    apps: int
    secrets: int
    moved_aside: Path | None


def read_manifest(source: Path) -> Manifest:
    """The manifest of a backup file (BackupError when it is not one of ours)."""
    try:
        with tarfile.open(source, "r:gz") as tar:
            member = tar.next()
            blob = tar.extractfile(member) if member is not None else None
            if member is None or member.name != MANIFEST or blob is None:
                raise BackupError(f"{source} is not a platform backup (no {MANIFEST} first).")
            data = json.loads(blob.read())
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise BackupError(f"Cannot read the backup {source}: {exc}") from None
    return Manifest(**data)


def check_restorable(settings: Settings, manifest: Manifest) -> None:
    """Refuse a newer format or schema, and a data dir with a live supervisor."""
    if manifest.format > FORMAT:
        raise BackupError(f"The backup has format {manifest.format}; this version reads up "
                          f"to {FORMAT}. Restore it with the platform version that made it.")
    known = known_revisions()
    if manifest.schema_revision not in known:
        raise BackupError(f"The backup's database schema ({manifest.schema_revision}) is newer "
                          f"than this version knows (newest: {known[-1]}). Upgrade the "
                          "platform to the version that made the backup, then restore.")
    platform = read_platform_of(settings)
    if platform.supervisor_alive:
        age = time.time() - platform.heartbeat
        raise BackupError(f"A supervisor is running on {settings.data_dir} (heartbeat {age:.0f}"
                          " s ago). Stop it first (Ctrl-C stops its apps too); if it was "
                          "killed, wait 30 s for its heartbeat to expire.")


def _extract(source: Path, manifest: Manifest, staging: Path) -> None:
    with tarfile.open(source, "r:gz") as tar:
        for member in tar:
            if member.name == MANIFEST:
                continue
            expected = manifest.files.get(member.name)
            content = tar.extractfile(member) if member.isfile() else None
            if expected is None or content is None or ".." in Path(member.name).parts:
                raise BackupError(f"Unexpected member {member.name!r} in the backup.")
            out = staging / member.name
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                shutil.copyfileobj(content, fh, CHUNK)
            if sha256_of(out) != expected["sha256"]:
                raise BackupError(f"{member.name} in the backup is corrupt (checksum differs).")
    missing = [n for n in manifest.files if not (staging / n).exists()]
    if missing:
        raise BackupError(f"The backup is incomplete; missing: {', '.join(missing)}")


def _sqlite_file(settings: Settings) -> Path | None:
    url = settings.db_url
    return Path(url.split("///", 1)[-1]) if url.startswith("sqlite") else None


def _has_users(settings: Settings) -> bool:
    db_file = _sqlite_file(settings)
    if db_file is not None and not db_file.exists():
        return False  # do not create an empty database just to look
    engine = make_engine(settings.db_url)
    try:
        if "user" not in inspect(engine).get_table_names():
            return False
        with engine.connect() as conn:
            return bool(conn.execute(text('SELECT count(*) FROM "user"')).scalar())
    finally:
        engine.dispose()


def _move_aside(settings: Settings, names: list[str]) -> Path | None:
    existing = [settings.data_dir / n for n in names if (settings.data_dir / n).exists()]
    if not existing:
        return None
    aside = settings.data_dir / f"pre-restore-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir(mode=0o700)
    for path in existing:
        os.replace(path, aside / path.name)
    return aside


def _load_tables(engine: Engine, tables_dir: Path, revision: str) -> None:
    """Drop our tables, create the backup's schema revision, insert every row (one
    transaction on PostgreSQL, where DDL is transactional)."""
    from alembic import command
    from alembic.config import Config

    with engine.begin() as conn:
        meta = MetaData()
        meta.reflect(conn)
        meta.drop_all(conn)
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        meta = MetaData()
        meta.reflect(conn)
        for table in meta.sorted_tables:
            path = tables_dir / f"{table.name}.jsonl"
            if table.name == "alembic_version" or not path.exists():
                continue
            with open(path, encoding="utf-8") as fh:
                batch: list[dict[str, Any]] = []
                for line in fh:
                    batch.append({k: decode_value(v) for k, v in json.loads(line).items()})
                    if len(batch) >= 1000:
                        conn.execute(table.insert(), batch)
                        batch = []
                if batch:
                    conn.execute(table.insert(), batch)
            if conn.dialect.name == "postgresql":  # serial columns continue after the rows
                for col in table.primary_key.columns:
                    if col.autoincrement is True or (col.autoincrement == "auto"
                                                     and col.type.python_type is int):
                        conn.execute(text(
                            "SELECT setval(pg_get_serial_sequence(:t, :c), "
                            f'COALESCE((SELECT max("{col.name}") FROM "{table.name}"), 0) + 1, '
                            "false) WHERE pg_get_serial_sequence(:t, :c) IS NOT NULL"),
                            {"t": f'"{table.name}"', "c": col.name})


def _sqlite_file_to_tables(db_file: Path, out_dir: Path) -> None:
    """A backup's SQLite file as the table export a server database is loaded from: how
    an installation moves from SQLite to PostgreSQL (backup, set DATABASE_URL, restore)."""
    from sqlalchemy import create_engine
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        export_tables(engine, out_dir)
    finally:
        engine.dispose()


def restore_backup(settings: Settings, source: Path, force: bool = False) -> RestoreResult:
    """Put a backup's database and keys in place for `settings` (supervisor stopped)."""
    manifest = read_manifest(source)
    check_restorable(settings, manifest)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not force and _has_users(settings):
        raise BackupError("The database already holds users. Restoring replaces it: pass "
                          "--force (SQLite: the old database and keys are moved to "
                          "<data_dir>/pre-restore-<time>/).")
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=settings.data_dir) as tmp:
        staging = Path(tmp)
        _extract(source, manifest, staging)
        data_names = sorted({Path(n).parts[1] for n in manifest.files if n.startswith("data/")})
        db_file = _sqlite_file(settings)
        db_names = [] if db_file is None else \
            [db_file.name + suffix for suffix in ("", "-wal", "-shm")]
        aside = _move_aside(settings, sorted({*data_names, "keys", *db_names}))
        for name in data_names:
            os.replace(staging / "data" / name, settings.data_dir / name)
        if (settings.data_dir / "keys").is_dir():
            os.chmod(settings.data_dir / "keys", 0o700)
        if manifest.database == "sqlite-file" and db_file is not None:
            db_file.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / SQLITE_MEMBER, db_file)
        else:
            tables = staging / TABLES_PREFIX
            if manifest.database == "sqlite-file":  # SQLite backup into PostgreSQL etc.
                _sqlite_file_to_tables(staging / SQLITE_MEMBER, tables)
            engine = make_engine(settings.db_url)
            try:
                _load_tables(engine, tables, manifest.schema_revision)
            finally:
                engine.dispose()
    apps, secrets = _after_restore(settings)
    log.info("restore file=%s revision=%s apps=%d secrets=%d moved_aside=%s", source,
             manifest.schema_revision, apps, secrets, aside)
    return RestoreResult(manifest.schema_revision, apps, secrets, aside)


def _after_restore(settings: Settings) -> tuple[int, int]:
    """Migrate to our newest schema; decrypt every app's secrets with the restored key and
    write their runtime files. Returns (apps, apps with secrets)."""
    from sqlmodel import select as sql_select

    from backend.apps import secrets as app_secrets
    from backend.context import open_context
    from models import App, AppSecret, session_scope

    ctx = open_context(settings)
    try:
        with session_scope(ctx.engine) as s:
            apps = len(s.exec(sql_select(App.id)).all())
            rows = [(r.app_id, r.ciphertext) for r in s.exec(sql_select(AppSecret))]
        for app_id, token in rows:
            try:
                plain = app_secrets.decrypt(ctx, token)
            except Exception as exc:  # BackendError: the key does not match
                raise BackupError(f"App {app_id}'s secrets cannot be decrypted with the "
                                  f"restored key: {exc}") from None
            app_secrets.write_runtime_file(settings, app_id, plain)
        return apps, len(rows)
    finally:
        ctx.engine.dispose()
