"""The MCP tools, each a thin call of the REST API with the user's token (`Client`).

| tool          | API                                        | scope  |
| ------------- | ------------------------------------------ | ------ |
| `list_apps`   | GET /apps                                  | read   |
| `status`      | GET /apps/{id}, /events (and a failed      | read   |
|               | app's log tail, for a developer)           |        |
| `deploy`      | POST /apps                                 | deploy |
| `logs`        | GET /apps/{id}/logs (masked: secrets ****) | read   |
| `reboot`      | POST /apps/{id}/reboot                     | deploy |
| `set_secrets` | PUT /apps/{id}/secrets (write-only)        | deploy |
| `delete`      | DELETE /apps/{id}                          | deploy |

A refusal or failure comes back as an error result whose text says what happened and what
to do (`explain`), never as a crash of the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlencode

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from supervisor.api_client import Client, CliError

T = TypeVar("T")
SCOPES = {"list_apps": "read", "status": "read", "logs": "read", "deploy": "deploy",
          "reboot": "deploy", "set_secrets": "deploy", "delete": "deploy"}
WAITING_STATES = frozenset({"queued", "building", "starting"})
FAILED_STATES = frozenset({"build_failed", "crashed", "over_limit"})
MAX_WAIT = 600
TAIL_ON_FAILURE = 4000
APP_FIELDS = ("id", "subdomain", "url", "state", "state_reason", "visibility", "repo_url",
              "branch", "main_file", "python_version", "built_python", "workspace", "role",
              "commit", "last_deployed_at")

INSTRUCTIONS = """Deploy and debug Streamlit apps on this self-hosted Streamlit Cloud.
Apps are deployed from a git repository the platform can reach (repo_url, branch,
main_file). After deploy, call status with wait_seconds until the state is running (or
failed: build_failed, crashed, over_limit), then read logs (kind "build" for the build,
"app" for the running app). Secrets are TOML and write-only; log text shows them as ****."""


def explain(tool: str, e: CliError, url: str) -> str:
    """The text an agent sees for a refused or failed call: what happened, what to do."""
    message = str(e)
    if e.http_status is None:
        return (f"{message}. Check that the platform runs at {url} and that "
                "`python -m supervisor.mcp --url` names it.")
    hints = {
        "unauthorized": "The platform does not know this API token (unknown or revoked). "
                        "Create one on the dashboard's Account page and start the MCP "
                        "server with it in STCLOUD_TOKEN.",
        "insufficient_scope": f"The '{tool}' tool needs a token with the "
                              f"'{SCOPES.get(tool, 'read')}' scope. Create such a token on "
                              "the Account page and start the MCP server with it in "
                              "STCLOUD_TOKEN.",
        "forbidden": "The token acts with your own role in the app's workspace; a "
                     "workspace admin can make you a developer.",
        "not_found": "Call list_apps for the ids of the apps you can see.",
        "invalid": "Correct that argument and call again.",
        "conflict": "Choose another value, or act on the app as it is now (see status).",
        "rate_limited": "Too many requests: wait a few seconds, then call again.",
    }
    return f"{message} {hints.get(e.code, '')}".rstrip()


def app_summary(view: dict[str, Any]) -> dict[str, Any]:
    return {k: view.get(k) for k in APP_FIELDS}


def build_server(client: Client) -> MCPServer:
    """The MCP server whose tools act through `client` (the user's token)."""
    server = MCPServer("stcloud", instructions=INSTRUCTIONS, log_level="WARNING")

    async def api(tool: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except CliError as e:
            raise ToolError(explain(tool, e, client.url)) from None

    def read_only(title: str) -> ToolAnnotations:
        return ToolAnnotations(title=title, read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only("List apps"))
    async def list_apps() -> dict[str, Any]:
        """The apps you can see: id, subdomain, URL, state and repository of each."""
        apps = await api("list_apps", client.all_apps)
        return {"apps": [app_summary(a) for a in apps]}

    @server.tool(annotations=read_only("App status"))
    async def status(app_id: int, wait_seconds: int = 0) -> dict[str, Any]:
        """The app's state, why it is in it and its recent state changes (newest first).
        With wait_seconds > 0, first wait (up to that long, at most 600) while it is
        queued, building or starting. A failed app's answer ends with its log tail."""
        view = await api("status", client.call, "GET", f"/apps/{app_id}")
        deadline = time.monotonic() + min(max(wait_seconds, 0), MAX_WAIT)
        while view["state"] in WAITING_STATES and time.monotonic() < deadline:
            await anyio.sleep(1.0)  # polling the app's state, not a synchronisation
            view = await api("status", client.call, "GET", f"/apps/{app_id}")
        events = await api("status", client.call, "GET", f"/apps/{app_id}/events?limit=10")
        answer = {**app_summary(view), "events": events["events"]}
        if view["state"] in FAILED_STATES and view.get("role") in ("developer", "admin"):
            kind = "build" if view["state"] == "build_failed" else "app"
            tail = await api("status", client.call, "GET",
                             f"/apps/{app_id}/logs?kind={kind}&max_bytes={TAIL_ON_FAILURE}")
            answer[f"{kind}_log_tail"] = tail["text"]
        elif view["state"] in WAITING_STATES:
            answer["next"] = "Still on its way: call status again with wait_seconds."
        return answer

    @server.tool(annotations=ToolAnnotations(title="Deploy an app", read_only_hint=False,
                                             destructive_hint=False, open_world_hint=True))
    async def deploy(repo_url: str, branch: str = "main", main_file: str = "streamlit_app.py",
                     subdomain: str = "", python_version: str = "",
                     secrets: str = "") -> dict[str, Any]:
        """Deploy a Streamlit app from a git repository the platform can reach (https, ssh,
        or a path on the platform's host). subdomain and python_version may be left empty
        (the platform chooses); secrets is TOML text. Returns the new app; follow it with
        status(app_id, wait_seconds=120)."""
        body = {"repo_url": repo_url, "branch": branch, "main_file": main_file,
                "subdomain": subdomain, "python_version": python_version}
        if secrets:
            body["secrets"] = secrets
        view = await api("deploy", client.call, "POST", "/apps", body)
        return {**app_summary(view), "next": f"Call status with app_id {view['id']} and "
                "wait_seconds to follow the build; logs with kind 'build' shows it."}

    @server.tool(annotations=read_only("App logs"))
    async def logs(app_id: int, kind: Literal["app", "build"] = "app",
                   max_bytes: int = 20_000) -> dict[str, Any]:
        """The end of the app's log (kind "app": what the running app prints) or of its
        last build (kind "build"), at most max_bytes (1 to 1000000). Secret values show as
        ****."""
        query = urlencode({"kind": kind, "max_bytes": max_bytes})
        tail = await api("logs", client.call, "GET", f"/apps/{app_id}/logs?{query}")
        return {"app_id": app_id, "kind": kind, "text": tail["text"]}

    @server.tool(annotations=ToolAnnotations(title="Reboot an app", read_only_hint=False,
                                             destructive_hint=False, idempotent_hint=True,
                                             open_world_hint=False))
    async def reboot(app_id: int) -> dict[str, Any]:
        """Restart the app's process (its sessions end; the code and environment stay)."""
        view = await api("reboot", client.call, "POST", f"/apps/{app_id}/reboot")
        return {**app_summary(view), "next": "Call status with wait_seconds to see it "
                "running again."}

    @server.tool(annotations=ToolAnnotations(title="Set an app's secrets",
                                             read_only_hint=False, destructive_hint=True,
                                             idempotent_hint=True, open_world_hint=False))
    async def set_secrets(app_id: int, secrets_toml: str, restart: bool = True
                          ) -> dict[str, Any]:
        """Replace ALL of the app's secrets with secrets_toml (TOML, as in
        .streamlit/secrets.toml; top-level string values also become environment
        variables). Values are never shown back. restart=True restarts the app so that it
        reads them."""
        path = f"/apps/{app_id}/secrets?restart={1 if restart else 0}"
        saved = await api("set_secrets", client.call, "PUT", path, None,
                          secrets_toml.encode(), "application/toml")
        return {"app_id": app_id, "keys": saved["keys"], "env_vars": saved["env_vars"],
                "restarted": saved["restarted"]}

    @server.tool(annotations=ToolAnnotations(title="Delete an app", read_only_hint=False,
                                             destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=False))
    async def delete(app_id: int) -> dict[str, Any]:
        """Delete the app: it stops, its URL is freed, its logs and secrets are removed.
        This cannot be undone; make sure the user asked for it."""
        await api("delete", client.call, "DELETE", f"/apps/{app_id}")
        return {"app_id": app_id, "state": "deleting"}

    return server
