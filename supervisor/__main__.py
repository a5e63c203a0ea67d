"""`python -m supervisor [run]`: run everything. Admin commands:
`python -m supervisor create-user NAME [--admin]`, `python -m supervisor reset-password NAME`
(each prints the new random password); `python -m supervisor backup FILE` and
`python -m supervisor restore FILE [--force]` (supervisor/backup.py, restore.py);
`python -m supervisor migrate-runtime ENGINE` (supervisor/control/engine_choice.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import secrets
import sys
from pathlib import Path

from backend.accounts import auth
from backend.context import open_context
from backend.errors import BackendError
from backend.platform.settings import Settings
from backend.platform.settings_load import load_settings
from supervisor.main import configure_logging, serve


def raise_open_file_limit() -> None:
    """Every proxied websocket holds two descriptors and each Streamlit session about four
    (bench/proxy.py): the common soft limit of 1024 caps a machine near 500 viewers. Raise
    the soft limit to the hard one; apps started by us inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit; the operator can raise it


def run_backup_command(settings: Settings, args: argparse.Namespace) -> int:
    """`backup FILE` / `restore FILE [--force]` (supervisor/backup.py, restore.py); prints a
    summary."""
    from supervisor import backup, restore

    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(message)s")
    try:
        if args.command == "backup":
            manifest = backup.create_backup(settings, args.file)
            print(f"backup {args.file}: schema {manifest.schema_revision}, "
                  f"{len(manifest.files)} files, {args.file.stat().st_size} bytes")
        else:
            result = restore.restore_backup(settings, args.file, force=args.force)
            print(f"restored {args.file}: schema {result.schema_revision}, {result.apps} apps,"
                  f" {result.secrets} with secrets"
                  + (f"; previous files in {result.moved_aside}" if result.moved_aside else "")
                  + ". Start the supervisor: apps are cloned and started again.")
    except backup.BackupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run_migrate_command(settings: Settings, args: argparse.Namespace) -> int:
    """`migrate-runtime ENGINE [--old-engine-gone]` (supervisor/control/engine_choice.py)."""
    from supervisor.control.engine_choice import MigrationError, migrate_runtime

    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(message)s")
    ctx = open_context(settings)
    try:
        asyncio.run(migrate_runtime(ctx, args.engine, lambda line: print(line, flush=True),
                                    old_engine_gone=args.old_engine_gone))
    except MigrationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisor",
                                     description="Self-hosted Streamlit Cloud supervisor.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the supervisor, proxy and dashboard (default)")
    sub.add_parser("proxy", help="run a standalone proxy (routes from the database; "
                   "docs/scale-out.md)")
    create = sub.add_parser("create-user", help="create a user with a random password")
    create.add_argument("username")
    create.add_argument("--email", default="")
    create.add_argument("--admin", action="store_true")
    reset = sub.add_parser("reset-password", help="set a new random password for a user")
    reset.add_argument("username")
    backup = sub.add_parser("backup", help="write the database and keys to one archive")
    backup.add_argument("file", type=Path)
    restore = sub.add_parser("restore", help="restore a backup (supervisor stopped)")
    restore.add_argument("file", type=Path)
    restore.add_argument("--force", action="store_true",
                         help="replace a database that already holds users")
    migrate = sub.add_parser(
        "migrate-runtime", help="move every app to another engine (supervisor stopped)",
        description="Move every app to another engine. Run it with the supervisor stopped "
        "(SIGTERM leaves apps running): it stops every app instance on the engine the apps "
        "run on now, queues a fresh deploy of the apps that were serving and records ENGINE; "
        "the next start (runtime = ENGINE or auto) deploys them there. Safe to run again "
        "after an interruption; nothing is left running on the old engine.")
    migrate.add_argument("engine", choices=["process", "docker", "swarm"])
    migrate.add_argument("--old-engine-gone", action="store_true",
                         help="the old engine does not answer and never will (e.g. Docker "
                         "uninstalled): record ENGINE without stopping anything there")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command in (None, "run"):
        configure_logging(settings.log_level)
        raise_open_file_limit()
        return asyncio.run(serve(settings))
    if args.command == "proxy":
        from supervisor.proxy.standalone import serve_proxy
        configure_logging(settings.log_level)
        raise_open_file_limit()
        return asyncio.run(serve_proxy(settings))
    if args.command in ("backup", "restore"):
        return run_backup_command(settings, args)
    if args.command == "migrate-runtime":
        return run_migrate_command(settings, args)
    ctx = open_context(settings)
    password = secrets.token_urlsafe(12)
    try:
        if args.command == "create-user":
            auth.create_user(ctx, args.username, password, email=args.email,
                             is_admin=args.admin)
        else:
            auth.reset_password(ctx, args.username, password)
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"username {args.username}   password {password}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
