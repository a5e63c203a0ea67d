"""End to end on the embedded default: a real supervisor process, a local bare git repo,
the process runtime, the proxy, and Streamlit's websocket protocol.

Deploy through backend/ → running → the page and a live Streamlit session through the proxy
→ reboot (a new process) → delete (the process is gone, the subdomain 404s). Then the
supervisor restart cases: SIGKILL adopts the running app (same process, no duplicate);
SIGINT stops apps and the next start brings them back.
"""

from __future__ import annotations

import asyncio
import http.client
import json

import psutil
import pytest

from backend import apps
from tests.streamlit_client import open_streamlit_session
from tests.supervisor_harness import (SupervisorProcess, all_apps, load_app, wait_for_state,
                                      wait_until)


def http_get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def app_pid(ctx, app_id: int) -> int:  # type: ignore[no-untyped-def]
    app = load_app(ctx, app_id)
    assert app is not None
    return json.loads(app.runtime_state)["instance"]["pid"]


@pytest.fixture
def supervisor(settings, tmp_path):  # type: ignore[no-untyped-def]
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    yield sup
    sup.stop()


def test_deploy_open_websocket_reboot_delete(ctx, admin, hello_repo, supervisor) -> None:
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

    # Reboot: a new process on the same environment, back to running.
    first_pid = app_pid(ctx, view.id)
    apps.reboot_app(ctx, admin, view.id)
    wait_until(lambda: (a := load_app(ctx, view.id)) and a.state == "running"
               and json.loads(a.runtime_state).get("instance", {}).get("pid") not in
               (None, first_pid), 120, "the reboot", supervisor)
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == "zombie"
    assert http_get(port, host)[0] == 200

    # Delete: process gone, files gone, subdomain unknown.
    second_pid = app_pid(ctx, view.id)
    apps.delete_app(ctx, admin, view.id)
    wait_until(lambda: load_app(ctx, view.id) is None, 60, "the delete", supervisor)
    assert not psutil.pid_exists(second_pid) or psutil.Process(second_pid).status() == "zombie"
    assert not (ctx.settings.apps_path / str(view.id)).exists()
    assert http_get(port, host)[0] == 404


def test_supervisor_kill_adopts_running_app(ctx, admin, hello_repo, settings, tmp_path) -> None:
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="adopt")
        wait_for_state(ctx, view.id, {"running"}, sup=sup)
        pid = app_pid(ctx, view.id)
        sup.kill()
        assert psutil.pid_exists(pid), "the app must outlive a supervisor crash"
        sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
        host = f"adopt.localhost:{settings.port}"
        wait_until(lambda: http_get(settings.port, host)[0] == 200, 60, "the adopted app", sup)
        app = load_app(ctx, view.id)
        assert app is not None and app.state == "running"
        assert app_pid(ctx, view.id) == pid, "adopted, not restarted"
        streamlits = [p for p in psutil.process_iter(["cmdline"])
                      if p.info["cmdline"] and "streamlit_app.py" in " ".join(p.info["cmdline"])
                      and str(settings.port) not in " ".join(p.info["cmdline"])
                      and p.cwd().startswith(str(settings.data_dir))]
        assert [p.pid for p in streamlits] == [pid], "no duplicate process"
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
