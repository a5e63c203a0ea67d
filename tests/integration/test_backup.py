"""Backup and restore (supervisor/backup.py, restore.py) end to end: deploy an app with a
secret, back up while the supervisor runs, stop it, wipe the data dir, restore, start
again: the app runs again and reads its secret (so the restored key decrypts it). Plus the
refusals: a live supervisor, a newer schema, a database that already holds users."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import aiohttp
import pytest

from backend.accounts import auth
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.context import open_context
from backend.platform.settings import PROJECT_ROOT, Settings
from supervisor import backup, restore
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

PAGE = ("import os\nimport streamlit as st\n"
        "st.write('token=' + st.secrets['token'])\n"
        "st.write('env=' + os.environ.get('token', 'missing'))\n")
SECRET = 'token = "s3cret-value-42"\n'


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m supervisor ARGS` with these settings, as an operator runs it."""
    env = {**os.environ, **settings.to_env()}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "supervisor", *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def session_texts(settings: Settings, subdomain: str) -> list[str]:
    host = f"{subdomain}.localhost:{settings.port}"
    seen = asyncio.run(open_streamlit_session(f"ws://127.0.0.1:{settings.port}", host))
    return seen["texts"]


def serving_texts(settings: Settings, subdomain: str) -> list[str]:
    """The app's session texts once its secret shows, [] while the proxy answers for it."""
    try:
        texts = session_texts(settings, subdomain)
    except aiohttp.WSServerHandshakeError:
        return []
    return texts if any("s3cret-value-42" in t for t in texts) else []


def test_backup_wipe_restore_serves_app_with_its_secret(settings, admin, make_repo,
                                                        tmp_path) -> None:
    ctx = open_context(settings)
    repo = make_repo("vault", {"streamlit_app.py": PAGE})
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    target = tmp_path / "backups" / "cloud.tar.gz"
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="vault")
        app_secrets.set_secrets(ctx, admin, view.id, SECRET)
        app = wait_for_state(ctx, view.id, {"running", "crashed", "build_failed"}, sup=sup)
        assert app.state == "running", app.state_reason
        wait_until(lambda: "token=s3cret-value-42" in session_texts(settings, "vault"), 60,
                   "the app to show its secret", sup)

        started = time.monotonic()
        done = cli(settings, "backup", str(target))
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        manifest = restore.read_manifest(target)
        assert manifest.schema_revision == backup.known_revisions()[-1]
        assert "data/keys/app_secrets" in manifest.files
        assert "data/initial_admin_password" in manifest.files
        print(f"backup: {target.stat().st_size} bytes in {took:.2f} s (CLI, incl. start-up)")

        refused = cli(settings, "restore", str(target), "--force")
        assert refused.returncode == 1 and "supervisor is running" in refused.stderr
    finally:
        sup.stop()  # SIGINT: the apps stop too

    # The disaster: everything in the data dir is gone.
    shutil.rmtree(settings.data_dir)
    restore_args = ["restore", str(target)]
    if settings.database_url:  # PostgreSQL outlives the data dir: replacing it needs --force
        restore_args.append("--force")
    started = time.monotonic()
    done = cli(settings, *restore_args)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    print(f"restore: {took:.2f} s (CLI, incl. start-up)")
    assert stat.S_IMODE((settings.data_dir / "keys").stat().st_mode) == 0o700
    assert (settings.data_dir / "initial_admin_password").exists()

    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
    try:
        app = wait_for_state(ctx, view.id, {"running", "crashed", "build_failed"}, timeout=180,
                             sup=sup)
        assert app.state == "running", app.state_reason
        # The restored row says "running" from the backup until the first pass starts the
        # app from a fresh checkout: wait for the app itself to answer.
        texts = wait_until(lambda: serving_texts(settings, "vault"), 180,
                           "the restored app to serve", sup)
        assert "token=s3cret-value-42" in texts and "env=s3cret-value-42" in texts, texts
        assert app_secrets.get_secrets(ctx, admin, view.id) == SECRET
    finally:
        sup.stop()


def _rewrite_manifest(source: Path, target: Path, **changes: object) -> None:
    with tarfile.open(source, "r:gz") as tar, tarfile.open(target, "w:gz") as out:
        for member in tar:
            fh = tar.extractfile(member)
            assert fh is not None, member.name
            data = fh.read()
            if member.name == backup.MANIFEST:
                data = json.dumps({**json.loads(data), **changes}).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))


def test_restore_refuses_newer_schema_existing_users_and_live_supervisor(
        settings, admin, tmp_path) -> None:
    target = tmp_path / "b.tar.gz"
    backup.create_backup(settings, target)

    newer = tmp_path / "newer.tar.gz"
    _rewrite_manifest(target, newer, schema_revision="9999")
    with pytest.raises(backup.BackupError, match="newer than this version"):
        restore.restore_backup(settings, newer)

    with pytest.raises(backup.BackupError, match="already holds users"):
        restore.restore_backup(settings, target)

    from backend.platform.supervisor_report import PlatformInfo, write_platform
    ctx = open_context(settings)
    write_platform(ctx, PlatformInfo(engine="process", heartbeat=time.time()))
    with pytest.raises(backup.BackupError, match="supervisor is running"):
        restore.restore_backup(settings, target, force=True)
    write_platform(ctx, PlatformInfo(engine="process", heartbeat=time.time() - 120))

    corrupt = tmp_path / "corrupt.tar.gz"
    _rewrite_manifest(target, corrupt, files={**restore.read_manifest(target).files,
                                              "data/keys/extra": {"size": 1, "sha256": "0"}})
    with pytest.raises(backup.BackupError, match="incomplete"):
        restore.restore_backup(settings, corrupt, force=True)

    result = restore.restore_backup(settings, target, force=True)
    assert result.schema_revision == backup.known_revisions()[-1]
    if not settings.database_url:
        assert result.moved_aside is not None and (result.moved_aside / "cloud.db").is_file()


def test_sqlite_backup_restores_into_postgresql(settings, admin, make_repo,
                                                new_postgres_database) -> None:
    """Moving an installation from SQLite to PostgreSQL: back up on SQLite, set
    DATABASE_URL, restore: users, apps and secrets (decrypted with the restored key) are
    there, and new rows get fresh ids."""
    if settings.database_url:
        pytest.skip("this test starts from SQLite")
    ctx = open_context(settings)
    repo = make_repo("moving")
    view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="moving")
    app_secrets.set_secrets(ctx, admin, view.id, SECRET)
    archive = settings.data_dir.parent / "sqlite.tar.gz"
    backup.create_backup(settings, archive)
    assert restore.read_manifest(archive).database == "sqlite-file"

    pg_settings = dataclasses.replace(settings, data_dir=settings.data_dir.parent / "pg-data",
                                      database_url=new_postgres_database())
    result = restore.restore_backup(pg_settings, archive)
    assert result.apps == 1 and result.secrets == 1
    pg = open_context(pg_settings)
    assert pg.engine.dialect.name == "postgresql"
    moved_admin = auth.get_user(pg, admin.username)
    assert moved_admin is not None and moved_admin.is_admin
    assert [a.subdomain for a in apps.list_apps(pg, moved_admin)] == ["moving"]
    assert app_secrets.get_secrets(pg, moved_admin, view.id) == SECRET
    other = make_repo("after")
    assert apps.deploy_app(pg, moved_admin, repo_url=other.url, subdomain="after").id > view.id
