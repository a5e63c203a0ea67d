"""Fixtures shared by the integration tests (the session-wide ones are in tests/conftest.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from backend.accounts import auth
from backend.context import Context
from backend.github.client import forget
from backend.platform.settings import Settings
from models import User
from tests.support import api_world
from tests.support.analytics_world import World, seed_world
from tests.support.dashboard import Dash, dashboard_env
from tests.support.fake_github import FakeGithub
from tests.support.github_env import ALL_SCOPES, TOKEN, github_settings
from tests.support.hostile_host import Host, make_host
from tests.support.lifecycle_support import MailSink
from tests.support.runtimes import remove_docker_installation
from tests.support.supervisor_harness import SupervisorProcess

if TYPE_CHECKING:
    from supervisor.runtimes.docker import DockerRuntime


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Dash]:
    """The dashboard's settings in the environment on a fresh data dir, with the first
    admin created (tests/support/dashboard.py)."""
    yield from dashboard_env(tmp_path, monkeypatch, database_url)


@pytest.fixture
def analytics_world(ctx: Context) -> World:
    """Two workspaces of users and apps, no views yet (tests/support/analytics_world.py)."""
    return seed_world(ctx)


@pytest.fixture
def fake_github(tmp_path: Path) -> Iterator[FakeGithub]:
    """A fake GitHub (REST API, OAuth and git) on 127.0.0.1; PyGithub's cached clients are
    forgotten before and after, so none points at another test's server."""
    server = FakeGithub(tmp_path / "github").start()
    forget()
    yield server
    server.stop()
    forget()


@pytest.fixture
def gctx(ctx: Context, fake_github: FakeGithub) -> Context:
    """`ctx` with the github_* settings pointing at the fake GitHub."""
    settings = github_settings(ctx.settings, github_base_url=fake_github.base_url,
                               github_client_id=fake_github.client_id,
                               github_client_secret=fake_github.client_secret)
    return Context(settings=settings, engine=ctx.engine)


@pytest.fixture
def alice(gctx: Context, fake_github: FakeGithub) -> User:
    """A user of ours, alice, who is also alice on the fake GitHub (member of org acme) with
    a token of every scope we ask for, not yet connected."""
    fake_github.add_user("alice", TOKEN, ALL_SCOPES, orgs=("acme",))
    return auth.create_user(gctx, "alice", "password123", email="alice@example.com")


@pytest.fixture
def dsettings(settings: Settings) -> Settings:
    """`settings` on the Docker engine."""
    return dataclasses.replace(settings, runtime="docker")


@pytest.fixture
def docker_runtime(dsettings: Settings, docker_client: Any) -> Iterator[DockerRuntime]:
    """A DockerRuntime of this test's installation; its containers are removed afterwards."""
    from supervisor.runtimes.docker import DockerRuntime
    rt = DockerRuntime(dsettings, docker_client)
    yield rt
    remove_docker_installation(docker_client, rt)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    """A data dir laid out as a real one, with a secret key file and a database copy beside
    an app's checkout, for the hostile-repository tests (tests/support/hostile_host.py)."""
    return make_host(tmp_path)


@pytest.fixture
def world(ctx: Context) -> api_world.World:
    """The API tests' workspace of users, one app and a token per caller
    (tests/support/api_world.py)."""
    return api_world.seed_world(ctx)


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    """A local SMTP server that keeps what it receives; its settings() point the platform's
    mailer at it."""
    sink = MailSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def supervisor(settings: Settings, tmp_path: Path) -> Iterator[SupervisorProcess]:
    """The supervisor as its own process on `settings`, stopped after the test (its log:
    tmp_path/supervisor.log)."""
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    yield sup
    sup.stop()
