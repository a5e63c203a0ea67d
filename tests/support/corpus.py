"""The fixture repositories of tests/corpus/ as the dependency tests use them: what each
working one must show and log (`CASES`), what each failing one's build says
(`BUILD_FAILURES`), a checkout of one, the environment a deploy of it builds, the message a
build fails with, and the host details no message may contain."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.base import BuildError, EnvSpec
from tests.conftest import corpus_files
from tests.support.runtimes import make_runtime


@dataclasses.dataclass(frozen=True)
class Case:
    main_file: str
    shows: tuple[str, ...]  # what the page must show ("name=version", "tomli=absent")
    log_line: str  # what the build log must say about the dependency file chosen
    streamlit: str = ""  # the release the file pins ("" none: the server's default)
    legacy: bool = False  # Streamlit before 1.18: /healthz and /stream
    fallback: bool = False  # the default Streamlit does not install on the app's Python


CASES: dict[str, Case] = {
    "subfolder-app": Case("app/streamlit_app.py", ("six=1.12.0",),
                          "Using app/requirements.txt; ignoring requirements.txt at the root."),
    "pipfile-lock": Case("streamlit_app.py", ("six=1.12.0",),
                         "Installing the exact versions of Pipfile.lock"),
    "pipfile-no-lock": Case("streamlit_app.py", ("six=1.12.0", "tomli=1.2.3"),
                            "Installing the [packages] of Pipfile ([dev-packages] are not"),
    "requirements-relative": Case("streamlit_app.py", ("six=1.12.0", "localpkg=0.3.1"),
                                  "Using requirements.txt at the root."),
    "wheel-in-repo": Case("streamlit_app.py", ("six=1.12.0", "stcloud-wheelpkg=0.2.0"),
                          "Using requirements.txt at the root."),
    "environment-yml": Case("streamlit_app.py", ("six=1.12.0", "tomli=1.2.3"),
                            "Leaving out _libgcc_mutex, libgcc-ng, pip from environment.yml"),
    "uv-lock": Case("streamlit_app.py", ("six=1.12.0", "tomli=absent"),
                    "Installing the locked dependencies of uv.lock with uv."),
    "pep621-pyproject": Case("streamlit_app.py", ("six=1.12.0", "tomli=1.2.3"),
                             "Installing [project].dependencies of pyproject.toml"),
    "poetry-no-package": Case("streamlit_app.py", ("six=1.12.0", "tomli=1.2.3"),
                              "Installing [tool.poetry.dependencies] of pyproject.toml"),
    "poetry-package": Case("streamlit_app.py", ("six=1.12.0", "tomli=1.2.3",
                                                "helpers from the repository"),
                           "Installing [tool.poetry.dependencies] of pyproject.toml"),
    "streamlit-pinned": Case("streamlit_app.py", ("six=1.12.0",),
                             "Using requirements.txt at the root.", streamlit="1.66.0"),
    "old-streamlit-1.12": Case("streamlit_app.py", ("Streamlit 1.12.0 says hello",),
                               "Using requirements.txt at the root.", streamlit="1.12.0",
                               legacy=True),
    "python310-no-streamlit": Case("streamlit_app.py", ("six=1.12.0",),
                                   "Using requirements.txt at the root.", fallback=True),
}


# corpus folder -> the start of the message its build fails with (on every runtime)
BUILD_FAILURES = {
    "missing-package": "No package named 'stcloud-no-such-package-zz' on the package index. "
                       "Check the name 'stcloud-no-such-package-zz' in requirements.txt",
    "broken-pin": "requirements.txt pins six==99.0.0, which does not exist. Choose a version "
                  "of six that is published on the package index",
    "missing-wheel": "A dependency file names wheels/stcloud_gone-1.0-py3-none-any.whl, which "
                     "is not a file or folder of the repository; commit it",
    "unreachable-git": "stcloud-gitpkg could not be fetched from "
                       "git+http://localhost:9/nothing.git (git: unable to access",
    "failing-sdist": "A package of requirements.txt failed to build from source "
                     "(RuntimeError: this package cannot be built here: missing libfoo "
                     "headers).",
}


def build_failure(engine: str, settings: Settings, tmp_path: Path, name: str) -> str:
    """The message of the BuildError that building corpus repository `name` ends in."""
    checkout = write_checkout(tmp_path, name)
    runtime = make_runtime(engine, settings)

    async def build() -> None:
        try:
            spec = corpus_spec(settings, checkout, "streamlit_app.py")
            await asyncio.wait_for(runtime.ensure_env(spec, lambda line: None), 600)
        finally:
            await runtime.close()

    with pytest.raises(BuildError) as err:
        asyncio.run(build())
    return str(err.value)


def write_checkout(tmp_path: Path, name: str) -> Path:
    """`tmp_path/checkout` holding the corpus repository `name` (tests/corpus/<name>/)."""
    root = tmp_path / "checkout"
    for rel, content in corpus_files(name).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        assert isinstance(content, bytes)
        path.write_bytes(content)
    return root


def corpus_spec(settings: Any, checkout: Path, main_file: str) -> EnvSpec:
    """The environment a deploy of `checkout` would build (the server's default Python
    unless the checkout names one)."""
    spec = EnvSpec.from_checkout(checkout, "", settings.default_streamlit, main_file=main_file)
    if not spec.python_version:  # as Lifecycle.env_spec: the server's default
        spec = dataclasses.replace(spec, python_version=settings.default_python)
    return spec


def host_details(settings: Settings, text: str) -> list[str]:
    """Host paths and internal addresses found in `text` (none may reach a deployer)."""
    paths = [str(settings.data_dir), str(settings.envs_path), str(settings.uv_cache_path)]
    relative = ["/".join(p.strip("/").split("/")[1:]) for p in paths]  # as uv may print them
    found = [p for p in [*paths, *relative, "/root/", ".pyenv"] if p in text]
    return found + re.findall(r"127\.0\.0\.1:\d+", text)
