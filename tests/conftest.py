"""Shared fixtures: settings on a temporary data dir, a backend context, git repos.

Built environments and uv's cache are shared by the whole test session (and uv's cache
across sessions, under ~/.cache/stcloud-tests) so that each dependency set is built once.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.accounts import auth
from backend.context import Context, open_context
from backend.platform.settings import PROJECT_ROOT, Settings
from backend.platform.settings_load import load_settings

EXAMPLE_APP = PROJECT_ROOT / "examples" / "hello"
CACHE_ROOT = Path(os.environ.get("STCLOUD_TEST_CACHE", Path.home() / ".cache" / "stcloud-tests"))
# A PostgreSQL server URL (scripts/ci-postgres.sh prints one) for the tests that need
# PostgreSQL. With STCLOUD_TEST_DATABASE=postgresql as well, every test's database is a fresh
# PostgreSQL database cloned from a migrated template instead of a SQLite file, and only the
# tests that use a database run (the PostgreSQL pass of scripts/test.sh).
TEST_POSTGRES = os.environ.get("STCLOUD_TEST_POSTGRES", "")
POSTGRES_PASS = os.environ.get("STCLOUD_TEST_DATABASE", "sqlite") == "postgresql"
# One template per test process: a fixed name would let a concurrent run of another
# revision drop and re-migrate the template this run clones its databases from.
PG_TEMPLATE = f"stcloud_test_template_{uuid.uuid4().hex[:12]}"


def require_docker() -> bool:
    """Under REQUIRE_DOCKER=1 (CI), Docker tests fail instead of skipping."""
    return os.environ.get("REQUIRE_DOCKER") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    """A Docker SDK client of this host's daemon; skips without one (fails under
    REQUIRE_DOCKER=1)."""
    from supervisor.runtimes import docker_available
    if not docker_available():
        if require_docker():
            pytest.fail("REQUIRE_DOCKER=1 but no Docker daemon answers")
        pytest.skip("no Docker daemon")
    import docker
    client = docker.from_env(timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="module")
def swarm_client() -> Iterator[Any]:
    """A Docker SDK client of a daemon that is a swarm manager; skips without one (fails
    under REQUIRE_DOCKER=1)."""
    from supervisor.runtimes import swarm_available
    if not swarm_available():
        if require_docker():
            pytest.fail("REQUIRE_DOCKER=1 but no swarm manager answers "
                        "(bash scripts/ci-swarm.sh init)")
        pytest.skip("no swarm manager")
    import docker
    client = docker.from_env(timeout=120)
    yield client
    client.close()


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


class TestPostgres:
    """The test PostgreSQL server: fresh databases cloned from a template migrated once."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._template_ready = False

    def _template(self) -> str:
        if not self._template_ready:
            from models.engine import make_engine, migrate
            _pg_admin(self.server_url, f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}" WITH (FORCE)',
                      f'CREATE DATABASE "{PG_TEMPLATE}"')
            engine = make_engine(_pg_url(self.server_url, PG_TEMPLATE))
            migrate(engine)
            engine.dispose()
            self._template_ready = True
        return PG_TEMPLATE

    def create(self) -> str:
        """A fresh migrated database; returns its URL."""
        name = f"stcloud_t_{uuid.uuid4().hex[:12]}"
        _pg_admin(self.server_url, f'CREATE DATABASE "{name}" TEMPLATE "{self._template()}"')
        return _pg_url(self.server_url, name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        _pg_admin(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_template(self) -> None:
        if self._template_ready:
            _pg_admin(self.server_url, f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}" WITH (FORCE)')
            self._template_ready = False


@pytest.fixture(scope="session")
def test_postgres() -> Iterator[TestPostgres]:
    """The PostgreSQL server of STCLOUD_TEST_POSTGRES; skips locally without one, fails in CI
    (where .ci/run starts it)."""
    if not TEST_POSTGRES:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must provide STCLOUD_TEST_POSTGRES (scripts/ci-postgres.sh)")
        pytest.skip("no PostgreSQL server (set STCLOUD_TEST_POSTGRES; CI does)")
    server = TestPostgres(TEST_POSTGRES)
    yield server
    server.drop_template()


@pytest.fixture
def new_postgres_database(test_postgres: TestPostgres) -> Iterator[Callable[[], str]]:
    """new_postgres_database() -> URL of a fresh, migrated PostgreSQL database (dropped after
    the test), for tests that need PostgreSQL whatever the pass."""
    made: list[str] = []

    def make() -> str:
        made.append(test_postgres.create())
        return made[-1]

    yield make
    for url in made:
        test_postgres.drop(url)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """'' (SQLite in the data dir) or, in the PostgreSQL pass, a fresh PostgreSQL database:
    the whole suite runs on either."""
    yield from _database_url(request)


@pytest.fixture(scope="module")
def module_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """database_url for module-scoped fixtures (one database per module)."""
    yield from _database_url(request)


def _database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if not POSTGRES_PASS:
        yield ""
        return
    server: TestPostgres = request.getfixturevalue("test_postgres")
    url = server.create()
    yield url
    server.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """'' (SQLite in the data dir), then the URL of a fresh PostgreSQL database: a test that
    takes it runs once on each, whatever the pass (PostgreSQL skips without a server)."""
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("new_postgres_database")()
    return url


@pytest.fixture
def settings(tmp_path: Path, shared_envs_dir: Path, database_url: str) -> Settings:
    """Settings on a fresh data dir, process runtime, a free port, shared envs and cache."""
    return load_settings(env={}, data_dir=tmp_path / "data", envs_dir=shared_envs_dir,
                         uv_cache_dir=CACHE_ROOT / "uv", port=free_port(), runtime="process",
                         reconcile_interval=0.2, health_timeout=60.0, database_url=database_url)


@pytest.fixture(params=["process", "docker"])
def engine_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """`settings` on each engine a supervisor test runs against (Docker skipped, or failed
    under REQUIRE_DOCKER=1, when no daemon answers)."""
    if request.param == "docker":
        from supervisor.runtimes import docker_available
        if not docker_available():
            if require_docker():
                pytest.fail("REQUIRE_DOCKER=1 but no Docker daemon answers")
            pytest.skip("no Docker daemon")
    return dataclasses.replace(settings, runtime=request.param)


@pytest.fixture
def ssettings(settings: Settings) -> Settings:
    """`settings` on the swarm engine."""
    return dataclasses.replace(settings, runtime="swarm")


@pytest.fixture
def ctx(settings: Settings) -> Context:
    return open_context(settings)


@pytest.fixture
def db_ctx(settings: Settings, db_url: str) -> Context:
    """`ctx` on SQLite and on PostgreSQL (`db_url`), with a 30 s leader lease: long enough
    that no step of a loaded machine outlives it, so only a test's own expiry ends it."""
    return open_context(dataclasses.replace(settings, database_url=db_url, lease_seconds=30))


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


CORPUS = Path(__file__).resolve().parent / "corpus"
STATIC_REPOS = Path(tempfile.gettempdir()) / f"stcloud-test-repos-{os.getpid()}"
atexit.register(shutil.rmtree, STATIC_REPOS, True)


def static_repo(owner: str, name: str) -> str:
    """The path of a local repository `…/<owner>/<name>.git` (workspace `owner`) holding a
    one-line app, made once per test process, for module constants: a deploy through the
    API or the form reads the repository first, so one that does not exist is refused."""
    bare = STATIC_REPOS / owner / f"{name}.git"
    if not bare.exists():
        work = STATIC_REPOS / f"{owner}-{name}-work"
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "--bare", "-q", "-b", "main", str(bare), cwd=bare.parent)
        _git("init", "-q", "-b", "main", str(work), cwd=bare.parent)
        (work / "streamlit_app.py").write_text("import streamlit as st\nst.write('hi')\n")
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", "initial", cwd=work)
        _git("push", "-q", str(bare), "main", cwd=work)
    return str(bare)


def corpus_files(name: str) -> dict[str, str | bytes | None]:
    """The files of the fixture repository `tests/corpus/<name>/` (relative path -> bytes),
    ready for `make_repo(name, corpus_files(name))`."""
    root = CORPUS / name
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


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
    database = "PostgreSQL " + TEST_POSTGRES.split("@")[-1] if POSTGRES_PASS else "SQLite"
    return f"stcloud test cache: {CACHE_ROOT}; git: {shutil.which('git')}; database: {database}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under tests/browser/ are marked `browser` (scripts/test.sh runs them alone).
    The PostgreSQL pass keeps only the tests that use a database (through the
    `database_url` or `module_database_url` fixture, and not marked `no_database`): every other
    test would run exactly as in the SQLite pass."""
    for item in items:
        if "tests/browser/" in item.nodeid:
            item.add_marker(pytest.mark.browser)
    if not POSTGRES_PASS:
        return
    def uses_database(item: pytest.Item) -> bool:
        if item.get_closest_marker("no_database"):
            return False
        params = getattr(getattr(item, "callspec", None), "params", {})
        if {"sqlite", "postgresql"} & {str(v) for v in params.values()}:
            return False  # parametrized over both databases: the SQLite pass ran both
        if item.get_closest_marker("browser"):
            # Chromium flows run alone in the SQLite pass (under load their waits time out);
            # the dashboard's queries run on PostgreSQL under AppTest (tests/test_dashboard*.py).
            return False
        names = getattr(item, "fixturenames", ())
        return "database_url" in names or "module_database_url" in names

    keep = [item for item in items if uses_database(item)]
    dropped = [item for item in items if not uses_database(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
