"""schemathesis against the OpenAPI document of a running API (`/api/v1/openapi.json`).

The API is the real one: the proxy application (`make_proxy_app`, so the dispatch and the
security headers run too) with `make_api_app` mounted, on real backend services and a
migrated SQLite database, served over TCP on 127.0.0.1 from a thread. Only the reconciler
is a stub: a deploy queues its row and nothing clones (fuzzed repository URLs such as
`https://a.b/c` would otherwise make git reach the internet), a push hook is recorded.
No operation is excluded: deletes and member changes act on this module's own database.

Each generated case is sent twice: with an admin's API token (`read,deploy,admin`) and
with no token at all. Asserted: never a 5xx and no dropped connection, error bodies in
the documented shape, documented status codes and content types, and operations that
require a token refuse a request without one (401). Deterministic (`derandomize`) and
bounded (`MAX_EXAMPLES` per operation).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.accounts import api_tokens, auth
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings_load import load_settings
from supervisor.api import OPENAPI_KEY, make_api_app
from supervisor.proxy.server import make_proxy_app
from supervisor.routes import RouteTable
from tests.conftest import CACHE_ROOT, free_port
from tests.support.api_world import StubReconciler

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
SCHEMATHESIS_CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
    "phases": {"stateful": {"enabled": False}},
})


@schemathesis.serializer("application/toml")
def _toml(ctx: Context, value: Any) -> bytes:
    """Secrets bodies are TOML text: send generated strings as they are."""
    return value if isinstance(value, bytes) else str(value).encode()



@dataclass
class ServedApi:
    ctx: Context
    base_url: str  # http://127.0.0.1:<port>
    admin_token: str
    stop: threading.Event


def _serve(ctx: Context, port: int, ready: threading.Event, stop: threading.Event) -> None:
    async def main() -> None:
        api = make_api_app(ctx, StubReconciler(), rate=1e6, burst=10**6)
        runner = web.AppRunner(make_proxy_app(ctx.settings, RouteTable(), api=api, ctx=ctx))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)  # polling the stop flag, not a synchronisation
        await runner.cleanup()
    asyncio.run(main())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    ctx = open_context(load_settings(env={}, data_dir=root / "data", envs_dir=root / "envs",
                                     uv_cache_dir=CACHE_ROOT / "uv", port=port,
                                     runtime="process", database_url=""))
    auth.ensure_first_admin(ctx)
    admin = auth.get_user(ctx, ctx.settings.admin_username)
    apps.deploy_app(ctx, admin, repo_url="https://github.com/team/dash.git", subdomain="dash")
    token = api_tokens.create_token(ctx, admin, "fuzz", "read,deploy,admin")[1]
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=_serve, args=(ctx, port, ready, stop), daemon=True)
    thread.start()
    assert ready.wait(30), "the API did not start within 30 s"
    yield ServedApi(ctx, f"http://127.0.0.1:{port}", token, stop)
    stop.set()
    thread.join(30)


# The document the API serves, built without a context (it only lists routes);
# test_fuzzed_document_is_the_served_one checks it is the served one. (Loading it from the
# server with schemathesis.pytest.from_fixture fails on pytest 9: its lazy loader reads
# `Function._nodeid`, which pytest 9 no longer has.)
DOCUMENT = make_api_app(None, StubReconciler())[OPENAPI_KEY]  # type: ignore[arg-type]  # no ctx
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SCHEMATHESIS_CONFIG)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_keeps_its_contract(case: Case[Any], served: ServedApi) -> None:
    base = served.base_url + "/api/v1"
    admin = {"Authorization": f"Bearer {served.admin_token}"}
    case.call_and_validate(base_url=base, headers=admin, timeout=30, checks=CHECKS)
    anonymous = case.call(base_url=base, timeout=30)
    assert anonymous.status_code < 500, f"{case.method} {case.path}: {anonymous.status_code}"
    secured = case.operation.definition.raw.get("security") != []
    if secured and case.method.upper() == case.operation.method.upper():  # not a TRACE probe
        assert anonymous.status_code == 401, \
            f"{case.method} {case.formatted_path} answered {anonymous.status_code} without " \
            "a token"
        assert anonymous.json()["error"]["code"] == "unauthorized"


def test_fuzzed_document_is_the_served_one(served: ServedApi) -> None:
    """What was fuzzed is what the running API documents, and that is every route."""
    doc = requests.get(served.base_url + "/api/v1/openapi.json", timeout=10).json()
    assert doc == json.loads(json.dumps(DOCUMENT))
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ("POST", "/apps") in ops and ("POST", "/hooks/github") in ops
    assert len(ops) >= 20
