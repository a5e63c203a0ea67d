"""The engine is chosen once: the first start records it, a Docker daemon that appears later
does not move the apps (no second instance, no unowned process), an explicit other engine is
refused while apps still run on the recorded one, and `migrate-runtime` moves them leaving
nothing behind. Real supervisors, real processes and real containers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from sqlmodel import delete

from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform import installation
from backend.platform.settings import PROJECT_ROOT, Settings
from models import Installation, session_scope
from supervisor.control.engine_choice import decide, runtime_isolation
from supervisor.runtimes import docker_available
from supervisor.runtimes.docker import install_id
from tests.support.instances import instance_alive, instance_id
from tests.support.supervisor_harness import SupervisorProcess, load_app, stored_app, wait_for_state

NO_DOCKER = "unix:///nonexistent/stcloud-test/docker.sock"  # `auto` finds no daemon here


def test_decide_keeps_the_recorded_engine() -> None:
    assert decide("auto", "", lambda: "process").engine == "process"
    assert decide("auto", "", lambda: "process").record
    kept = decide("auto", "process", lambda: "docker")
    assert (kept.engine, kept.record) == ("process", False)
    assert "python -m supervisor migrate-runtime docker" in kept.hint
    assert decide("auto", "docker", lambda: "docker").hint == ""
    explicit = decide("docker", "process", lambda: "docker")
    assert (explicit.engine, explicit.needs_empty) == ("docker", "process")
    assert decide("process", "process", lambda: "docker").needs_empty == ""


def test_isolation_of_each_engine() -> None:
    class Bare:
        name = "process"

    class Sandboxed:
        name, isolation = "process", "bubblewrap"

    class Docker:
        name = "docker"

    class Unavailable:
        name, isolation, isolation_problem = "process", "unavailable", "bwrap not found"

    # The stand-ins carry only the attributes runtime_isolation reads, hence arg-type.
    assert runtime_isolation(Bare()) == ("single-tenant", "")  # type: ignore[arg-type]
    assert runtime_isolation(Sandboxed()) == ("sandboxed", "bubblewrap")  # type: ignore[arg-type]
    assert runtime_isolation(Docker()) == ("containers", "docker")  # type: ignore[arg-type]
    assert runtime_isolation(Unavailable()) == ("unavailable",  # type: ignore[arg-type]
                                                "bwrap not found")


def test_first_start_records_the_process_engine(settings: Settings, tmp_path: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    auto = dataclasses.replace(settings, runtime="auto")
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    sup = SupervisorProcess(auto, tmp_path / "sup.log").start()
    try:
        info = installation.read_installation(open_context(auto))
        assert info.engine == "process", sup.output()
        assert info.isolation in ("single-tenant", "sandboxed", "unavailable")
    finally:
        sup.stop(signal.SIGTERM)


# With a Docker daemon --------------------------------------------------------------------
def containers_of(client: Any, settings: Settings) -> list[str]:
    """Every container of this installation, running or not (found without our runtime)."""
    return [c.id for c in client.containers.list(
        all=True, sparse=True, filters={"label": f"stcloud.install={install_id(settings)}"})]


@pytest.fixture
def auto_settings(settings: Settings, docker_client: Any) -> Iterator[Settings]:
    auto = dataclasses.replace(settings, runtime="auto")
    yield auto
    for ident in containers_of(docker_client, auto):
        docker_client.api.remove_container(ident, force=True)
    stop_process_apps(auto)  # what a failed test left on the process engine


def run_on_process_first(ctx: Context, admin: Any, repo_url: str, tmp_path: Any,
                         monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """A first start with no Docker daemon in sight deploys one app on the process engine;
    the supervisor is then stopped with SIGTERM (the app keeps running)."""
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    sup = SupervisorProcess(ctx.settings, tmp_path / "sup1.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo_url, subdomain="kept")
        wait_for_state(ctx, view.id, {"running"}, timeout=300, sup=sup)
    finally:
        sup.stop(signal.SIGTERM)
    monkeypatch.delenv("DOCKER_HOST")
    pid = instance_id(ctx, view.id)
    assert pid and pid.isdigit() and instance_alive(pid)
    return view.id, pid


def is_streamlit_server(args: list[str]) -> bool:
    """`…/streamlit run …` itself, or the writable-workdir wrapper that runs it in its own
    interpreter (`python …/workdir.py SRC MAIN -- …/streamlit run …`); never a sandbox or
    launcher whose command line merely names it."""
    if any(a.endswith("/streamlit") and args[i + 1:i + 2] == ["run"]
           for i, a in enumerate(args[:2])):
        return True
    return len(args) > 2 and args[1].endswith("/workdir.py") and "--" in args


def process_instances(settings: Settings, app_id: int) -> list[str]:
    """Pids of the app's Streamlit servers on the process engine, found from the OS alone:
    `streamlit run` processes working in the app's directory (unsandboxed) or below a
    process that names it in its command line (a bubblewrap sandbox binds it at /app)."""
    app_dir = str(settings.apps_path / str(app_id))

    def names_app(proc: psutil.Process) -> bool:
        cwd = proc.cwd()
        return cwd == app_dir or cwd.startswith(app_dir + "/") or any(
            arg == app_dir or arg.startswith(app_dir + "/") for arg in proc.cmdline())

    found = []
    for proc in psutil.process_iter():
        try:
            server = is_streamlit_server(proc.cmdline())
            if proc.status() == psutil.STATUS_ZOMBIE or not server:
                continue
            if names_app(proc) or any(names_app(p) for p in proc.parents()):
                found.append(str(proc.pid))
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("history", ["recorded", "upgraded"])
def test_second_start_with_docker_keeps_the_process_apps(auto_settings: Settings, admin: Any,
                                                         hello_repo: Any, tmp_path: Any,
                                                         docker_client: Any, history: str,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """`upgraded`: a database from before engines were recorded (no installation row)."""
    ctx = open_context(auto_settings)
    app_id, pid = run_on_process_first(ctx, admin, hello_repo.url, tmp_path, monkeypatch)
    if history == "upgraded":
        with session_scope(ctx.engine) as s:
            s.exec(delete(Installation))
    assert docker_available()
    sup = SupervisorProcess(auto_settings, tmp_path / "sup2.log").start()
    try:  # the proxy listens only after adoption: what adoption decided is settled now
        app = load_app(ctx, app_id)
        assert app is not None and app.state == "running", (app and app.state_reason,
                                                             sup.output())
        assert instance_id(ctx, app_id) == pid
        assert len(process_instances(auto_settings, app_id)) == 1  # the adopted one
        assert containers_of(docker_client, auto_settings) == []
        assert installation.recorded_engine(ctx) == "process"
        assert "python -m supervisor migrate-runtime docker" in sup.output()
    finally:
        sup.stop(signal.SIGTERM)
    assert instance_alive(pid)

    # An explicit other engine while the app runs on process: refused, nothing touched.
    env = {**os.environ, **dataclasses.replace(auto_settings, runtime="docker").to_env()}
    env.pop("DATABASE_URL", None)
    refused = subprocess.run([sys.executable, "-m", "supervisor"], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "python -m supervisor migrate-runtime docker" in refused.stderr
    assert instance_alive(pid) and containers_of(docker_client, auto_settings) == []
    stop_process_apps(auto_settings)
    assert not instance_alive(pid)


def stop_process_apps(settings: Settings) -> None:
    """Stop what the supervisors left on the process engine (SIGTERM leaves apps running)."""
    from supervisor.runtimes.process import ProcessRuntime
    runtime = ProcessRuntime(dataclasses.replace(settings, runtime="process"))
    for inst in asyncio.run(runtime.list()):
        asyncio.run(runtime.stop(inst.app_id, inst.state))


def test_migrate_runtime_moves_an_app_from_process_to_docker(
        auto_settings: Settings, admin: Any, hello_repo: Any, tmp_path: Any,
        docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = open_context(auto_settings)
    app_id, pid = run_on_process_first(ctx, admin, hello_repo.url, tmp_path, monkeypatch)
    env = {**os.environ, **auto_settings.to_env()}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "supervisor", "migrate-runtime", "docker"]
    moved = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert not instance_alive(pid) and process_instances(auto_settings, app_id) == []
    assert installation.recorded_engine(ctx) == "docker"
    again = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "already recorded" in again.stdout, again.stderr

    sup = SupervisorProcess(auto_settings, tmp_path / "sup2.log").start()
    try:
        wait_for_state(ctx, app_id, {"running"}, timeout=600, sup=sup)
        ident = instance_id(ctx, app_id)
        assert ident and not ident.isdigit()  # a container id
        assert containers_of(docker_client, auto_settings) == [ident]
        assert process_instances(auto_settings, app_id) == []
        back = subprocess.run([*command[:-1], "process"], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert back.returncode == 1 and "A supervisor is running" in back.stderr
        assert containers_of(docker_client, auto_settings) == [ident]  # left alone
    finally:
        sup.stop(signal.SIGINT)  # stops the app too


def test_explicit_engine_is_recorded_when_nothing_runs_on_the_old_one(
        auto_settings: Settings, tmp_path: Any) -> None:
    ctx = open_context(auto_settings)
    installation.set_engine(ctx, "process")  # recorded, but no app instance runs there
    explicit = dataclasses.replace(auto_settings, runtime="docker")
    sup = SupervisorProcess(explicit, tmp_path / "sup.log").start()
    try:
        info = installation.read_installation(ctx)
        assert (info.engine, info.isolation) == ("docker", "containers")
        assert "engine recorded=process changed to docker" in sup.output()
    finally:
        sup.stop(signal.SIGTERM)


def test_an_interrupted_migration_is_finished_by_running_it_again(
        auto_settings: Settings, admin: Any, hello_repo: Any, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = open_context(auto_settings)
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    sup = SupervisorProcess(auto_settings, tmp_path / "sup.log").start()
    try:
        ids = [apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain=name).id
               for name in ("first", "second")]
        for app_id in ids:
            wait_for_state(ctx, app_id, {"running"}, timeout=300, sup=sup)
    finally:
        sup.stop(signal.SIGTERM)
    monkeypatch.delenv("DOCKER_HOST")
    env = {**os.environ, **auto_settings.to_env()}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "supervisor", "migrate-runtime", "docker"]
    with subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as first:
        assert first.stdout is not None
        for line in first.stdout:  # killed right after its first stop, as a crash would
            if line.startswith("stopped app"):
                first.kill()
                break
        first.wait(30)
    assert installation.recorded_engine(ctx) == "process"  # the record changes last
    assert sum(len(process_instances(auto_settings, i)) for i in ids) == 1
    again = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [process_instances(auto_settings, i) for i in ids] == [[], []]
    assert installation.recorded_engine(ctx) == "docker"
    assert {stored_app(ctx, i).state for i in ids} == {"queued"}
