"""Hostile repositories against the engines and a running supervisor: every engine's build
refuses a dependency file linked to a key and quotes only an excerpt of Docker's errors;
a real supervisor deploys repositories linking `.python-version` to the dashboard cookie
key and `requirements.txt`/`packages.txt` to the initial admin password, and no key or
password byte reaches the API, the dashboard's pages, the events table or the operator
log; the process runtime's secrets copy never lands where a link points; uv's `-r`
includes stay inside each engine's build sandbox or container. The host's layout is
tests/support/hostile_host.py (the `host` fixture).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import select

from backend.accounts import api_tokens, keys
from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.context import Context
from backend.platform.settings import Settings
from models import AppEvent, Build, User, session_scope
from supervisor.runtimes.base import BuildError, EnvSpec
from tests.conftest import GitRepo
from tests.support.hostile_host import (
    SECRET,
    Host,
    assert_clean,
    engine_build,
)
from tests.support.runtimes import make_runtime
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state


# The engines ----------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["process", "docker", "swarm"])
@pytest.mark.parametrize("name", [".python-version", "requirements.txt", "packages.txt"])
def test_engines_refuse_a_dependency_file_linked_to_a_key(engine: str, name: str, settings,
                                                          host: Host) -> None:
    (host.checkout / name).symlink_to("../../../keys/dashboard_cookie")
    error, log = engine_build(engine, settings, host.checkout)
    assert name in error and "outside the repository" in error
    assert_clean(error + log, [SECRET])


@pytest.mark.parametrize("engine", ["docker", "swarm"])
def test_docker_errors_quote_only_an_excerpt(engine: str, settings: Settings) -> None:
    long_tail = "9" * 60
    spec = EnvSpec(python_version="3.99" + long_tail, files={}, default_streamlit="1.67.0")
    bad = EnvSpec(python_version="3.11", files={"packages.txt": b"x"}, default_streamlit="1",
                  packages=("-o" + long_tail, "curl", "A\x1b[2J" + long_tail, "b!", "c!", "d!"))

    async def attempt(s: EnvSpec) -> str:
        runtime = make_runtime(engine, settings)
        try:
            with pytest.raises(BuildError) as err:
                await runtime.ensure_env(s, lambda line: None)
            return str(err.value)
        finally:
            await runtime.close()

    version_error = asyncio.run(attempt(spec))
    assert "is not offered" in version_error and long_tail not in version_error
    packages_error = asyncio.run(attempt(bad))
    assert "not a Debian package" in packages_error and long_tail[:30] not in packages_error
    assert "\x1b" not in packages_error and "and 2 more" in packages_error


# Through the running supervisor ---------------------------------------------------------
def api_get(port: int, token: str, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/api/v1" + path, headers={"Host": "127.0.0.1",
                                                        "Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        assert resp.status == 200, (path, resp.status, body[:300])
        return body
    finally:
        conn.close()


def dashboard_text(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, user: User, app_id: int) -> str:
    """The visible text of the app's detail and logs pages in the real dashboard."""
    import streamlit as st

    from pages.dashboard import _ui as ui
    from tests.support.dashboard import ROOT, nodes, open_dashboard, text
    for name in list(os.environ):
        if name.startswith("STCLOUD_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    try:
        pages = [open_dashboard(user, page, {"app": str(app_id)}) for page in
                 (ui.APP, ui.LOGS, ui.MY_APPS)]
        return "\n".join(text(at) + "\n" + "\n".join(
            str(getattr(node, "value", "")) for node in nodes(at)) for at in pages)
    finally:
        st.cache_resource.clear()


def test_supervisor_deploy_of_hostile_repos_leaks_nothing(
        ctx: Context, admin: User, settings: Settings, make_repo: Callable[..., GitRepo],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cookie_key = keys.dashboard_cookie_key(ctx)  # <data>/keys/dashboard_cookie
    password_file = settings.data_dir / "initial_admin_password"
    password = next(line.split(":", 1)[1].strip() for line in
                    password_file.read_text().splitlines() if line.startswith("password:"))
    secrets = [cookie_key, password]
    repos = {}
    for name, (dep, target) in {
            "pyver": (".python-version", "../../../keys/dashboard_cookie"),
            "reqs": ("requirements.txt", "../../../initial_admin_password"),
            "pkgs": ("packages.txt", "../../../initial_admin_password")}.items():
        repo = make_repo(name, {"streamlit_app.py": "import streamlit as st\n"})
        (repo.work / dep).symlink_to(target)
        repo.commit({}, f"{dep} is a symlink out of the checkout")
        repos[name] = (repo, dep)

    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        deployed = {name: apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain=name)
                    for name, (repo, _) in repos.items()}
        ended = {name: wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"},
                                      sup=sup) for name, view in deployed.items()}
        _, token = api_tokens.create_token(ctx, admin, "leak-check", ["read"])
        seen = [api_get(settings.port, token, "/apps")]
        for view in deployed.values():
            seen += [api_get(settings.port, token, f"/apps/{view.id}{suffix}")
                     for suffix in ("", "/events", "/logs", "/logs?kind=build")]
            seen.append(json.dumps(app_logs.read_logs(ctx, admin, view.id)))
    finally:
        sup.stop()
    with session_scope(ctx.engine) as s:
        seen += [f"{e.reason} {e.from_state} {e.to_state}"
                 for e in s.exec(select(AppEvent)).all()]
        seen += [b.error for b in s.exec(select(Build)).all()]
    seen.append(sup.log_path.read_text(errors="replace"))
    seen += [p.read_text(errors="replace") for p in settings.logs_path.rglob("*")
             if p.is_file()]
    for view in deployed.values():
        pages = dashboard_text(settings, monkeypatch, admin, view.id)
        assert "outside the repository" in pages  # the pages do show the build error
        seen.append(pages)
    assert_clean("\n".join(seen), secrets)
    for name, app in ended.items():
        dep = repos[name][1]
        assert app.state == "build_failed", (name, app.state)
        assert dep in app.state_reason and "outside the repository" in app.state_reason


