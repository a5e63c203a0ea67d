"""Readers of what runs on this machine, for tests against a real supervisor: an HTTP GET
through the proxy by Host, the instance the supervisor recorded for an app, whether that
process or container is alive, and every live instance of an app found without our runtime
code."""

from __future__ import annotations

import http.client
import json

import psutil

from backend.context import Context
from backend.platform.settings import Settings
from tests.support.supervisor_harness import (
    SupervisorProcess,
    load_app,
    wait_for_state,
    wait_until,
)


def http_get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    """(status, body) of GET `path` on the proxy at 127.0.0.1:`port` for Host `host`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def instance_id(ctx: Context, app_id: int) -> str | None:
    """The pid or container id of the app's instance, as the supervisor recorded it."""
    app = load_app(ctx, app_id)
    inst = json.loads(app.runtime_state).get("instance", {}) if app else {}
    ident = inst.get("pid") or inst.get("container_id")
    return str(ident) if ident else None


def instance_alive(ident: str) -> bool:
    """Whether the process (a pid) or container (an id) `ident` is running."""
    if ident.isdigit():
        pid = int(ident)
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    import docker
    try:
        return docker.from_env().containers.get(ident).status == "running"
    except docker.errors.NotFound:
        return False


def running_instances(settings: Settings, app_id: int) -> list[str]:
    """Every live instance of the app on this machine, found without our runtime code."""
    if settings.runtime == "docker":
        import docker
        found = docker.from_env().containers.list(filters={"label": f"stcloud.app_id={app_id}"})
        return [c.id for c in found
                if str(settings.data_dir) in json.dumps(c.attrs["Mounts"])]
    return [str(p.pid) for p in psutil.process_iter(["cmdline", "cwd"])
            if p.info["cmdline"] and "streamlit_app.py" in p.info["cmdline"]
            and (p.info["cwd"] or "").startswith(str(settings.apps_path / str(app_id)))]


def assert_serving_once(settings: Settings, ctx: Context, app_id: int,
                        sup: SupervisorProcess) -> None:
    """Running, answering through the proxy, and exactly one process on this machine."""
    app = wait_for_state(ctx, app_id, {"running"}, timeout=180, sup=sup)
    host = f"{app.subdomain}.localhost:{settings.port}"
    wait_until(lambda: http_get(settings.port, host)[0] == 200, 60, f"{host} to answer", sup)
    wait_until(lambda: running_instances(settings, app_id) == [instance_id(ctx, app_id)], 60,
               f"one instance of app {app_id}", sup)
