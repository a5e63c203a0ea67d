"""`python -m supervisor [run]`: run everything. Admin commands:
`python -m supervisor create-user NAME [--admin]`, `python -m supervisor reset-password NAME`
(each prints the new random password)."""

from __future__ import annotations

import argparse
import asyncio
import resource
import secrets
import sys

from backend import auth
from backend.context import open_context
from backend.errors import BackendError
from backend.settings import load_settings
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisor",
                                     description="Self-hosted Streamlit Cloud supervisor.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the supervisor, proxy and dashboard (default)")
    create = sub.add_parser("create-user", help="create a user with a random password")
    create.add_argument("username")
    create.add_argument("--email", default="")
    create.add_argument("--admin", action="store_true")
    reset = sub.add_parser("reset-password", help="set a new random password for a user")
    reset.add_argument("username")
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
