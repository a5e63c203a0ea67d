"""What the GitHub integration tests share: the test user's token and scopes, settings with
the github_* values, a clock past the refresh interval, and readers of the rows a deploy
writes. The fake GitHub itself is tests/support/fake_github.py; its fixtures
(`fake_github`, `gctx`, `alice`) are in tests/integration/conftest.py."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from backend import workspaces
from backend.context import Context
from backend.platform.settings import Settings
from models import App, AppEvent, User, session_scope, utcnow
from models.github import AppGithub

TOKEN = "ghp_alice_token"
ALL_SCOPES = "repo, admin:repo_hook, read:org"


def github_settings(base: Settings, **values: Any) -> Settings:
    """`base` plus the github_* settings (whether or not Settings declares them yet)."""
    extra = [("github_base_url", str, dataclasses.field(default="")),
             ("github_client_id", str, dataclasses.field(default="")),
             ("github_client_secret", str, dataclasses.field(default="")),
             ("github_refresh_minutes", float, dataclasses.field(default=30.0))]
    cls = dataclasses.make_dataclass("GithubSettings", extra, bases=(Settings,), frozen=True)
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(Settings)}
    settings: Settings = cls(**{**current, **values})
    return settings


def later(minutes: float = 31) -> datetime:
    """A time past github_refresh_minutes (30 in these tests), so the refresh is due."""
    return utcnow() + timedelta(minutes=minutes)


def memberships(ctx: Context, user: User) -> dict[str, str]:
    return {ws.name: role for ws, role in workspaces.list_workspaces(ctx, user)}


def app_row(ctx: Context, app_id: int) -> tuple[App, AppGithub | None, list[str]]:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        row = s.exec(select(AppGithub).where(AppGithub.app_id == app_id)).first()
        events = [e.reason for e in s.exec(select(AppEvent).where(
            AppEvent.app_id == app_id).order_by(col(AppEvent.id)))]
        return app, row, events

