"""The Python pins of Pipfile (`[requires] python_version`) and environment.yml (`python=3.x`)
are honoured up front, as the build honours them: a deploy whose dependency file asks for a
version the runtime does not offer is refused before it is queued, naming the file and the
offered versions, through the backend call and the deploy use-case alike; and the up-front
reading agrees with the build's (`EnvSpec.from_checkout`) on the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import python_pins
from backend.apps import deploy
from backend.apps import service as apps
from backend.context import Context
from backend.errors import ValidationError
from backend.platform.supervisor_report import PlatformInfo, write_platform
from supervisor.runtimes.base import EnvSpec

OFFERED = ["3.11", "3.12", "3.13"]
APP = "import streamlit as st\nst.write('hi')\n"
PIPFILE = ('[[source]]\nurl = "https://pypi.org/simple"\nverify_ssl = true\nname = "pypi"\n\n'
           '[packages]\nsix = "*"\n\n[requires]\npython_version = "{v}"\n')
ENVIRONMENT = ("name: app\nchannels:\n  - conda-forge\ndependencies:\n  - python={v}\n"
               "  - six\n  - pip:\n    - toolz\n")


def runtime_offers(ctx: Context, versions: list[str]) -> None:
    write_platform(ctx, PlatformInfo(engine="process", python_versions=versions))


CASES = [
    ("pipfile", {"streamlit_app.py": APP, "Pipfile": PIPFILE.format(v="3.8")},
     "streamlit_app.py", "Pipfile"),
    ("conda", {"app/main.py": APP, "app/environment.yml": ENVIRONMENT.format(v="3.7"),
               "requirements.txt": "six\n"}, "app/main.py", "app/environment.yml"),
]


@pytest.mark.parametrize(("name", "files", "main_file", "source"), CASES)
def test_a_dependency_file_pin_the_runtime_lacks_is_refused_up_front(
        name: str, files: dict[str, str], main_file: str, source: str, ctx, admin,
        make_repo) -> None:
    repo = make_repo(f"pin-{name}", files)
    runtime_offers(ctx, OFFERED)
    for attempt in (
            lambda: apps.deploy_app(ctx, admin, repo_url=repo.url, main_file=main_file),
            lambda: deploy.deploy(ctx, admin, deploy.DeployRequest(
                repo_url=repo.url, branch="main", main_file=main_file))):
        with pytest.raises(ValidationError) as refused:
            attempt()
        assert refused.value.field == "python_version"
        assert f"({source} asks for it)" in refused.value.message, refused.value.message
        assert "it offers 3.11, 3.12, 3.13" in refused.value.message
        assert f"or change {source}" in refused.value.message
    assert apps.list_apps(ctx, admin) == []  # nothing queued
    # The app's own choice overrides the pin, as at build time.
    view = apps.deploy_app(ctx, admin, repo_url=repo.url, main_file=main_file,
                           python_version="3.12")
    assert view.state == "queued"


def test_an_offered_pin_and_a_python_version_file_first(ctx, admin, make_repo) -> None:
    runtime_offers(ctx, OFFERED)
    fine = make_repo("pin-ok", {"streamlit_app.py": APP, "Pipfile": PIPFILE.format(v="3.12")})
    assert apps.deploy_app(ctx, admin, repo_url=fine.url).state == "queued"
    # .python-version wins over the Pipfile's pin: the build uses 3.12, so no refusal.
    both = make_repo("pin-both", {"streamlit_app.py": APP, ".python-version": "3.12\n",
                                  "Pipfile": PIPFILE.format(v="3.8")})
    assert apps.deploy_app(ctx, admin, repo_url=both.url, subdomain="both").state == "queued"


@pytest.mark.parametrize(("files", "main_file"), [
    ({"Pipfile": PIPFILE.format(v="3.10")}, "streamlit_app.py"),
    ({"Pipfile": '[requires]\npython_full_version = "3.9.18"\n'}, "streamlit_app.py"),
    ({"environment.yml": ENVIRONMENT.format(v="3.10.*")}, "streamlit_app.py"),
    ({"environment.yml": ENVIRONMENT.replace("python={v}", "python>=3.9")}, "streamlit_app.py"),
    ({"app/environment.yml": ENVIRONMENT.format(v="3.12"), "Pipfile": PIPFILE.format(v="3.9")},
     "app/main.py"),
    ({"uv.lock": "version = 1\n", "Pipfile": PIPFILE.format(v="3.9")}, "streamlit_app.py"),
    ({"requirements.txt": "six\n", "environment.yml": ENVIRONMENT.format(v="3.10")},
     "streamlit_app.py"),
])
def test_the_up_front_pin_is_the_builds(files: dict[str, str], main_file: str,
                                        tmp_path: Path) -> None:
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    built = EnvSpec.from_checkout(tmp_path, "", "1.67.0", main_file=main_file).python_version
    found, _ = python_pins.repository_python(
        {p: t.encode() for p, t in files.items()}, main_file)
    assert python_pins.python_minor(found) == python_pins.python_minor(built), (found, built)
