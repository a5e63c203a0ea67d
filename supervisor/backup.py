"""Backup and restore of everything a platform cannot rebuild: the database and the server
keys (`python -m supervisor backup FILE` / `python -m supervisor restore FILE`).

What is saved. The database, and from the data dir: `keys/` (the Fernet key of app secrets
and GitHub tokens/deploy keys, the proxy's and the dashboard's signing keys, the analytics
pseudonym key), `initial_admin_password`, `known_hosts` (GitHub host keys pinned for
deploy-key clones) and `config.toml`. Checkouts, environments, logs and `run/` are rebuilt
on demand (after a restore every app is cloned and started again; its secrets file
`apps/<id>/secrets.toml` is written back from the database by the restore itself).

Consistency while the supervisor runs. SQLite: the online backup API
(`sqlite3.Connection.backup`, in one step) copies a snapshot of the database under one read
transaction; in WAL mode writers go on meanwhile. PostgreSQL: every table is exported, row by
row as JSON lines, inside one `REPEATABLE READ READ ONLY` transaction, so all tables come
from one snapshot. We chose this over pg_dump because pg_dump must be at least the server's
major version and pg_restore must be installed on the restoring machine; the export needs
neither, and the same code restores it (into an empty database, migrated to the backup's
schema revision first, all in one transaction).

The archive is one gzip'd tar, mode 0600 from the moment it exists, whose first member is
`manifest.json`: format, schema revision, database dialect, creation time, and a size and
sha256 per file (checked on restore).

Restore refuses: while a supervisor heartbeat on this data dir is fresh
(backend.platform.supervisor_report); a backup of a newer schema than this code knows
(upgrade the platform first); a database that already holds users, unless `force` (the
old SQLite file and keys are then moved to `<data_dir>/pre-restore-<time>/`, nothing is
deleted). After the files are in place the schema is migrated to this code's newest
revision and every app's secrets are decrypted with the restored key (a wrong key fails
the restore loudly) and written to their runtime files.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, inspect, select, text

from backend.platform.settings import Settings
from backend.platform.supervisor_report import read_platform_of
from models.engine import MIGRATIONS_DIR, make_engine

log = logging.getLogger("supervisor.backup")
FORMAT = 1
MANIFEST = "manifest.json"
DATA_ITEMS = ("keys", "initial_admin_password", "known_hosts", "config.toml")
SQLITE_MEMBER = "database/cloud.db"
TABLES_PREFIX = "database/tables/"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore cannot proceed; the message says why and what to do."""


@dataclass
class Manifest:
    format: int
    schema_revision: str
    dialect: str  # sqlite | postgresql | …: how the database was captured
    database: str  # "sqlite-file" or "tables-jsonl"
    created_at: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> size, sha256


@dataclass
class RestoreResult:
    schema_revision: str
    apps: int
    secrets: int
    moved_aside: Path | None


# Schema revisions --------------------------------------------------------------------------
def known_revisions() -> list[str]:
    """Every revision of our migrations, oldest first."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return [s.revision for s in reversed(list(ScriptDirectory.from_config(cfg).walk_revisions()))]


def _revision(conn: Any) -> str:
    try:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar() or "")
    except Exception:  # no alembic table: no schema yet
        return ""


# Backup ------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _snapshot_sqlite(db_file: Path, out: Path) -> str:
    """Online backup of a live SQLite database into `out` (one file); its revision."""
    if not db_file.exists():
        raise BackupError(f"There is no database at {db_file}; nothing to back up.")
    src = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(out)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)  # pages=-1: the whole database in one step, one snapshot
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        check = dst.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"The database copy failed its integrity check: {check}")
        try:
            row = dst.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            row = None
        return str(row[0]) if row else ""
    finally:
        src.close()
        dst.close()


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, (bytes, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, raw), = value.items()
        if tag == "$dt":
            return dt.datetime.fromisoformat(raw)
        if tag == "$date":
            return dt.date.fromisoformat(raw)
        if tag == "$b64":
            return base64.b64decode(raw)
        if tag == "$dec":
            return Decimal(raw)
    return value


def _export_tables(engine: Engine, out_dir: Path) -> str:
    """Every table as JSON lines, from one snapshot (REPEATABLE READ on PostgreSQL; a
    SQLite file is read by one transaction); the revision."""
    out_dir.mkdir(parents=True)
    isolation = "SERIALIZABLE" if engine.dialect.name == "sqlite" else "REPEATABLE READ"
    with engine.connect().execution_options(isolation_level=isolation) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            revision = _revision(conn)
            meta = MetaData()
            meta.reflect(conn)
            for table in meta.sorted_tables:
                with open(out_dir / f"{table.name}.jsonl", "w", encoding="utf-8") as fh:
                    rows = conn.execution_options(stream_results=True, yield_per=2000) \
                        .execute(select(table))
                    for row in rows.mappings():
                        fh.write(json.dumps({k: _encode(v) for k, v in row.items()}) + "\n")
    return revision


def _data_files(settings: Settings) -> Iterator[tuple[Path, str]]:
    for item in DATA_ITEMS:
        path = settings.data_dir / item
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                yield sub, f"data/{sub.relative_to(settings.data_dir)}"
        elif path.is_file():
            yield path, f"data/{item}"


def create_backup(settings: Settings, target: Path) -> Manifest:
    """Write a consistent backup of `settings`' database and keys to `target` (mode 0600)."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    with tempfile.TemporaryDirectory(prefix=".stcloud-backup-", dir=target.parent) as tmp:
        staging = Path(tmp)
        os.chmod(staging, 0o700)
        members: list[tuple[Path, str]] = []
        if engine.dialect.name == "sqlite":
            db_copy = staging / "cloud.db"
            revision = _snapshot_sqlite(Path(engine.url.database or ""), db_copy)
            members.append((db_copy, SQLITE_MEMBER))
            kind = "sqlite-file"
        else:
            revision = _export_tables(engine, staging / "tables")
            members += [(p, TABLES_PREFIX + p.name)
                        for p in sorted((staging / "tables").iterdir())]
            kind = "tables-jsonl"
        engine.dispose()
        if not revision:
            raise BackupError("The database has no schema yet (no alembic_version); start the "
                              "supervisor once before backing it up.")
        members += list(_data_files(settings))
        manifest = Manifest(FORMAT, revision, engine.dialect.name, kind,
                            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                            {name: {"size": path.stat().st_size, "sha256": _sha256(path)}
                             for path, name in members})
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                blob = json.dumps(asdict(manifest), indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(blob), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(blob))
                for path, name in members:
                    tar.add(path, arcname=name, recursive=False,
                            filter=lambda i: _private(i))
                tar.close()
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(partial, 0o600)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    log.info("backup file=%s revision=%s database=%s files=%d bytes=%d", target, revision,
             kind, len(manifest.files), target.stat().st_size)
    return manifest


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


# Restore -----------------------------------------------------------------------------------
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
            if _sha256(out) != expected["sha256"]:
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
                    batch.append({k: _decode(v) for k, v in json.loads(line).items()})
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
        _export_tables(engine, out_dir)
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
