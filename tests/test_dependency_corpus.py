"""Fixture repositories of each dependency format (tests/corpus/), each built through an
engine's real `ensure_env` and started: the app's page names the versions it imported, so
a test sees that the file discovery chose was the one installed (old pins of small
pure-Python packages: six 1.12.0, tomli 1.2.3, and a package of the repository itself).

A push's dependency change is the `EnvSpec.dep_hash` of the new tree (supervisor/updates.py
compares it with the running app's); `test_push_detection_watches_the_discovered_files`
checks that hash as the supervisor computes it for an app whose main file is in a folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from models import App
from supervisor.lifecycle import Lifecycle
from supervisor.runtimes.base import AppSpec, BuildError, EnvSpec
from tests.conftest import corpus_files
from tests.streamlit_client import open_streamlit_session
from tests.test_runtime_contract import make_runtime, wait_healthy

pytestmark = pytest.mark.no_database

# corpus folder -> (main file, the versions its page must show)
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "subfolder-app": ("app/streamlit_app.py", {"six": "1.12.0"}),
    "pipfile-lock": ("streamlit_app.py", {"six": "1.12.0"}),
    "requirements-relative": ("streamlit_app.py", {"six": "1.12.0", "localpkg": "0.3.1"}),
    "environment-yml": ("streamlit_app.py", {"six": "1.12.0", "tomli": "1.2.3"}),
    "poetry-no-package": ("streamlit_app.py", {"six": "1.12.0", "tomli": "1.2.3"}),
}
# What the build log must say about each choice.
LOG_LINES = {
    "subfolder-app": "Using app/requirements.txt; ignoring requirements.txt at the root.",
    "pipfile-lock": "Installing the exact versions of Pipfile.lock",
    "requirements-relative": "Using requirements.txt at the root.",
    "environment-yml": "Leaving out _libgcc_mutex, libgcc-ng, pip from environment.yml",
    "poetry-no-package": "Installing [tool.poetry.dependencies] of pyproject.toml",
}
DOCKER_CASES = ["subfolder-app", "pipfile-lock", "requirements-relative"]


def write_checkout(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "checkout"
    for rel, content in corpus_files(name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        assert isinstance(content, bytes)
        path.write_bytes(content)
    return root


def corpus_spec(settings: Any, checkout: Path, main_file: str) -> EnvSpec:
    spec = EnvSpec.from_checkout(checkout, "", settings.default_streamlit, main_file=main_file)
    if not spec.python_version:  # as Lifecycle.env_spec: the server's default
        spec = dataclasses.replace(spec, python_version=settings.default_python)
    return spec


def build_and_open(engine: str, settings: Any, checkout: Path, main_file: str,
                   app_id: int) -> tuple[dict[str, Any], list[str]]:
    """Build the checkout's environment, start the app, run its script once; (what the
    session saw, the build log)."""
    runtime = make_runtime(engine, settings)
    lines: list[str] = []

    async def scenario() -> dict[str, Any]:
        try:
            spec = corpus_spec(settings, checkout, main_file)
            env = await asyncio.wait_for(runtime.ensure_env(spec, lines.append), 900)
            app = AppSpec(app_id=app_id, name=f"deps{app_id}", checkout=checkout,
                          main_file=main_file, memory_limit_mb=512,
                          log_path=settings.logs_path / str(app_id) / "app.log")
            inst = await runtime.start(app, env)
            try:
                await wait_healthy(inst.address, runtime, app_id, inst.state, timeout=90)
                where = f"{inst.address[0]}:{inst.address[1]}"
                return await open_streamlit_session(f"ws://{where}", where, timeout=60)
            finally:
                await runtime.stop(app_id, inst.state)
        finally:
            await runtime.close()

    return asyncio.run(scenario()), lines


def assert_versions(seen: dict[str, Any], versions: dict[str, str], log: list[str]) -> None:
    shown = " ".join(seen["texts"])
    assert not seen["exceptions"], seen["exceptions"]
    for name, version in versions.items():
        assert f"{name}={version}" in shown, (shown, "\n".join(log[-40:]))


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_builds_and_imports_on_the_process_runtime(name: str, settings,
                                                          tmp_path: Path) -> None:
    main_file, versions = CASES[name]
    checkout = write_checkout(tmp_path, name)
    seen, log = build_and_open("process", settings, checkout, main_file,
                               41 + list(CASES).index(name))
    assert_versions(seen, versions, log)
    assert any(LOG_LINES[name] in line for line in log), "\n".join(log)


@pytest.mark.parametrize("name", DOCKER_CASES)
def test_corpus_builds_and_imports_on_docker(name: str, settings, tmp_path: Path) -> None:
    main_file, versions = CASES[name]
    checkout = write_checkout(tmp_path, name)
    seen, log = build_and_open("docker", settings, checkout, main_file,
                               51 + DOCKER_CASES.index(name))
    assert_versions(seen, versions, log)
    assert any(LOG_LINES[name] in line for line in log), "\n".join(log)


def test_conda_only_package_fails_with_a_clear_message(settings, tmp_path: Path) -> None:
    checkout = write_checkout(tmp_path, "conda-only-package")
    runtime = make_runtime("process", settings)

    async def build() -> None:
        try:
            spec = corpus_spec(settings, checkout, "streamlit_app.py")
            await asyncio.wait_for(runtime.ensure_env(spec, lambda line: None), 600)
        finally:
            await runtime.close()

    with pytest.raises(BuildError) as err:
        asyncio.run(build())
    message = str(err.value)
    assert message.startswith("stcloud-conda-only-fixture-package from environment.yml is "
                              "not on the Python package index"), message
    assert "no conda channel is reachable on this platform" in message


def test_push_detection_watches_the_discovered_files(ctx, tmp_path: Path) -> None:
    """The hash a push is compared by (Lifecycle.env_spec, as supervisor/updates.py calls
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
