"""Fixture repositories of each dependency format (tests/corpus/), each built through an
engine's real `ensure_env` and started on every runtime this machine has: the app's page
names the versions it imported, so a test sees that the file discovery chose was the one
installed (old pins of small pure-Python packages: six 1.12.0, tomli 1.2.3, a package of
the repository itself, a wheel committed into it), that dependency groups, extras and
dev-packages were left out (their packages do not exist: installing them would fail the
build), and which Streamlit the app got (the default for a file with no `streamlit` line,
exactly the pinned release otherwise, an old release through its own endpoints, and the
newest release that installs on the app's Python when the default does not: Streamlit
1.67 needs Python 3.11).

A push's dependency change is the `EnvSpec.dep_hash` of the new tree (supervisor/sources/updates.py
compares it with the running app's); `test_push_detection_watches_the_discovered_files`
checks that hash as the supervisor computes it for an app whose main file is in a folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from models import App
from supervisor.control.health import HealthPaths, wait_for_streamlit
from supervisor.control.lifecycle import Lifecycle
from supervisor.runtimes.base import AppSpec
from tests.support.corpus import CASES, Case, build_failure, corpus_spec, write_checkout
from tests.support.runtimes import make_runtime
from tests.support.streamlit_client import LEGACY_STREAM_PATH, STREAM_PATH, open_streamlit_session

pytestmark = pytest.mark.no_database

NO_STREAMLIT_LINE = "The app pins no streamlit: installing streamlit=="
FALLBACK_LINE = "installing the newest Streamlit that supports"


SWARM_CASES = ["wheel-in-repo"]  # a swarm service runs the image the Docker build made
APP_IDS = {"process": 100, "docker": 200, "swarm": 300}


def build_and_open(engine: str, settings: Any, checkout: Path, case: Case,
                   app_id: int) -> tuple[dict[str, Any], list[str]]:
    """Build the checkout's environment, start the app, wait for its health endpoint
    (whichever its release has), run its script once in a real session; (what the
    session saw, the build log)."""
    runtime = make_runtime(engine, settings)
    lines: list[str] = []

    async def scenario() -> dict[str, Any]:
        try:
            spec = corpus_spec(settings, checkout, case.main_file)
            env = await asyncio.wait_for(runtime.ensure_env(spec, lines.append), 900)
            app = AppSpec(app_id=app_id, name=f"deps{app_id}", checkout=checkout,
                          main_file=case.main_file, memory_limit_mb=512,
                          log_path=settings.logs_path / str(app_id) / "app.log")
            inst = await runtime.start(app, env)
            try:
                where = f"{inst.address[0]}:{inst.address[1]}"

                async def alive() -> bool:
                    return (await runtime.poll(app_id, inst.state)).alive
                healthy = await wait_for_streamlit(f"http://{where}", alive, 90, HealthPaths())
                assert healthy, f"instance {'died' if healthy is False else 'never healthy'}"
                return await open_streamlit_session(
                    f"ws://{where}", where, timeout=60,
                    path=LEGACY_STREAM_PATH if case.legacy else STREAM_PATH,
                    protocols=() if case.legacy else ("streamlit",))
            finally:
                await runtime.stop(app_id, inst.state)
        finally:
            await runtime.close()

    return asyncio.run(scenario()), lines


def assert_rendered(seen: dict[str, Any], case: Case, settings: Any, log: list[str]) -> None:
    """The script ran to its end and showed what the case expects, on the Streamlit the
    dependency file asked for (the server's default when it names none)."""
    shown = " ".join(seen["texts"])
    context = (shown, "\n".join(log[-40:]))
    assert not seen["exceptions"], seen["exceptions"]
    assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", context
    for text in case.shows:
        assert text in shown, context
    assert any(case.log_line in line for line in log), "\n".join(log)
    defaulted = any(NO_STREAMLIT_LINE in line for line in log)
    reused = any("Reusing the environment" in line for line in log)
    if case.streamlit:
        assert not defaulted, "\n".join(log)
    else:
        assert defaulted or reused, "\n".join(log)
    if case.fallback:  # the newest release for that Python, not the default
        assert reused or any(FALLBACK_LINE in line for line in log), "\n".join(log)
        assert "streamlit=" in shown, context
        assert f"streamlit={settings.default_streamlit}" not in shown, context
    elif not case.legacy:
        assert f"streamlit={case.streamlit or settings.default_streamlit}" in shown, context


def run_case(engine: str, name: str, settings: Any, tmp_path: Path) -> None:
    case = CASES[name]
    checkout = write_checkout(tmp_path, name)
    seen, log = build_and_open(engine, settings, checkout, case,
                               APP_IDS[engine] + list(CASES).index(name))
    assert_rendered(seen, case, settings, log)


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_renders_on_the_process_runtime(name: str, settings: Settings,
                                               tmp_path: Path) -> None:
    run_case("process", name, settings, tmp_path)


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_renders_on_docker(name: str, settings: Settings, tmp_path: Path) -> None:
    run_case("docker", name, settings, tmp_path)


@pytest.mark.parametrize("name", SWARM_CASES)
def test_corpus_renders_on_swarm(name: str, settings: Settings, tmp_path: Path) -> None:
    run_case("swarm", name, settings, tmp_path)


def test_conda_only_package_fails_with_a_clear_message(settings: Settings,
                                                      tmp_path: Path) -> None:
    message = build_failure("process", settings, tmp_path, "conda-only-package")
    assert message.startswith("stcloud-conda-only-fixture-package from environment.yml is "
                              "not on the Python package index"), message
    assert "no conda channel is reachable on this platform" in message


def test_push_detection_watches_the_discovered_files(ctx, tmp_path: Path) -> None:
    """The hash a push is compared by (Lifecycle.env_spec, as supervisor/sources/updates.py calls
    it) follows the main file's folder: the root's ignored file changing is a code-only
    push, the used file or a file it names changing is a new environment."""
    lifecycle = Lifecycle(ctx, None)  # type: ignore[arg-type]
    app = App(main_file="app/streamlit_app.py", python_version="", workspace_id=1)

    def hash_with(changes: dict[str, str]) -> str:
        root = write_checkout(tmp_path / str(len(list(tmp_path.iterdir()))), "subfolder-app")
        for rel, content in changes.items():
            (root / rel).write_text(content)
        return lifecycle.env_spec(app, root).dep_hash

    served = hash_with({})
    assert hash_with({"requirements.txt": "six==1.15.0\n"}) == served
    assert hash_with({"app/requirements.txt": "six==1.15.0\n"}) != served
    assert hash_with({"app/requirements.txt": "-r more.txt\n", "app/more.txt": "six\n"}) != \
        hash_with({"app/requirements.txt": "-r more.txt\n", "app/more.txt": "six<2\n"})
    assert hash_with({"app/.python-version": "3.12\n"}) != served
