"""Input that used to end in a 500 or in a wrong result: secrets nested too deep for the
TOML parser, two deploys racing for one subdomain, a Python version the platform cannot
offer, values longer than their database columns, and a deploy of a repository that does
not exist claiming its owner's workspace. Each must be a clear 4xx on the API (and a
ValidationError for the dashboard's forms), and nothing is created."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from backend.accounts import api_tokens
from backend.apps import log_masking
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.context import Context
from backend.errors import Conflict, ValidationError
from backend.platform.supervisor_report import PlatformInfo, write_platform
from models import App, Membership, User, Workspace, session_scope
from supervisor.api import make_api_app
from tests.conftest import static_repo
from tests.support.api_world import StubReconciler, make_user
from tests.support.dashboard import (
    Dash,
    click,
    open_settings,
)

REPO = static_repo("team", "dash")  # a deploy reads the repository first
DEEP_SECRETS = {
    "arrays": "a = " + "[" * 600 + "]" * 600,
    "inline tables": "a = " + "{b = " * 600 + "1" + "}" * 600,
    "dotted key": "a" + ".b" * 3000 + " = 1",
    "table header": "[" + "t." * 3000 + "t]\nx = 1",
}


def api_call(ctx: Context, scenario: Callable[[TestClient], Any]) -> None:
    async def main() -> None:
        app = make_api_app(ctx, StubReconciler(), rate=1e6, burst=10**6)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)
    asyncio.run(main())


def token_for(ctx: Context, user: User) -> dict[str, str]:
    plain = api_tokens.create_token(ctx, user, "limits", "read,deploy")[1]
    return {"Authorization": f"Bearer {plain}"}


# Secrets nesting ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DEEP_SECRETS)
def test_deeply_nested_secrets_are_a_validation_error(kind: str) -> None:
    with pytest.raises(app_secrets.SecretsError, match="nested more than 32") as refused:
        app_secrets.parse_secrets(DEEP_SECRETS[kind])
    if kind in ("arrays", "inline tables"):  # counted before parsing: the place is known
        assert refused.value.line == 1 and refused.value.column > 1


def test_nesting_inside_strings_and_comments_is_not_counted() -> None:
    text = ('s = "' + "[" * 100 + '"\n# ' + "{" * 100 + "\nm = '''\n" + "[" * 100 +
            "\n'''\nok = " + "[" * 32 + "]" * 32 + "\n")
    data = app_secrets.parse_secrets(text)
    assert data["s"] == "[" * 100
    with pytest.raises(app_secrets.SecretsError) as refused:
        app_secrets.parse_secrets(text + "deep = " + "[" * 33 + "]" * 33 + "\n")
    assert refused.value.line == 7 and refused.value.column == 40


def test_oversized_secrets_say_what_to_do() -> None:
    with pytest.raises(app_secrets.SecretsError, match="keep only the values the app reads"):
        app_secrets.parse_secrets('k = "' + "x" * app_secrets.MAX_BYTES + '"')


def test_api_refuses_deep_secrets_with_4xx_not_500(ctx: Context) -> None:
    owner = make_user(ctx, "owner")
    app_id = apps.deploy_app(ctx, owner, repo_url=REPO, subdomain="dash").id
    headers = token_for(ctx, owner)

    async def scenario(c: TestClient) -> None:
        for kind, text in DEEP_SECRETS.items():
            r = await c.put(f"/apps/{app_id}/secrets", headers=headers, data=text)
            body = await r.json()
            assert r.status == 422, (kind, r.status, body)
            assert body["error"]["field"] == "secrets" and "nested" in body["error"]["message"]
            r = await c.post("/apps", headers=headers,
                             json={"repo_url": REPO, "subdomain": "other", "secrets": text})
            assert r.status == 422, (kind, r.status, await r.text())
        r = await c.put(f"/apps/{app_id}/secrets", headers=headers, data=DEEP_SECRETS["arrays"])
        assert (await r.json())["error"]["line"] == 1
    api_call(ctx, scenario)
    assert app_secrets.get_secrets(ctx, owner, app_id) == ""


def test_log_redaction_survives_a_deep_secrets_file(ctx: Context) -> None:
    """A runtime file saved before nesting was limited must not break the log views."""
    settings = ctx.settings
    path = app_secrets.write_runtime_file(settings, 7, DEEP_SECRETS["dotted key"] +
                                          '\ntoken = "hidden-value"\n')
    assert path.exists()
    assert log_masking.mask(ctx, 7, "x hidden-value y") == "x **** y"
    assert app_secrets.runtime_env_vars(settings, 7) == {"token": "hidden-value"}


# Concurrent deploys of one subdomain ----------------------------------------------------------
ROUNDS, RACERS = 12, 4


def _race(n: int, deploy: Callable[[int], None]) -> list[str]:
    """Run `deploy(i)` in `n` threads released at once; the name of what each raised
    ('ok' when nothing)."""
    barrier = threading.Barrier(n)
    outcomes: list[str] = [""] * n

    def one(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            deploy(i)
            outcomes[i] = "ok"
        except Exception as e:  # the kind of failure is what is tested
            outcomes[i] = type(e).__name__
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_racing_deploys_of_one_subdomain_leave_one_winner_and_conflicts(db_ctx: Context) -> None:
    users = [make_user(db_ctx, f"racer{i}") for i in range(RACERS)]
    for rnd in range(ROUNDS):
        # Half the rounds into a new workspace per racer, half into one new shared workspace
        # that all of them race to create as well.
        def deploy(i: int, rnd: int = rnd) -> None:
            owner = f"solo{rnd}x{i}" if rnd % 2 else f"shared{rnd}"
            apps.deploy_app(db_ctx, users[i], repo_url=f"https://github.com/{owner}/app",
                            subdomain=f"race-{rnd}")
        outcomes = Counter(_race(RACERS, deploy))
        if rnd % 2:
            assert outcomes == {"ok": 1, "Conflict": RACERS - 1}, (rnd, outcomes)
        else:  # the workspace's creator wins or the others lack a role in it
            assert outcomes["ok"] == 1 and \
                set(outcomes) <= {"ok", "Conflict", "PermissionDenied"}, (rnd, outcomes)
    with session_scope(db_ctx.engine) as s:
        assert len(s.exec(select(App.id)).all()) == ROUNDS
        for rnd in range(0, ROUNDS, 2):
            ws = s.exec(select(Workspace).where(Workspace.name == f"shared{rnd}")).one()
            assert len(s.exec(select(Membership).where(
                Membership.workspace_id == ws.id)).all()) == 1


def test_racing_api_deploys_answer_201_once_and_409_otherwise(db_ctx: Context) -> None:
    owner = make_user(db_ctx, "owner")
    apps.deploy_app(db_ctx, owner, repo_url=REPO, subdomain="first")  # the workspace exists
    headers = token_for(db_ctx, owner)

    async def scenario(c: TestClient) -> None:
        for rnd in range(ROUNDS):
            body = {"repo_url": REPO, "subdomain": f"api-race-{rnd}"}
            answers = await asyncio.gather(*(c.post("/apps", headers=headers, json=body)
                                             for _ in range(RACERS)))
            statuses = Counter(r.status for r in answers)
            assert statuses == {201: 1, 409: RACERS - 1}, (rnd, statuses)
            for r in answers:
                if r.status == 409:
                    error = (await r.json())["error"]
                    assert error["code"] == "conflict" and error["field"] == "subdomain"
                    assert "is taken" in error["message"]
    api_call(db_ctx, scenario)


def test_a_taken_subdomain_is_a_conflict_for_forms_too(ctx: Context) -> None:
    owner = make_user(ctx, "owner")
    apps.deploy_app(ctx, owner, repo_url=REPO, subdomain="dash")
    with pytest.raises(Conflict) as taken:
        apps.deploy_app(ctx, owner, repo_url=REPO, subdomain="dash")
    assert isinstance(taken.value, ValidationError) and taken.value.field == "subdomain"


# Python versions ----------------------------------------------------------------------------
def test_api_deploy_takes_only_offered_python_versions(ctx: Context) -> None:
    write_platform(ctx, PlatformInfo(engine="process", python_versions=["3.11", "3.12"]))
    owner = make_user(ctx, "owner")
    apps.deploy_app(ctx, owner, repo_url=REPO, subdomain="dash")  # the workspace exists
    headers = token_for(ctx, owner)

    async def scenario(c: TestClient) -> None:
        for bad in ("3.13", "2.7", "latest", "3.12; rm -rf /", "../../x", "3" * 40):
            r = await c.post("/apps", headers=headers, json={
                "repo_url": REPO, "subdomain": "py", "python_version": bad})
            error = (await r.json())["error"]
            assert r.status == 422 and error["field"] == "python_version", (bad, error)
            assert "choose one of 3.11, 3.12" in error["message"]
        r = await c.post("/apps", headers=headers, json={
            "repo_url": REPO, "subdomain": "py", "python_version": "3.12"})
        assert r.status == 201 and (await r.json())["python_version"] == "3.12"
        app_id = (await r.json())["id"]
        r = await c.post("/apps", headers=headers, json={
            "repo_url": REPO, "subdomain": "py-default", "python_version": ""})
        assert r.status == 201 and (await r.json())["python_version"] == "3.11"
        r = await c.patch(f"/apps/{app_id}", headers=headers, json={"python_version": "9.9"})
        error = (await r.json())["error"]
        assert r.status == 422 and error["field"] == "python_version"
        assert "3.11, 3.12" in error["message"]
    api_call(ctx, scenario)
    with session_scope(ctx.engine) as s:
        assert sorted(a.python_version for a in s.exec(select(App)).all()) == ["", "", "3.12"]


def test_before_the_supervisor_reports_only_the_default_python_is_offered(ctx: Context) -> None:
    owner = make_user(ctx, "owner")
    with pytest.raises(ValidationError, match="choose one of 3.11,"):
        apps.deploy_app(ctx, owner, repo_url=REPO, subdomain="py", python_version="3.12")
    assert apps.deploy_app(ctx, owner, repo_url=REPO, subdomain="py",
                           python_version="3.11").python_version == "3.11"


# Workspaces are not claimed by deploys of repositories that do not exist -------------------
def test_api_deploy_of_a_missing_repository_claims_no_workspace(
        ctx: Context, make_repo: Callable[..., Any], tmp_path: Path) -> None:
    deployer = make_user(ctx, "mallory")
    headers = token_for(ctx, deployer)
    real = make_repo("hello")  # <tmp>/repos/hello/owner/hello.git: workspace "owner"
    missing = {  # workspace name -> (request, field of the error)
        "victim": ({"repo_url": str(tmp_path / "victim" / "nothing.git")}, "repo_url"),
        "acme": ({"repo_url": f"file://{tmp_path}/acme/nothing.git"}, "repo_url"),
        "owner": ({"repo_url": real.url, "branch": "no-such-branch"}, "branch"),
    }

    async def scenario(c: TestClient) -> None:
        for name, (body, field) in missing.items():
            r = await c.post("/apps", headers=headers, json={**body, "subdomain": name})
            error = (await r.json())["error"]
            assert r.status == 422 and error["field"] == field, (name, r.status, error)
        r = await c.post("/apps", headers=headers, json={"repo_url": real.url,
                                                         "subdomain": "real"})
        assert r.status == 201 and (await r.json())["workspace"] == "owner"
    api_call(ctx, scenario)
    with session_scope(ctx.engine) as s:
        names = set(s.exec(select(Workspace.name)).all())
        roles = s.exec(select(Workspace.name, Membership.role).join(
            Membership, Membership.workspace_id == Workspace.id)).all()
    assert names == {"owner"} and list(roles) == [("owner", "admin")]


# Values longer than their database columns -------------------------------------------------
def test_values_longer_than_their_columns_are_refused_on_both_databases(
        db_ctx: Context) -> None:
    owner = make_user(db_ctx, "owner")
    headers = token_for(db_ctx, owner)
    apps.deploy_app(db_ctx, owner, repo_url=REPO, subdomain="dash")  # the workspace exists
    too_long = {"repo_url": ({"repo_url": "https://github.com/team/" + "r" * 2100}),
                "owner": ({"repo_url": "https://github.com/" + "o" * 129 + "/r"}),
                "branch": ({"repo_url": REPO, "branch": "b" * 256}),
                "main_file": ({"repo_url": REPO, "main_file": "m" * 1030 + ".py"})}

    async def scenario(c: TestClient) -> None:
        for name, body in too_long.items():
            r = await c.post("/apps", headers=headers, json=body)
            assert r.status == 422, (name, r.status, await r.text())
            assert (await r.json())["error"]["field"] == ("repo_url" if name == "owner"
                                                          else name)
    api_call(db_ctx, scenario)


def test_dashboard_shows_deep_secrets_as_an_error_on_their_line(dash: Dash) -> None:
    app = apps.deploy_app(dash.ctx, dash.admin, repo_url=REPO, subdomain="deep")
    at = open_settings(dash, app)
    at.text_area(key=f"secrets_text_{app.id}").input(
        'ok = "yes"\n' + DEEP_SECRETS["inline tables"]).run()
    click(at, "save_secrets")  # asserts no exception reached the page
    assert any("Line 2, column 165" in e.value and "nested more than 32" in e.value
               for e in at.error), [e.value for e in at.error]
    assert any(c.value.startswith("   2 | a = {b = ") for c in at.code)
    assert app_secrets.get_secrets(dash.ctx, dash.admin, app.id) == ""


def test_a_long_dotted_key_is_refused_before_parsing_in_bounded_time() -> None:
    """tomllib takes seconds for a dotted key of thousands of parts (15 s for 32,000)."""
    started = time.monotonic()
    with pytest.raises(app_secrets.SecretsError, match="Line 1, column 64"):
        app_secrets.parse_secrets("a" + ".b" * 32_000 + " = 1")
    assert time.monotonic() - started < 1.0
    assert app_secrets.parse_secrets("k" + ".k" * 31 + " = 1.5")  # 32 parts are fine
