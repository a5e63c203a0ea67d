"""Shared fixtures: settings on a temporary data dir, a backend context, git repos.

Built environments and uv's cache are shared by the whole test session (and uv's cache
across sessions, under ~/.cache/stcloud-tests) so that each dependency set is built once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend import auth
from backend.context import Context, open_context
from backend.settings import PROJECT_ROOT, Settings, load_settings

EXAMPLE_APP = PROJECT_ROOT / "examples" / "hello"
CACHE_ROOT = Path(os.environ.get("STCLOUD_TEST_CACHE", Path.home() / ".cache" / "stcloud-tests"))
# A PostgreSQL server URL (scripts/ci-postgres.sh prints one). When set, every test's database
# is a fresh PostgreSQL database cloned from a migrated template instead of a SQLite file.
TEST_POSTGRES = os.environ.get("STCLOUD_TEST_POSTGRES", "")
PG_TEMPLATE = "stcloud_test_template"


def require_docker() -> bool:
    """Under REQUIRE_DOCKER=1 (CI), Docker tests fail instead of skipping."""
    return os.environ.get("REQUIRE_DOCKER") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def shared_envs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envs")


def _pg_url(server_url: str, database: str) -> str:
    return server_url.rsplit("/", 1)[0] + "/" + database


def _pg_admin(server_url: str, *statements: str) -> None:
    from sqlalchemy import create_engine, text
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_template() -> str:
    """The migrated template database on the test PostgreSQL server (made once per run)."""
    if not TEST_POSTGRES:
        pytest.skip("no PostgreSQL server (set STCLOUD_TEST_POSTGRES; CI does)")
    from models.engine import make_engine, migrate
    _pg_admin(TEST_POSTGRES, f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}" WITH (FORCE)',
              f'CREATE DATABASE "{PG_TEMPLATE}"')
    engine = make_engine(_pg_url(TEST_POSTGRES, PG_TEMPLATE))
    migrate(engine)
    engine.dispose()
    return PG_TEMPLATE


@pytest.fixture
def new_postgres_database(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """new_postgres_database() -> URL of a fresh, migrated PostgreSQL database (dropped after
    the test). Fails instead of skipping in CI, where .ci/run starts PostgreSQL."""
    if not TEST_POSTGRES and os.environ.get("CI") == "true":
        pytest.fail("CI must provide STCLOUD_TEST_POSTGRES (scripts/ci-postgres.sh)")
    template = request.getfixturevalue("postgres_template")
    made: list[str] = []

    def make() -> str:
        name = f"stcloud_t_{uuid.uuid4().hex[:12]}"
        _pg_admin(TEST_POSTGRES, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        made.append(name)
        return _pg_url(TEST_POSTGRES, name)

    yield make
    for name in made:
        _pg_admin(TEST_POSTGRES, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """'' (SQLite in the data dir) or, when STCLOUD_TEST_POSTGRES is set, a fresh PostgreSQL
    database: the whole suite runs on either."""
    if not TEST_POSTGRES:
        return ""
    return request.getfixturevalue("new_postgres_database")()


@pytest.fixture
def settings(tmp_path: Path, shared_envs_dir: Path, database_url: str) -> Settings:
    """Settings on a fresh data dir, process runtime, a free port, shared envs and cache."""
    return load_settings(env={}, data_dir=tmp_path / "data", envs_dir=shared_envs_dir,
                         uv_cache_dir=CACHE_ROOT / "uv", port=free_port(), runtime="process",
                         reconcile_interval=0.2, health_timeout=60.0, database_url=database_url)


@pytest.fixture
def ctx(settings: Settings) -> Context:
    return open_context(settings)


@pytest.fixture
def admin(ctx: Context):
    auth.ensure_first_admin(ctx)
    return auth.get_user(ctx, ctx.settings.admin_username)


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


class GitRepo:
    """A bare repository (what the platform deploys from) plus a work tree to push from."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.bare = root / "owner" / f"{root.name}.git"
        self.work = root / "work"
        self.branch = branch
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "-q", "-b", branch, str(self.bare), cwd=root)
        _git("init", "-q", "-b", branch, str(self.work), cwd=root)
        _git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return str(self.bare)

    def commit(self, files: dict[str, str | bytes | None], message: str = "update") -> str:
        """Write (or, with None, delete) files, commit and push; returns the commit sha."""
        for name, content in files.items():
            path = self.work / name
            if content is None:
                path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        _git("add", "-A", cwd=self.work)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        _git("push", "-q", "origin", self.branch, cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., GitRepo]:
    """make_repo(name, files) -> GitRepo with one commit holding `files`."""
    def make(name: str = "hello", files: dict[str, str | bytes | None] | None = None,
             branch: str = "main") -> GitRepo:
        repo = GitRepo(tmp_path / "repos" / name, branch=branch)
        if files is None:
            files = {p.name: p.read_text() for p in EXAMPLE_APP.iterdir() if p.is_file()}
        repo.commit(files, "initial")
        return repo
    return make


@pytest.fixture
def hello_repo(make_repo: Callable[..., GitRepo]) -> GitRepo:
    return make_repo("hello")


def pytest_report_header(config: pytest.Config) -> str:
    database = "PostgreSQL " + TEST_POSTGRES.split("@")[-1] if TEST_POSTGRES else "SQLite"
    return f"stcloud test cache: {CACHE_ROOT}; git: {shutil.which('git')}; database: {database}"
