"""One deploy use-case (`backend.apps.deploy`): the same request gets the same answer from the
dashboard's deploy form (AppTest), the API's POST /apps (HTTP on loopback) and the CLI (a
subprocess), and nothing is queued for a refused one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from backend.accounts import api_tokens
from backend.apps import service as apps
from backend.apps.deploy import dependency_problem, requirements_problem
from backend.platform.settings import PROJECT_ROOT
from pages.dashboard import _ui as ui
from supervisor.api import make_api_app
from tests.conftest import free_port
from tests.support.api_world import StubReconciler
from tests.support.dashboard import (
    Dash,
    fill_deploy,
    local_repo,
    open_dashboard,
)


@pytest.fixture
def api_url(dash: Dash) -> Iterator[str]:
    """The REST API of the dashboard's context, served on a loopback port in a thread."""
    port = free_port()
    loop = asyncio.new_event_loop()
    root = web.Application()
    root.add_subapp("/api/v1", make_api_app(dash.ctx, StubReconciler()))
    runner = web.AppRunner(root)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def api_deploy(url: str, token: str, body: dict[str, str]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url + "/api/v1/apps", data=json.dumps(body).encode(),
                                 method="POST", headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def cli_deploy(url: str, token: str, home: Path, body: dict[str, str]) -> str:
    env = {**os.environ, "STCLOUD_CLI_CONFIG": str(home / "cli.json")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "supervisor.cli", *a],  # noqa: E731
                                    cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                                    timeout=120)
    assert run("login", "--url", url, "--token", token).returncode == 0
    args = ["deploy", body["repo_url"], "--branch", body.get("branch", "main"),
            "--main", body.get("main_file", "streamlit_app.py")]
    if body.get("python_version"):
        args += ["--python", body["python_version"]]
    done = run(*args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    return done.stderr


def dashboard_errors(dash: Dash, body: dict[str, str]) -> list[str]:
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at = fill_deploy(at, repo=body["repo_url"], branch=body.get("branch", "main"),
                     main_file=body.get("main_file", "streamlit_app.py"))
    return [str(e.value) for e in at.error]


def test_same_request_same_answer_everywhere(dash: Dash, api_url: str, tmp_path: Path) -> None:
    good = {"streamlit_app.py": "import streamlit as st\n", "requirements.txt": "pandas>=2\n"}
    repo = local_repo(tmp_path, good)
    bad_reqs = local_repo(tmp_path, {**good, "requirements.txt": "pandas>=2\nnot a (req\n"},
                          name="badreqs")
    cases = {
        "branch": ({"repo_url": repo, "branch": "nope"}, "branch",
                   "The branch 'nope' does not exist"),
        "main_file": ({"repo_url": repo, "main_file": "missing.py"}, "main_file",
                      "There is no file 'missing.py' on branch 'main'"),
        "repository": ({"repo_url": str(tmp_path / "nowhere.git")}, "repo_url",
                       "There is no git repository at"),
        "requirements": ({"repo_url": bad_reqs}, "dependencies",
                         "requirements.txt line 2 is not a requirement: 'not a (req'"),
    }
    # The repository's workspace exists: a deploy must still check everything.
    first = apps.deploy_app(dash.ctx, dash.admin, repo_url=repo, subdomain="first")
    _, token = api_tokens.create_token(dash.ctx, dash.admin, "parity", "read,deploy")
    for name, (body, field, expected) in cases.items():
        status, answer = api_deploy(api_url, token, body)
        assert status == 422, (name, answer)
        message = answer["error"]["message"]
        assert answer["error"]["field"] == field and expected in message, (name, answer)
        assert f"error: {message} (field: {field}) [422]" in \
            cli_deploy(api_url, token, tmp_path / name, body), name
        assert dashboard_errors(dash, body) == [message], name
    assert [a.id for a in apps.list_apps(dash.ctx, dash.admin)] == [first.id]


def test_unoffered_python_same_answer_from_api_and_cli(dash: Dash, api_url: str,
                                                       tmp_path: Path) -> None:
    """The form offers only the server's versions in its selectbox; the API and the CLI,
    which take any text, refuse another with the same words."""
    repo = local_repo(tmp_path)
    body = {"repo_url": repo, "python_version": "3.8"}
    _, token = api_tokens.create_token(dash.ctx, dash.admin, "parity", "read,deploy")
    status, answer = api_deploy(api_url, token, body)
    assert status == 422 and answer["error"]["field"] == "python_version", answer
    assert "Python '3.8' is not offered" in answer["error"]["message"]
    assert f"error: {answer['error']['message']} (field: python_version) [422]" in \
        cli_deploy(api_url, token, tmp_path / "py", body)
    assert apps.list_apps(dash.ctx, dash.admin) == []


@pytest.mark.parametrize("text,problem", [
    (b"pandas>=2\n# a comment\n\n-r other.txt\n--index-url https://x/simple\n"
     b"git+https://github.com/a/b.git\n./local\nnumpy==2.1 ; python_version>'3.9'\n"
     b"streamlit==1.67.0 \\\n    --hash=sha256:abc\nname @ https://x/y.whl\n", ""),
    (b"pandas>=2\nthis is not a requirement ((\n", "line 2 is not a requirement"),
    (b"pandas=>2\n", "line 1 is not a requirement"),
])
def test_requirements_lines(text: bytes, problem: str) -> None:
    found = requirements_problem(text)
    assert (problem in found) if problem else found == "", found


def test_toml_dependency_files() -> None:
    assert "pyproject.toml is not valid TOML" in dependency_problem(
        {"pyproject.toml": b"[project\nname = 'x'\n"})
    assert dependency_problem({"pyproject.toml": b"[project]\nname = 'x'\n"}) == ""
