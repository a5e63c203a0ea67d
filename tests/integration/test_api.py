"""The REST API (`supervisor/api/v1/`) in process: aiohttp's test client over
`make_api_app(ctx, stub)`, with personal API tokens (`backend/accounts/api_tokens.py`).

The authorization matrix is ONE table: route × caller → expected status (and error code);
the MCP server's tools (`supervisor/mcp/`) answer as the route each one calls, for every
caller, with the hint of the error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from mcp import Client as McpClient
from sqlmodel import select

from backend.accounts import api_tokens
from backend.apps.log_files import app_log_path
from backend.context import Context
from models import ApiToken, AppSecret, id_of, session_scope
from supervisor.api import make_api_app
from supervisor.api import v1 as api_v1
from supervisor.api_client import Client
from supervisor.mcp.tools import SCOPES as MCP_SCOPES
from supervisor.mcp.tools import build_server
from tests.support.api_world import REPO, StubReconciler, World, auth, make_user, run

SECRET_VALUE = "s3cr3t-value-never-echoed"


# Tokens ----------------------------------------------------------------------------------
def test_tokens_are_hashed_scoped_and_revocable(ctx: Context) -> None:
    alice = make_user(ctx, "alice")
    row, plain = api_tokens.create_token(ctx, alice, "laptop", ["deploy"])
    assert plain.startswith("stc_") and len(plain) > 40
    with session_scope(ctx.engine) as s:
        stored = s.exec(select(ApiToken)).one()
    assert stored.token_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert plain not in json.dumps(stored.model_dump(mode="json"))
    assert stored.last_used_at is None and stored.scopes == "deploy"
    found = api_tokens.authenticate_token(ctx, plain)
    assert found is not None
    user, scopes = found
    assert user.username == "alice" and scopes == {"read", "deploy"}
    assert api_tokens.list_tokens(ctx, alice)[0].last_used_at is not None
    assert api_tokens.authenticate_token(ctx, plain + "x") is None
    assert api_tokens.authenticate_token(ctx, "not-a-token") is None
    api_tokens.revoke_token(ctx, alice, id_of(row))
    assert api_tokens.authenticate_token(ctx, plain) is None
    bob = make_user(ctx, "bob")
    with pytest.raises(Exception, match="no API token"):
        api_tokens.revoke_token(ctx, bob, id_of(row))
    with pytest.raises(Exception, match="Unknown scope"):
        api_tokens.create_token(ctx, alice, "x", ["root"])


# Happy paths -----------------------------------------------------------------------------
def test_developer_happy_paths(world: World) -> None:
    app_id = world.new_app("happy")
    h = auth(world, "developer")
    log = app_log_path(world.ctx.settings, app_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("hello from the app\n")

    async def scenario(c: TestClient) -> None:
        r = await c.get("/me", headers=h)
        assert (await r.json())["username"] == "dev"
        r = await c.get("/apps", headers=h)
        assert r.status == 200 and {a["subdomain"] for a in (await r.json())["apps"]} == \
            {"dash", "happy"}
        r = await c.get(f"/apps/{app_id}", headers=h)
        assert r.status == 200 and (await r.json())["role"] == "developer"
        r = await c.post("/apps", headers=h, json={"repo_url": REPO, "subdomain": "fresh",
                                                   "branch": "main",
                                                   "main_file": "streamlit_app.py",
                                                   "secrets": f'key = "{SECRET_VALUE}"'})
        body = await r.json()
        assert r.status == 201 and body["subdomain"] == "fresh" and body["state"] == "queued"
        assert SECRET_VALUE not in json.dumps(body)
        r = await c.patch(f"/apps/{app_id}", headers=h, json={"visibility": "private",
                                                              "subdomain": "happier"})
        body = await r.json()
        assert r.status == 200, body
        assert (body["visibility"], body["subdomain"]) == ("private", "happier")
        r = await c.post(f"/apps/{app_id}/reboot", headers=h)
        assert r.status == 202
        r = await c.post(f"/apps/{app_id}/wake", headers=h)
        assert r.status == 200 and (await r.json())["state"] == "queued"
        r = await c.get(f"/apps/{app_id}/logs", headers=h)
        assert (await r.json())["text"] == "hello from the app\n"
        r = await c.get(f"/apps/{app_id}/events", headers=h)
        reasons = [e["reason"] for e in (await r.json())["events"]]
        assert any("Reboot requested by dev" in x for x in reasons), reasons
        r = await c.put(f"/apps/{app_id}/secrets", headers=h,
                        data=f'token = "{SECRET_VALUE}"\n[db]\npw = "{SECRET_VALUE}"\n')
        text = await r.text()
        assert r.status == 200 and SECRET_VALUE not in text
        assert json.loads(text)["keys"] == 2 and json.loads(text)["env_vars"] == ["token"]
        r = await c.get(f"/apps/{app_id}/analytics", headers=h)
        body = await r.json()
        assert r.status == 200 and body["total_unique_viewers"] == 0
        assert "recent_viewers" in body and "workspace_monthly_viewers" in body
        r = await c.get("/workspaces", headers=h)
        assert (await r.json())["workspaces"] == [{"id": world.workspace_id, "name": "team",
                                                   "role": "developer"}]
        r = await c.get(f"/workspaces/{world.workspace_id}/members", headers=h)
        assert {m["username"]: m["role"] for m in (await r.json())["members"]} == \
            {"owner": "admin", "dev": "developer", "viewer": "viewer"}
        r = await c.delete(f"/apps/{app_id}", headers=h)
        assert r.status == 202
        r = await c.get(f"/apps/{app_id}", headers=h)
        assert r.status == 404

    run(world, scenario)
    # Secrets are stored encrypted, and no GET route returns them.
    with session_scope(world.ctx.engine) as s:
        assert all(SECRET_VALUE not in row.ciphertext for row in s.exec(select(AppSecret)))


def test_admin_manages_members_and_site_admin_lists_users(world: World) -> None:
    ws = world.workspace_id

    async def scenario(c: TestClient) -> None:
        r = await c.put(f"/workspaces/{ws}/members/spare", headers=auth(world, "admin"),
                        json={"role": "developer"})
        assert r.status == 200
        r = await c.get(f"/workspaces/{ws}/members", headers=auth(world, "admin"))
        assert {"username": "spare", "name": "Spare", "role": "developer"} in \
            (await r.json())["members"]
        r = await c.delete(f"/workspaces/{ws}/members/spare", headers=auth(world, "admin"))
        assert r.status == 200
        r = await c.get("/users", headers=auth(world, "siteadmin"))
        assert "spare" in [u["username"] for u in (await r.json())["users"]]

    run(world, scenario)


def test_logs_follow_streams_new_lines(world: World) -> None:
    app_id = world.new_app("tail")
    log = app_log_path(world.ctx.settings, app_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("line one\n")

    async def scenario(c: TestClient) -> None:
        r = await c.get(f"/apps/{app_id}/logs?follow=1&max_seconds=30",
                        headers=auth(world, "developer"))
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        seen = b""
        while b"line one\n" not in seen:
            seen += await asyncio.wait_for(r.content.readany(), 10)
        await asyncio.to_thread(log.write_text, "line one\nline two\n")
        while b"line two\n" not in seen:
            seen += await asyncio.wait_for(r.content.readany(), 10)
        r.close()  # the client disconnects; the server stops following

    run(world, scenario)


# Authorization matrix ----------------------------------------------------------------------
CALLERS = ("none", "bad", "readonly", "viewer", "developer", "outsider", "admin", "siteadmin")
U, S, F, N = "401", "403 scope", "403", "404"  # unauthorized, insufficient_scope, forbidden
V = "422"  # allowed, refused for the fresh app's state (queued) or the same workspace
MATRIX = {  # (method, path) -> expected per CALLERS; {app} is a fresh app per request
    ("GET", "/apps"): (U, U, 200, 200, 200, 200, 200, 200),
    ("POST", "/apps"): (U, U, S, F, 201, F, 201, 201),
    ("GET", "/apps/{app}"): (U, U, 200, 200, 200, N, 200, 200),
    ("PATCH", "/apps/{app}"): (U, U, S, F, 200, N, 200, 200),
    ("DELETE", "/apps/{app}"): (U, U, S, F, 202, N, 202, 202),
    ("POST", "/apps/{app}/reboot"): (U, U, S, F, 202, N, 202, 202),
    ("POST", "/apps/{app}/wake"): (U, U, S, 200, 200, 200, 200, 200),  # public: anyone
    ("POST", "/apps/{app}/sleep"): (U, U, S, F, V, N, V, V),
    ("POST", "/apps/{app}/stop"): (U, U, S, F, F, N, F, 202),
    ("POST", "/apps/{app}/start"): (U, U, S, 202, 202, N, 202, 202),
    ("POST", "/apps/{app}/move"): (U, U, S, F, F, N, F, V),  # to its own workspace
    ("GET", "/apps/{app}/logs"): (U, U, 200, F, 200, N, 200, 200),
    ("GET", "/apps/{app}/events"): (U, U, 200, 200, 200, N, 200, 200),
    ("PUT", "/apps/{app}/secrets"): (U, U, S, F, 200, N, 200, 200),
    ("GET", "/apps/{app}/analytics"): (U, U, 200, 200, 200, N, 200, 200),
    ("GET", "/apps/{app}/usage"): (U, U, 200, 200, 200, N, 200, 200),
    ("GET", "/apps/{app}/sleep-policy"): (U, U, 200, 200, 200, N, 200, 200),
    ("PUT", "/apps/{app}/sleep-policy"): (U, U, S, F, 200, N, 200, 200),
    ("GET", "/apps/{app}/identity-headers"): (U, U, 200, 200, 200, N, 200, 200),
    ("PUT", "/apps/{app}/identity-headers"): (U, U, S, F, 200, N, 200, 200),
    ("GET", "/apps/{app}/git-credential"): (U, U, 200, F, 200, N, 200, 200),
    ("PUT", "/apps/{app}/git-credential"): (U, U, S, F, V, N, V, V),  # a local repository
    ("DELETE", "/apps/{app}/git-credential"): (U, U, S, F, 200, N, 200, 200),
    ("GET", "/apps/{app}/previews"): (U, U, 200, 200, 200, N, 200, 200),
    ("PUT", "/apps/{app}/previews"): (U, U, S, F, 200, N, 200, 200),
    ("GET", "/workspaces"): (U, U, 200, 200, 200, 200, 200, 200),
    ("GET", "/workspaces/{ws}/members"): (U, U, 200, 200, 200, F, 200, 200),
    ("PUT", "/workspaces/{ws}/members/spare"): (U, U, S, F, F, F, 200, 200),
    ("DELETE", "/workspaces/{ws}/members/spare"): (U, U, S, F, F, F, 200, 200),
    ("GET", "/users"): (U, U, S, F, F, F, F, 200),
    ("GET", "/settings"): (U, U, S, F, F, F, F, 200),
    ("PATCH", "/settings"): (U, U, S, F, F, F, F, 200),
    ("GET", "/me"): (U, U, 200, 200, 200, 200, 200, 200),
    ("GET", "/notifications"): (U, U, 200, 200, 200, 200, 200, 200),  # one's own only
    ("POST", "/notifications/read"): (U, U, 200, 200, 200, 200, 200, 200),
    ("GET", "/openapi.json"): (200,) * 8,
    ("GET", "/health"): (200,) * 8,
}
BODIES = {"POST /apps": {"json": {"repo_url": REPO}},
          "PATCH /apps/{app}": {"json": {"visibility": "private"}},
          "PUT /apps/{app}/secrets": {"data": 'a = "b"'},
          "PUT /apps/{app}/sleep-policy": {"json": {"policy": "idle 1d"}},
          "PUT /apps/{app}/identity-headers": {"json": {"enabled": True}},
          "PUT /apps/{app}/git-credential": {"json": {"deploy_key": True}},
          "PUT /apps/{app}/previews": {"json": {"enabled": True, "idle_minutes": 15}},
          "PUT /workspaces/{ws}/members/spare": {"json": {"role": "viewer"}},
          "POST /notifications/read": {"json": {"all": True}},
          "PATCH /settings": {"json": {"support_url": "https://help.example.org"}}}
ERROR_CODES = {U: (401, "unauthorized"), S: (403, "insufficient_scope"),
               F: (403, "forbidden"), N: (404, "not_found"), V: (422, "invalid")}


def test_authorization_matrix(world: World) -> None:
    failures = []

    async def scenario(c: TestClient) -> None:
        for (method, template), row in MATRIX.items():
            assert len(row) == len(CALLERS)
            for caller, expected in zip(CALLERS, row, strict=True):
                path = template.replace("{ws}", str(world.workspace_id))
                if "{app}" in path:
                    path = path.replace("{app}", str(world.new_app()))
                kwargs = BODIES.get(f"{method} {template}", {})
                if template.endswith("/move"):
                    kwargs = {"json": {"workspace_id": world.workspace_id}}
                r = await c.request(method, path, headers=auth(world, caller), **kwargs)
                body = await r.json()
                status, code = ERROR_CODES.get(str(expected), (expected, None))
                got = (r.status, body["error"]["code"] if "error" in body else None)
                if got != (status, code):
                    failures.append(f"{method} {template} as {caller}: expected "
                                    f"{(status, code)}, got {got}: {body}")
                if code is not None:  # the error shape
                    assert isinstance(body["error"]["message"], str) and \
                        body["error"]["message"]

    run(world, scenario)
    assert not failures, "\n".join(failures)


def test_matrix_covers_every_registered_route(world: World) -> None:
    app = make_api_app(world.ctx, StubReconciler())
    registered = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None and r.method != "HEAD"}
    covered = {(m, p.replace("{app}", "{app_id}").replace("{ws}", "{workspace_id}")
                .replace("/spare", "/{username}")) for m, p in MATRIX}
    hooks = {("POST", "/hooks/github"), ("POST", "/hooks/apps/{app_id}"),
             ("POST", "/hooks/gitlab"), ("POST", "/hooks/gitea"), ("POST", "/hooks/bitbucket"),
             ("GET", "/github/callback")}  # in test_lifecycle_units, test_git_host_hooks, …
    assert registered - hooks == covered

MCP_TOOLS = {  # tool -> (the route it calls, as in MATRIX; its arguments, "{app}" a fresh app)
    "list_apps": (("GET", "/apps"), {}),
    "status": (("GET", "/apps/{app}"), {"app_id": "{app}"}),
    "logs": (("GET", "/apps/{app}/logs"), {"app_id": "{app}"}),
    "deploy": (("POST", "/apps"), {"repo_url": REPO}),
    "reboot": (("POST", "/apps/{app}/reboot"), {"app_id": "{app}"}),
    "set_secrets": (("PUT", "/apps/{app}/secrets"), {"app_id": "{app}",
                                                     "secrets_toml": 'a = "b"'}),
    "delete": (("DELETE", "/apps/{app}"), {"app_id": "{app}"}),
}
MCP_HINTS = {U: ("[401]", "Account page"), S: ("[403]", "tool needs a token with the"),
             F: ("[403]", "a workspace admin can make you"), N: ("[404]", "Call list_apps")}


def test_mcp_tools_in_the_authorization_matrix(world: World) -> None:
    """Each MCP tool, in an MCP client session per caller, against the API over HTTP."""
    assert set(MCP_TOOLS) == set(MCP_SCOPES)
    failures = []

    async def main() -> None:
        root = web.Application()
        root.add_subapp("/api/v1", make_api_app(world.ctx, StubReconciler()))
        async with TestServer(root) as server:
            base = str(server.make_url("")).rstrip("/")
            for caller in CALLERS:
                token = world.tokens[caller].removeprefix("Bearer ")
                async with McpClient(build_server(Client(base, token))) as mcp:
                    for tool, (route, template) in MCP_TOOLS.items():
                        expected = MATRIX[route][CALLERS.index(caller)]
                        args = {k: world.new_app() if v == "{app}" else v
                                for k, v in template.items()}
                        result = await mcp.call_tool(tool, args)
                        text = " ".join(getattr(c, "text", "") for c in result.content)
                        if expected in MCP_HINTS:
                            ok = result.is_error and all(h in text for h in MCP_HINTS[expected])
                        else:
                            ok = not result.is_error
                        if not ok:
                            failures.append(f"{tool} as {caller}: expected {expected}, "
                                            f"got {text}")

    asyncio.run(main())
    assert not failures, "\n".join(failures)


# Errors, pagination, rate limit, OpenAPI ---------------------------------------------------
def test_error_shapes(world: World) -> None:
    h = auth(world, "developer")

    async def scenario(c: TestClient) -> None:
        r = await c.post("/apps", headers=h, json={"repo_url": "not a url"})
        body = await r.json()
        assert r.status == 422 and body["error"]["code"] == "invalid"
        assert body["error"]["field"] == "repo_url"
        r = await c.put(f"/apps/{world.new_app()}/secrets", headers=h, data="key = ")
        body = await r.json()
        assert r.status == 422 and body["error"]["field"] == "secrets" and \
            body["error"]["line"] == 1
        r = await c.post("/apps", headers=h, data="{not json")
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
        r = await c.get("/apps/999999", headers=h)
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        r = await c.get("/apps/abc", headers=h)
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        r = await c.get("/nowhere", headers=h)
        assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        r = await c.put("/apps", headers=h)
        assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
        r = await c.get("/apps?limit=0", headers=h)
        assert (await r.json())["error"] == {"code": "invalid", "field": "limit",
                                             "message": "limit is a whole number from 1 "
                                                        "to 200."}
        r = await c.get("/apps", headers={"Authorization": "Basic abc"})
        assert r.status == 401

    run(world, scenario)


def test_pagination(world: World) -> None:
    for i in range(6):
        world.new_app(f"page-{i}")  # 7 apps with "dash"
    h = auth(world, "developer")

    async def scenario(c: TestClient) -> None:
        seen, cursor = [], None
        while True:
            r = await c.get("/apps", headers=h,
                            params={"limit": 3, **({"cursor": cursor} if cursor else {})})
            body = await r.json()
            assert body["total"] == 7 and len(body["apps"]) <= 3
            seen += [a["subdomain"] for a in body["apps"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 7 and len(set(seen)) == 7
        r = await c.get("/apps", headers=h, params={"limit": 3, "page": 3})
        assert [a["subdomain"] for a in (await r.json())["apps"]] == seen[6:]

    run(world, scenario)


def test_rate_limit_per_token(world: World) -> None:
    now = [1000.0]

    async def scenario(c: TestClient) -> None:
        dev, viewer = auth(world, "developer"), auth(world, "viewer")
        for _ in range(3):
            assert (await c.get("/me", headers=dev)).status == 200
        r = await c.get("/me", headers=dev)
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["error"]["code"] == "rate_limited"
        assert (await c.get("/me", headers=viewer)).status == 200  # another token's bucket
        now[0] += 1.0  # one second later: one more request allowed
        assert (await c.get("/me", headers=dev)).status == 200
        assert (await c.get("/me", headers=dev)).status == 429

    run(world, scenario, rate=1.0, burst=3, clock=lambda: now[0])


def test_openapi_lists_every_route(world: World) -> None:
    app = make_api_app(world.ctx, StubReconciler())
    registered = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None and r.method != "HEAD"}

    async def scenario(c: TestClient) -> None:
        doc = await (await c.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.1")
        listed = {(m, p) for p, ops in doc["paths"].items() for m in ops}
        assert listed == registered
        assert doc["paths"]["/apps"]["post"]["x-scope"] == "deploy"
        assert doc["paths"]["/health"]["get"]["security"] == []

    run(world, scenario)


def test_scope_implication() -> None:
    assert api_tokens.effective_scopes("admin") == {"read", "deploy", "admin"}
    assert api_tokens.effective_scopes("read") == {"read"}
    assert api_v1.TokenBucket(1, 1, clock=lambda: 0.0).take("k") == 0
