"""A deploy asking for what the runtime cannot give is refused before it is queued, with the
reason and the alternative: packages.txt on a process runtime that cannot make a Debian root
filesystem (no debootstrap) or with a Python none of those trees has, a Python version the
runtime does not offer. The same rule holds for the backend call, the REST API and the deploy form;
the build applies it to pushes (tests/integration/test_python_versions.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from backend import app_requirements
from backend.accounts import api_tokens
from backend.apps import service as apps
from backend.context import Context
from backend.errors import ValidationError
from backend.platform.supervisor_report import PlatformInfo, write_platform
from pages.dashboard import _ui as ui
from supervisor.api import make_api_app
from supervisor.runtimes import rootfs
from supervisor.runtimes.base import BuildError, EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from tests.support.api_world import StubReconciler
from tests.support.dashboard import (
    fill_deploy,
    local_repo,
    open_dashboard,
    text,
)

OFFERED = ["3.9", "3.10", "3.11", "3.12", "3.13"]
PACKAGES = "# system libraries\nlibgl1\n\nffmpeg\n"
APP = "import streamlit as st\nst.write('hi')\n"


DEBIAN_PYTHONS = ["3.9", "3.11", "3.13"]


def runtime_reports(ctx: Context, engine: str,
                    packages_pythons: list[str] | None = None,
                    packages_problem: str = "") -> None:
    write_platform(ctx, PlatformInfo(engine=engine, python_versions=OFFERED,
                                     packages_pythons=packages_pythons or [],
                                     packages_problem=packages_problem))


def test_packages_txt_is_refused_up_front_on_the_process_runtime(ctx, admin,
                                                                 make_repo) -> None:
    repo = make_repo("needs-debs", {"streamlit_app.py": APP, "packages.txt": PACKAGES})
    runtime_reports(ctx, "process", packages_problem=rootfs.NO_DEBOOTSTRAP)
    with pytest.raises(ValidationError) as refused:
        apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="debs")
    assert refused.value.message == (
        "packages.txt asks for Debian packages (libgl1, ffmpeg), which the process runtime "
        "of this server cannot install: debootstrap is not installed, so no Debian root "
        "filesystem can be made: an operator must install it (`apt install debootstrap`, as "
        "root). Otherwise use the Docker runtime, or remove packages.txt if the packages are "
        "not needed.")
    assert apps.list_apps(ctx, admin) == []  # nothing queued
    runtime_reports(ctx, "docker")  # which installs them
    assert apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="debs").state == "queued"


def test_packages_txt_is_accepted_where_the_process_runtime_can_install_it(
        ctx, admin, make_repo) -> None:
    repo = make_repo("needs-debs", {"streamlit_app.py": APP, "packages.txt": PACKAGES})
    runtime_reports(ctx, "process", packages_pythons=DEBIAN_PYTHONS)  # debootstrap there
    assert apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="debs").state == "queued"


def test_packages_txt_with_a_python_no_debian_tree_has_is_refused(ctx, admin,
                                                                   make_repo) -> None:
    repo = make_repo("debs-312", {"streamlit_app.py": APP, "packages.txt": PACKAGES,
                                  ".python-version": "3.12\n"})
    runtime_reports(ctx, "process", packages_pythons=DEBIAN_PYTHONS)
    with pytest.raises(ValidationError) as refused:
        apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="debs")
    assert refused.value.field == "python_version"
    assert "whose Python is 3.9, 3.11, 3.13; this app uses Python 3.12 (.python-version " \
        "asks for it)" in refused.value.message
    assert apps.list_apps(ctx, admin) == []
    assert apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="debs",
                           python_version="3.13").state == "queued"


def test_a_python_pin_the_runtime_lacks_is_refused_with_the_offered_versions(
        ctx, admin, make_repo) -> None:
    old = make_repo("old-python", {"streamlit_app.py": APP, ".python-version": "3.8\n"})
    runtime_reports(ctx, "process")
    with pytest.raises(ValidationError) as refused:
        apps.deploy_app(ctx, admin, repo_url=old.url, subdomain="old")
    assert refused.value.field == "python_version"
    assert "Python 3.8 is not available on the process runtime" in refused.value.message
    assert ".python-version asks for it" in refused.value.message
    assert "3.9, 3.10, 3.11, 3.12, 3.13" in refused.value.message
    assert apps.list_apps(ctx, admin) == []
    # A version chosen in the deploy overrides the pin, as at build time.
    assert apps.deploy_app(ctx, admin, repo_url=old.url, subdomain="old",
                           python_version="3.12").state == "queued"
    pinned = make_repo("new-python", {"streamlit_app.py": APP, ".python-version": "3.12.4\n"})
    assert apps.deploy_app(ctx, admin, repo_url=pinned.url, subdomain="new").state == "queued"


def test_files_next_to_the_main_file_count_first(ctx, admin, make_repo) -> None:
    repo = make_repo("nested", {"app/main.py": APP, "app/packages.txt": PACKAGES,
                                ".python-version": "3.8\n", "app/.python-version": "3.12\n"})
    runtime_reports(ctx, "process")
    with pytest.raises(ValidationError) as refused:
        apps.deploy_app(ctx, admin, repo_url=repo.url, main_file="app/main.py")
    assert "packages.txt asks for Debian packages (libgl1, ffmpeg)" in refused.value.message
    runtime_reports(ctx, "docker")  # the folder's 3.12 wins over the root's 3.8
    assert apps.deploy_app(ctx, admin, repo_url=repo.url, main_file="app/main.py").state \
        == "queued"


def test_nothing_is_refused_before_a_runtime_reported(ctx, admin, make_repo) -> None:
    repo = make_repo("needs-debs", {"streamlit_app.py": APP, "packages.txt": PACKAGES})
    assert apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="debs").state == "queued"


def test_api_refuses_packages_txt_with_422(ctx, admin, make_repo) -> None:
    repo = make_repo("needs-debs", {"streamlit_app.py": APP, "packages.txt": PACKAGES})
    runtime_reports(ctx, "process")
    token = api_tokens.create_token(ctx, admin, "t", "read,deploy")[1]

    async def main() -> None:
        async with TestClient(TestServer(make_api_app(ctx, StubReconciler()))) as client:
            resp = await client.post("/apps", json={"repo_url": repo.url},
                                     headers={"Authorization": f"Bearer {token}"})
            body = await resp.json()
            assert resp.status == 422, body
            assert "packages.txt asks for Debian packages (libgl1, ffmpeg)" in str(body)
            assert "use the Docker runtime" in str(body)
    asyncio.run(main())
    assert apps.list_apps(ctx, admin) == []


def test_deploy_form_shows_the_refusal(dash, tmp_path: Path) -> None:
    repo = local_repo(tmp_path, {"streamlit_app.py": APP, "packages.txt": PACKAGES})
    runtime_reports(dash.ctx, "process")
    at = fill_deploy(open_dashboard(dash.admin, ui.DEPLOY), repo=repo)
    shown = text(at)
    assert "packages.txt asks for Debian packages (libgl1, ffmpeg)" in shown, shown
    assert "use the Docker runtime" in shown
    assert apps.list_apps(dash.ctx, dash.admin) == []


def test_process_build_refuses_packages_and_missing_pythons(settings, tmp_path: Path,
                                                            monkeypatch) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "packages.txt").write_text(PACKAGES)
    monkeypatch.setattr(rootfs, "debootstrap_available", lambda: False)
    runtime = ProcessRuntime(settings)
    spec = EnvSpec.from_checkout(checkout, "3.12", settings.default_streamlit)
    with pytest.raises(BuildError) as refused:
        asyncio.run(runtime.ensure_env(spec, lambda line: None))
    assert str(refused.value) == app_requirements.packages_refusal(
        ("libgl1", "ffmpeg"), runtime.packages_support()[1])
    (checkout / "packages.txt").unlink()
    spec = EnvSpec.from_checkout(checkout, "3.7", settings.default_streamlit)
    with pytest.raises(BuildError) as missing:
        asyncio.run(runtime.ensure_env(spec, lambda line: None))
    offered = ", ".join(runtime.python_versions())
    assert "Python 3.7 is not available on the process runtime" in str(missing.value)
    assert f"it offers {offered}." in str(missing.value)
