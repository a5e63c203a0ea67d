"""What the API tests share: a stand-in reconciler, users without bcrypt, and `World`, a
workspace with an owner, a developer, a viewer and outsiders, each with a token (the
`world` fixture in tests/integration/conftest.py); `run` serves `make_api_app` to a
scenario through aiohttp's test client, `auth` is a caller's Authorization header."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from backend import workspaces
from backend.accounts import api_tokens
from backend.apps import service as apps
from backend.context import Context
from models import User, session_scope
from supervisor.api import make_api_app
from tests.conftest import static_repo

REPO = static_repo("team", "dash")  # a deploy reads the repository first


@dataclass
class StubReconciler:
    """Stands in for the reconciler where the API or the proxy needs one: records the pushes
    it is told of; its runtime is named `runtime_name` (the API's health reports it)."""

    runtime_name: str = "stub"
    pushes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def runtime(self) -> Any:
        return SimpleNamespace(name=self.runtime_name)

    def push_detected(self, app_id: int, source: str) -> None:
        self.pushes.append((app_id, source))


def make_user(ctx: Context, username: str, is_admin: bool = False) -> User:
    """A user row without bcrypt (the API never reads passwords)."""
    with session_scope(ctx.engine) as s:
        user = User(username=username, name=username.title(), email=f"{username}@x.org",
                    is_admin=is_admin)
        s.add(user)
        s.flush()
        s.refresh(user)
        return user


@dataclass
class World:
    ctx: Context
    users: dict[str, User]
    tokens: dict[str, str]  # caller -> Authorization header value ("" = none)
    workspace_id: int

    def new_app(self, subdomain: str = "") -> int:
        return apps.deploy_app(self.ctx, self.users["owner"], repo_url=REPO,
                               subdomain=subdomain).id


def seed_world(ctx: Context) -> World:
    """Rows and tokens for `World`: workspace "team" with one app, `dash`."""
    names = {"owner": False, "dev": False, "viewer": False, "outsider": False,
             "spare": False, "root": True}
    users = {n: make_user(ctx, n, a) for n, a in names.items()}
    first = apps.deploy_app(ctx, users["owner"], repo_url=REPO, subdomain="dash")
    ws = first.workspace_id
    workspaces.set_member(ctx, users["owner"], ws, "dev", "developer")
    workspaces.set_member(ctx, users["owner"], ws, "viewer", "viewer")
    full = "read,deploy,admin"
    tokens = {"none": "", "bad": "Bearer stc_" + "x" * 43}
    for caller, (who, scopes) in {"readonly": ("dev", "read"), "viewer": ("viewer", full),
                                  "developer": ("dev", full), "outsider": ("outsider", full),
                                  "admin": ("owner", full), "siteadmin": ("root", full)
                                  }.items():
        tokens[caller] = "Bearer " + api_tokens.create_token(ctx, users[who], caller,
                                                             scopes)[1]
    return World(ctx, users, tokens, ws)



def run(world: World, scenario: Callable[[TestClient], Awaitable[None]],
        **api_kwargs: Any) -> None:
    """Runs `scenario` with a test client of the API over `world` and a StubReconciler."""
    async def main() -> None:
        app = make_api_app(world.ctx, StubReconciler(), **api_kwargs)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)
    asyncio.run(main())


def auth(world: World, caller: str) -> dict[str, str]:
    """The Authorization header of `caller` (none for "none")."""
    value = world.tokens[caller]
    return {"Authorization": value} if value else {}
