"""End to end on the embedded default: a real supervisor process, a local bare git repo,
the process runtime, the proxy, and Streamlit's websocket protocol.

Deploy through backend/ → running → the page and a live Streamlit session through the proxy
→ reboot (a new process) → delete (the process is gone, the subdomain 404s). Then the
supervisor restart cases: SIGKILL adopts the running app (same process, no duplicate);
SIGINT stops apps and the next start brings them back.
"""

from __future__ import annotations

import asyncio
import json

import psutil

from backend.apps import service as apps
from backend.context import Context, open_context
from models import User
from tests.conftest import GitRepo
from tests.support.instances import http_get, instance_alive, instance_id, running_instances
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import (
    SupervisorProcess,
    all_apps,
    load_app,
    wait_for_state,
    wait_until,
)


def app_pid(ctx: Context, app_id: int) -> int:
    app = load_app(ctx, app_id)
    assert app is not None
    return json.loads(app.runtime_state)["instance"]["pid"]


def test_deploy_open_websocket_reboot_delete(engine_settings, admin, hello_repo,
                                             tmp_path) -> None:
    ctx = open_context(engine_settings)
    supervisor = SupervisorProcess(engine_settings, tmp_path / "supervisor.log").start()
    try:
        _deploy_open_reboot_delete(ctx, admin, hello_repo, supervisor)
    finally:
        supervisor.stop()


def _deploy_open_reboot_delete(
        ctx: Context, admin: User, hello_repo: GitRepo, supervisor: SupervisorProcess) -> None:
    port = ctx.settings.port
    host = f"hello.localhost:{port}"
    view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, branch="main",
                           main_file="streamlit_app.py", subdomain="hello")
    app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, sup=supervisor)
    assert app.state == "running", app.state_reason
    assert app.commit and app.env_hash
    status, body = http_get(port, host)
    assert status == 200 and "<title>Streamlit</title>" in body

    seen = asyncio.run(open_streamlit_session(f"ws://127.0.0.1:{port}/_stcore/stream", host))
    assert seen["new_session"], seen

    # The dashboard itself is served on the bare domain.
    wait_until(lambda: http_get(port, f"localhost:{port}", "/_stcore/health")[0] == 200, 60,
               "the dashboard", supervisor)

    # Reboot: a new instance on the same environment, back to running.
    first = instance_id(ctx, view.id)
    assert first and instance_alive(first)
    apps.reboot_app(ctx, admin, view.id)
    wait_until(lambda: (a := load_app(ctx, view.id)) and a.state == "running"
               and instance_id(ctx, view.id) not in (None, first), 120, "the reboot",
               supervisor)
    assert not instance_alive(first)
    assert http_get(port, host)[0] == 200

    # Delete: instance gone, files gone, subdomain unknown.
    second = instance_id(ctx, view.id)
    assert second
    apps.delete_app(ctx, admin, view.id)
    wait_until(lambda: load_app(ctx, view.id) is None, 60, "the delete", supervisor)
    assert not instance_alive(second)
    assert not (ctx.settings.apps_path / str(view.id)).exists()
    assert http_get(port, host)[0] == 404


def test_supervisor_kill_adopts_running_app(engine_settings, admin, hello_repo,
                                            tmp_path) -> None:
    settings = engine_settings
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="adopt")
        wait_for_state(ctx, view.id, {"running"}, sup=sup)
        ident = instance_id(ctx, view.id)
        assert ident and running_instances(settings, view.id) == [ident]
        sup.kill()
        assert instance_alive(ident), "the app must outlive a supervisor crash"
        sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
        host = f"adopt.localhost:{settings.port}"
        wait_until(lambda: http_get(settings.port, host)[0] == 200, 60, "the adopted app", sup)
        app = load_app(ctx, view.id)
        assert app is not None and app.state == "running"
        assert instance_id(ctx, view.id) == ident, "adopted, not restarted"
        assert running_instances(settings, view.id) == [ident], "no duplicate instance"
    finally:
        sup.stop()


def test_sigint_stops_apps_and_next_start_restarts_them(ctx, admin, hello_repo, settings,
                                                        tmp_path) -> None:
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="again")
    wait_for_state(ctx, view.id, {"running"}, sup=sup)
    pid = app_pid(ctx, view.id)
    sup.stop()  # SIGINT, as Ctrl-C
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
    try:
        wait_until(lambda: (a := load_app(ctx, view.id)) and a.state == "running"
                   and app_pid(ctx, view.id) != pid, 120, "the restart", sup)
        assert http_get(settings.port, f"again.localhost:{settings.port}")[0] == 200
        assert [a.subdomain for a in all_apps(ctx)] == ["again"]
    finally:
        sup.stop()
