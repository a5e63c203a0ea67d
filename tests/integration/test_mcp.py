"""The MCP server (`python -m supervisor.mcp`) in an MCP client session of the `mcp` SDK
over stdio, against a real supervisor (process runtime): list, deploy a local bare git
repository, wait for running, read logs (masked), set a secret, reboot, delete; and a token
without the needed scope, or an unknown one, is refused by every tool with what to do."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client as McpClient
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult

from backend.accounts import api_tokens
from backend.apps.log_files import app_log_path
from backend.apps.secrets import runtime_path
from backend.context import Context
from backend.platform.settings import PROJECT_ROOT
from models import User, id_of
from tests.conftest import GitRepo
from tests.support.instances import instance_id
from tests.support.supervisor_harness import SupervisorProcess, all_apps, wait_until

SECRET = "mcp-secret-value-5a7c9e1b3d"
TOOLS = {"list_apps", "status", "deploy", "logs", "reboot", "set_secrets", "delete"}


@asynccontextmanager
async def session(url: str, token: str, tmp: Path) -> AsyncIterator[McpClient]:
    """An MCP client session with the server started as an assistant would start it."""
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "supervisor.mcp", "--url", url],
                                   env={"STCLOUD_TOKEN": token,
                                        "STCLOUD_CLI_CONFIG": str(tmp / "no-login.json")},
                                   cwd=str(PROJECT_ROOT))
    async with McpClient(params, read_timeout_seconds=300) as client:
        yield client


def data(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]  # tools answer text


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    return " ".join(getattr(c, "text", "") for c in result.content)


def test_mcp_session_deploys_and_debugs_an_app(ctx: Context, admin: User, hello_repo: GitRepo,
                                               tmp_path: Path) -> None:
    _, token = api_tokens.create_token(ctx, admin, "assistant", "read,deploy")
    url = f"http://localhost:{ctx.settings.port}"
    sup = SupervisorProcess(ctx.settings, tmp_path / "supervisor.log").start()

    async def scenario() -> None:
        async with session(url, token, tmp_path) as mcp:
            assert {t.name for t in (await mcp.list_tools()).tools} == TOOLS
            assert data(await mcp.call_tool("list_apps", {}))["apps"] == []
            app = data(await mcp.call_tool("deploy", {
                "repo_url": hello_repo.url, "branch": "main",
                "main_file": "streamlit_app.py", "subdomain": "hello-mcp"}))
            app_id = app["id"]
            assert app["url"].startswith("http://hello-mcp.localhost")
            got = data(await mcp.call_tool("status", {"app_id": app_id, "wait_seconds": 240}))
            assert got["state"] == "running", got
            assert any(e["to_state"] == "running" for e in got["events"])
            listed = data(await mcp.call_tool("list_apps", {}))["apps"]
            assert [(a["id"], a["state"]) for a in listed] == [(app_id, "running")]
            build = data(await mcp.call_tool("logs", {"app_id": app_id, "kind": "build"}))
            assert build["text"].strip()

            saved = data(await mcp.call_tool("set_secrets", {
                "app_id": app_id, "secrets_toml": f'API_KEY = "{SECRET}"\n'}))
            assert saved == {"app_id": app_id, "keys": 1, "env_vars": ["API_KEY"],
                             "restarted": True}
            assert SECRET in runtime_path(ctx.settings, app_id).read_text()
            got = data(await mcp.call_tool("status", {"app_id": app_id, "wait_seconds": 120}))
            assert got["state"] == "running", got
            # What an app printing its secret leaves in its log: the tool shows it masked.
            with open(app_log_path(ctx.settings, app_id), "a") as log:
                log.write(f"the key is {SECRET}\n")
            text = data(await mcp.call_tool("logs", {"app_id": app_id}))["text"]
            assert "the key is ****" in text and SECRET not in text

            first = instance_id(ctx, app_id)
            data(await mcp.call_tool("reboot", {"app_id": app_id}))
            await anyio.to_thread.run_sync(lambda: wait_until(
                lambda: instance_id(ctx, app_id) not in (None, first), 120, "the reboot", sup))
            got = data(await mcp.call_tool("status", {"app_id": app_id, "wait_seconds": 120}))
            assert got["state"] == "running", got

            assert data(await mcp.call_tool("delete", {"app_id": app_id}))["state"] == \
                "deleting"
            with anyio.fail_after(60):
                while data(await mcp.call_tool("list_apps", {}))["apps"]:
                    await anyio.sleep(0.2)  # polling the listing, not a synchronisation
            gone = error_text(await mcp.call_tool("status", {"app_id": app_id}))
            assert "[404]" in gone and "list_apps" in gone

    try:
        anyio.run(scenario)
    finally:
        sup.stop()


def test_mcp_tools_refuse_a_token_without_the_scope(ctx: Context, admin: User, hello_repo: GitRepo,
                                                    tmp_path: Path) -> None:
    _, reader = api_tokens.create_token(ctx, admin, "reader", "read")
    row, revoked = api_tokens.create_token(ctx, admin, "old", "read,deploy")
    api_tokens.revoke_token(ctx, admin, id_of(row))
    url = f"http://localhost:{ctx.settings.port}"
    sup = SupervisorProcess(ctx.settings, tmp_path / "supervisor.log").start()
    deploy_args = {"repo_url": hello_repo.url, "subdomain": "scoped"}
    calls = {"list_apps": {}, "status": {"app_id": 1}, "logs": {"app_id": 1},
             "deploy": deploy_args, "reboot": {"app_id": 1},
             "set_secrets": {"app_id": 1, "secrets_toml": 'a = "b"'}, "delete": {"app_id": 1}}
    assert set(calls) == TOOLS

    async def scenario() -> None:
        async with session(url, reader, tmp_path) as mcp:
            assert data(await mcp.call_tool("list_apps", {}))["apps"] == []
            for tool in ("deploy", "reboot", "set_secrets", "delete"):
                text = error_text(await mcp.call_tool(tool, calls[tool]))
                assert "lacks the 'deploy' scope" in text and "[403]" in text, text
                assert f"The '{tool}' tool needs a token with the 'deploy' scope" in text
                assert "STCLOUD_TOKEN" in text
        async with session(url, revoked, tmp_path) as mcp:
            for tool, args in calls.items():
                text = error_text(await mcp.call_tool(tool, args))
                assert "[401]" in text and "Account page" in text, (tool, text)

    try:
        anyio.run(scenario)
        assert all_apps(ctx) == []  # nothing was deployed with the read-only token
    finally:
        sup.stop()


def test_the_mcp_server_reaches_data_only_through_the_api() -> None:
    """No import of backend/ or models/ (nor a database library) in supervisor/mcp/: every
    tool is a REST API call, authorised by the API."""
    for path in (PROJECT_ROOT / "supervisor" / "mcp").rglob("*.py"):
        tree = ast.parse(path.read_text())
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        assert not roots & {"backend", "models", "sqlmodel", "sqlalchemy"}, path


def test_the_mcp_server_without_a_token_says_how_to_give_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STCLOUD_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "supervisor.mcp", "--url", "http://x"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                          env={**env, "STCLOUD_CLI_CONFIG": str(tmp_path / "none.json")},
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2
    assert "an API token in $STCLOUD_TOKEN" in done.stderr and "Account page" in done.stderr


def test_mcp_status_of_a_failed_build_shows_why(
        ctx: Context, admin: User, make_repo: Callable[..., GitRepo], tmp_path: Path) -> None:
    _, token = api_tokens.create_token(ctx, admin, "assistant", "read,deploy")
    broken = make_repo("broken", {"streamlit_app.py": "import streamlit as st\n",
                                  "requirements.txt": "no-such-package-stcloud-mcp==9.9\n"})
    sup = SupervisorProcess(ctx.settings, tmp_path / "supervisor.log").start()

    async def scenario() -> None:
        async with session(f"http://localhost:{ctx.settings.port}", token, tmp_path) as mcp:
            wrong = error_text(await mcp.call_tool("deploy", {"repo_url": broken.url,
                                                              "main_file": "nope.py"}))
            assert "(field: main_file) [422]" in wrong and "Correct that argument" in wrong
            app = data(await mcp.call_tool("deploy", {"repo_url": broken.url}))
            got = data(await mcp.call_tool("status", {"app_id": app["id"],
                                                      "wait_seconds": 180}))
            assert got["state"] == "build_failed", got
            assert "no-such-package-stcloud-mcp" in got["build_log_tail"]

    try:
        anyio.run(scenario)
    finally:
        sup.stop()