# The secrets copy ---------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["file-link", "dir-link"])
def test_process_runtime_secrets_copy_never_writes_through_a_symlink(
        host: Host, settings: Settings, tmp_path: Path, layout: str) -> None:
    """The runtime's copy of an app's secrets must never land where a repository's
    symlink points (before the sandbox it was written into the checkout with O_TRUNC,
    overwriting the dashboard cookie key with text the deployer chose)."""
    from supervisor.runtimes.base import AppSpec, EnvRef
    streamlit_dir = host.checkout / ".streamlit"
    if layout == "file-link":  # would overwrite the dashboard cookie key
        streamlit_dir.mkdir()
        (streamlit_dir / "secrets.toml").symlink_to("../../../../keys/dashboard_cookie")
    else:  # would write keys/secrets.toml
        streamlit_dir.symlink_to("../../../keys")
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('x = "chosen by the deployer"\n')
    runtime = make_runtime("process", dataclasses.replace(settings, data_dir=host.data))
    spec = AppSpec(app_id=1, name="hostile", checkout=host.checkout,
                   main_file="streamlit_app.py", log_path=tmp_path / "app.log",
                   memory_limit_mb=256, secrets_file=secrets_file)

    async def start() -> None:
        try:
            inst = await runtime.start(spec, EnvRef("x", "3.11", str(tmp_path / "no-env")))
            await runtime.stop(1, inst.state)
        except Exception:  # refusing to start is fine; writing out is not
            pass

    asyncio.run(start())
    assert host.key.read_text() == SECRET + "\n"
    assert sorted(p.name for p in host.key.parent.iterdir()) == ["dashboard_cookie"]


@pytest.mark.parametrize("engine", ["process", "docker", "swarm"])
def test_requirements_cannot_include_a_host_file(
        engine: str, settings: Settings, host: Host) -> None:
    """The bytes of requirements.txt are the repository's own, but uv follows its `-r`
    includes: only the build's own sandbox or container keeps those in the repository
    (with process_sandbox = off, uv on the host reads and quotes the included key)."""
    (host.checkout / "requirements.txt").write_text(f"-r {host.key}\n")
    error, log = engine_build(engine, settings, host.checkout)
    assert_clean(error + log, [SECRET])
