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

This module writes backups and holds the archive format both sides share (the manifest,
schema revisions, the table export and its value encoding); supervisor/restore.py reads
them back.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, select, text

from backend.platform.settings import Settings
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
def sha256_of(path: Path) -> str:
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


def encode_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, (bytes, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    return value


def decode_value(value: Any) -> Any:
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


def export_tables(engine: Engine, out_dir: Path) -> str:
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
                        fh.write(json.dumps({k: encode_value(v) for k, v in row.items()}) + "\n")
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
            revision = export_tables(engine, staging / "tables")
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
                            {name: {"size": path.stat().st_size, "sha256": sha256_of(path)}
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
