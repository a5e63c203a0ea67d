"""Fixtures shared by the integration tests (the session-wide ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.context import Context
from tests.support.analytics_world import World, seed_world
from tests.support.dashboard import Dash, dashboard_env


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Dash]:
    """The dashboard's settings in the environment on a fresh data dir, with the first
    admin created (tests/support/dashboard.py)."""
    yield from dashboard_env(tmp_path, monkeypatch, database_url)


@pytest.fixture
def analytics_world(ctx: Context) -> World:
    """Two workspaces of users and apps, no views yet (tests/support/analytics_world.py)."""
    return seed_world(ctx)
