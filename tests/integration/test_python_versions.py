"""Apps on every CPython the host offers, and the version shown is the one the build used.

- The sandboxed process runtime builds and starts an app on Python 3.12 and on 3.9 (an
  old app pinning an older Streamlit, as Streamlit 1.50 is the last for 3.9), each healthy
  and reporting its own `sys.version`.
- A real deploy (supervisor, CLI, API) of a repository whose `.python-version` pins 3.12
  while the server default is 3.11 records and shows the 3.12 it was built with.
- A push that adds packages.txt fails its build on the process runtime with the reason and
  the alternative: the running app keeps serving and says why, an app that is not running
  goes to build_failed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from backend.apps import logs as app_logs
from backend.apps import service as apps
from supervisor.runtimes import sandbox
from supervisor.runtimes.base import EnvSpec
from tests.support.cli import signed_in_cli
from tests.support.lifecycle_support import post
from tests.support.pythons import (
    REPORTS_VERSION,
    interpreter,
    interpreter_version,
    log_line,
    start_and_read_version,
)
from tests.support.runtimes import app_spec, make_runtime
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_for_state, wait_until

PACKAGES = "libgl1\nffmpeg\n"


@pytest.mark.parametrize(("minor", "requirements"), [
    ("3.12", None), ("3.9", "streamlit==1.50.0\n")])
def test_sandboxed_app_runs_on_python(minor: str, requirements: str | None, settings,
                                      tmp_path: Path) -> None:
    expected = interpreter_version(minor)
    runtime = make_runtime("process", settings)
    assert runtime.isolation == sandbox.BUBBLEWRAP, "the test is about the sandboxed runtime"
    assert minor in runtime.python_versions()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "streamlit_app.py").write_text(REPORTS_VERSION)
    if requirements:
        (checkout / "requirements.txt").write_text(requirements)
    spec = EnvSpec.from_checkout(checkout, minor, settings.default_streamlit)
    app = app_spec(settings, checkout, app_id=40 + int(minor.split(".")[1]))

    run = asyncio.run(start_and_read_version(runtime, spec, app))
    assert run.env.python_version == expected.split()[0], (run.env, run.build_lines[-5:])
    texts = run.session["texts"]
    assert any(expected.split()[0] in t for t in texts), texts
    # 3.9's sys.version holds a newline before the compiler: its first line counts
    assert run.reported.strip() == f"PYTHON-VERSION {expected.splitlines()[0].strip()}"


def test_deploy_shows_the_python_it_was_built_with_and_pushed_packages_fail_the_build(
        ctx, admin, make_repo, tmp_path: Path) -> None:
    assert ctx.settings.default_python == "3.11"
    built = interpreter("3.12")
    version = subprocess.run(
        [str(built), "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True).stdout.strip()
    pinned = make_repo("pinned", {"streamlit_app.py": REPORTS_VERSION,
                                  ".python-version": "3.12\n"})
    broken = make_repo("broken", {"streamlit_app.py": REPORTS_VERSION,
                                  "requirements.txt": "no-such-package-stcloud-y==9.9\n"})
    sup = SupervisorProcess(ctx.settings, tmp_path / "supervisor.log").start()
    try:
        cli = signed_in_cli(ctx, admin, tmp_path / "home", "python-test")
        cli("deploy", pinned.url, "--subdomain", "pinned")
        view = next(a for a in apps.list_apps(ctx, admin) if a.subdomain == "pinned")
        assert view.python_version == "3.11" and view.built_python == ""
        failing = apps.deploy_app(ctx, admin, repo_url=broken.url, subdomain="broken")
        app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, 300, sup)
        assert app.state == "running", app.state_reason
        assert app.built_python == version

        shown = apps.get_app(ctx, admin, view.id)  # the API's and the dashboard's view
        assert shown.built_python == version and shown.python_shown == version
        listed = {a["subdomain"]: a for a in json.loads(cli("apps", "list", "--json"))}
        assert listed["pinned"]["built_python"] == version
        row = next(ln for ln in cli("apps", "list").splitlines() if "pinned" in ln)
        assert version in row.split()
        seen = asyncio.run(open_streamlit_session(
            f"ws://127.0.0.1:{ctx.settings.port}",
            f"pinned.{ctx.settings.domain}:{ctx.settings.port}"))
        assert any(version in t for t in seen["texts"]), seen
        sys_version = log_line(ctx.settings.logs_path / str(view.id) / "app.log",
                               "PYTHON-VERSION")
        assert sys_version.split()[1] == version

        # A push adding packages.txt to the running app: its build is refused (no Debian root
        # filesystem of the process runtime has Python 3.12; without debootstrap, none at
        # all), it serves on.
        pinned.commit({"packages.txt": PACKAGES})
        status, _ = post(ctx.settings.port, f"/api/v1/hooks/apps/{view.id}?token="
                         f"{app.webhook_secret}", b"", {})
        assert status == 202
        app = wait_until(lambda: (a := load_app(ctx, view.id)) and a.last_deploy_error and a,
                         120, "the pushed build to fail", sup)
        assert "packages.txt" in app.last_deploy_error
        assert "use the Docker runtime" in app.last_deploy_error
        assert app.state == "running" and app.built_python == version

        # The same push to an app that is not running: build_failed with the reason.
        wait_for_state(ctx, failing.id, {"build_failed"}, 300, sup)
        broken.commit({"requirements.txt": "streamlit==1.67.0\n", "packages.txt": PACKAGES,
                       ".python-version": "3.12\n"})
        secret = load_app(ctx, failing.id).webhook_secret
        status, _ = post(ctx.settings.port, f"/api/v1/hooks/apps/{failing.id}?token={secret}",
                         b"", {})
        assert status == 202
        app = wait_until(lambda: (a := load_app(ctx, failing.id)) and a.state == "build_failed"
                         and "packages.txt" in a.state_reason and a, 120,
                         "the pushed build to fail", sup)
        assert "use the Docker runtime" in app.state_reason
        assert "packages.txt" in app_logs.read_logs(ctx, admin, failing.id)["build"]
    finally:
        sup.stop()
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
