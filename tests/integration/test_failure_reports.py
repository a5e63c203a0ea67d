"""Failures a deployer can act on, through a real supervisor (process runtime): a build that
pins a package the index lacks, a source distribution that fails to build, a clone of a
repository that does not exist, a crash after a reboot, and the log view. Each reason names
what is responsible, quotes only what matters, and shows no host path."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings import Settings
from models import App, session_scope
from tests.conftest import corpus_files
from tests.support.corpus import host_details
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

DONE = {"running", "build_failed", "crashed"}


@pytest.fixture
def crash_once(settings: Settings) -> Settings:
    """Settings where one crash leaves the app `crashed` (no restart)."""
    return dataclasses.replace(settings, crash_backoff="")


@pytest.fixture
def supervisor(crash_once: Settings, tmp_path: Path) -> Iterator[SupervisorProcess]:
    sup = SupervisorProcess(crash_once, tmp_path / "supervisor.log").start()
    yield sup
    sup.stop()


def test_failures_are_explained(crash_once, admin, supervisor, make_repo, tmp_path) -> None:
    settings, user = crash_once, admin
    ctx = open_context(settings)

    missing = make_repo("missing-package", corpus_files("missing-package"))
    sdist = make_repo("failing-sdist", corpus_files("failing-sdist"))  # ./badpkg
    cases = {
        "missing": apps.deploy_app(ctx, user, repo_url=missing.url, subdomain="missing"),
        "sdist": apps.deploy_app(ctx, user, repo_url=sdist.url, subdomain="sdist"),
        "norepo": apps.deploy_app(ctx, user, repo_url=str(tmp_path / "nowhere.git"),
                                  subdomain="norepo"),
    }
    reasons = {}
    for name, view in cases.items():
        app = wait_for_state(ctx, view.id, DONE, timeout=300, sup=supervisor)
        assert app.state == "build_failed", (name, app.state, app.state_reason)
        reasons[name] = app.state_reason
        assert not host_details(settings, app.state_reason), (name, app.state_reason)
        event = apps.app_events(ctx, user, view.id)[0]
        assert event.reason == app.state_reason

    assert reasons["missing"].startswith(
        "No package named 'stcloud-no-such-package-zz' on the package index. Check the name "
        "'stcloud-no-such-package-zz' in requirements.txt"), reasons["missing"]
    assert reasons["sdist"].startswith(
        "A package of requirements.txt failed to build from source (RuntimeError: this "
        "package cannot be built here: missing libfoo headers)."), reasons["sdist"]
    assert "error: The build backend returned an error" in reasons["sdist"]
    # git's own words, not only its last line ("and the repository exists.")
    assert "does not appear to be a git repository" in reasons["norepo"], reasons["norepo"]
    assert reasons["norepo"].startswith(f"The repository {tmp_path / 'nowhere.git'} could "
                                        "not be read")
    # the whole output is still one click away
    assert "missing libfoo headers" in app_logs.read_full(ctx, user, cases["sdist"].id,
                                                   "build").decode()


def run_session(settings: Settings, subdomain: str) -> None:
    host = f"{subdomain}.localhost:{settings.port}"
    asyncio.run(open_streamlit_session(f"ws://127.0.0.1:{settings.port}", host, 30))


def test_crash_after_reboot_quotes_only_its_run_and_logs_show_the_public_url(
        crash_once, admin, supervisor, make_repo) -> None:
    settings, user = crash_once, admin
    ctx = open_context(settings)
    repo = make_repo("crash-on-view", corpus_files("crash-on-view"))
    view = apps.deploy_app(ctx, user, repo_url=repo.url, subdomain="crashy")
    app = wait_for_state(ctx, view.id, DONE, timeout=300, sup=supervisor)
    assert app.state == "running", app.state_reason

    shown = app_logs.read_logs(ctx, user, view.id)
    public = settings.public_url("crashy")
    assert f"URL: {public}" in shown["app"], shown["app"]
    assert not host_details(settings, shown["app"]), shown["app"]
    assert not host_details(settings, shown["build"]), shown["build"]
    tail = app_logs.read_tail(ctx, user, view.id, "app").text
    assert f"URL: {public}" in tail and not host_details(settings, tail)

    def marker_of(text: str) -> set[str]:
        return set(re.findall(r"RUN-MARKER [0-9a-f]{32}", text))

    run_session(settings, "crashy")
    app = wait_for_state(ctx, view.id, {"crashed", "build_failed"}, timeout=60, sup=supervisor)
    first = marker_of(app.state_reason)
    assert len(first) == 1, app.state_reason

    apps.reboot_app(ctx, user, view.id)
    wait_until(lambda: _state(ctx, view.id) == "running", 180, "the reboot", supervisor)
    run_session(settings, "crashy")
    app = wait_for_state(ctx, view.id, {"crashed", "build_failed"}, timeout=60, sup=supervisor)
    second = marker_of(app.state_reason)
    assert len(second) == 1 and second != first, app.state_reason
    assert first <= marker_of(app_logs.read_logs(ctx, user, view.id)["app"])  # still in the log
    assert not host_details(settings, app.state_reason), app.state_reason


def _state(ctx: Context, app_id: int) -> str:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        return app.state if app else ""
