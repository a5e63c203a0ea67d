"""A repository with packages.txt deployed on a real supervisor running the process runtime:
the supervisor reports that it can install Debian packages, the deploy passes the up-front
check, the app is built over the cached Debian root filesystem and its page, through the
proxy, shows what the Debian program it installed printed (tests/corpus/debian-packages).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.context import Context
from backend.platform.supervisor_report import read_platform
from models import User
from tests.conftest import GitRepo, corpus_files
from tests.support.rootfs import with_cached_rootfs
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="packages.txt needs a root supervisor")


def test_a_packages_txt_repository_deploys_and_serves_on_the_process_runtime(
        ctx: Context, admin: User, make_repo: Callable[..., GitRepo], tmp_path: Path) -> None:
    settings = with_cached_rootfs(ctx.settings)
    repo = make_repo("debian-packages", corpus_files("debian-packages"))
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        wait_until(lambda: read_platform(ctx).packages_pythons, 60,
                   "the supervisor to report what packages.txt can use", sup)
        assert "3.11" in read_platform(ctx).packages_pythons
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="figlet")
        assert view.state == "queued"  # the up-front check let it through
        app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, 1200, sup)
        assert app.state == "running", (app.state_reason, app_logs.read_logs(
            ctx, admin, view.id)["build"][-3000:])
        port = ctx.settings.port
        seen = asyncio.run(open_streamlit_session(
            f"ws://127.0.0.1:{port}", f"figlet.{ctx.settings.domain}:{port}", timeout=60))
        shown = " ".join(seen["texts"])
        assert "| '_ \\| |" in shown, shown  # figlet's "hi"
        assert "figlet-path=/usr/bin/figlet" in shown and "root-writable=no" in shown, shown
        build_log = app_logs.read_logs(ctx, admin, view.id)["build"]
        assert "Installing Debian packages with apt-get: figlet." in build_log \
            or "Reusing the environment" in build_log, build_log  # built by an earlier test
    finally:
        sup.stop()
