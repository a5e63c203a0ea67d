"""The notification inbox: every notice that is emailed is also in each developer's dashboard
inbox, with or without an email address or SMTP; the API lists and marks them; the
over-limit page says what was really done; the dashboard shows the bell and the inbox."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import select

from backend.accounts import identity
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform import inbox, notifications
from backend.platform.settings import Settings
from models import App, AppEvent, EmailOutbox, Membership, Notification, User, session_scope
from supervisor import mailer
from supervisor.proxy.state_pages import notified_text
from tests.support.api_world import World
from tests.support.api_world import auth as api_auth
from tests.support.api_world import run as run_api
from tests.support.dashboard import (
    Dash,
    click,
    open_dashboard,
    text,
)
from tests.support.overlay_env import Env, set_cookies
from tests.support.overlay_env import run as run_overlay

INBOX_PAGE = "pages/dashboard/inbox.py"


def _member(ctx: Context, name: str, workspace_id: int, role: str, email: str) -> User:
    with session_scope(ctx.engine) as s:
        user = User(username=name, email=email)
        s.add(user)
        s.flush()
        s.add(Membership(user_id=user.id, workspace_id=workspace_id, role=role))
        s.refresh(user)
        return user


def _crash(ctx: Context, settings: Settings, app_id: int, incident: str = "e1"
           ) -> notifications.Notified:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        return notifications.notify(s, settings, app, "crashed", incident, details="boom")


def _outbox(ctx: Context) -> list[EmailOutbox]:
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(EmailOutbox)).all())


# Backend ---------------------------------------------------------------------------------
def test_a_notice_to_a_developer_without_email_lands_in_the_inbox(
        ctx: Context, admin: User) -> None:
    app_id = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/x.git", subdomain="x").id
    ws = apps.get_app(ctx, admin, app_id).workspace_id
    nomail = _member(ctx, "nomail", ws, "developer", email="")
    viewer = _member(ctx, "vic", ws, "viewer", email="vic@example.com")
    admin_mail = admin.email

    told = _crash(ctx, ctx.settings, app_id)

    assert told.in_dashboard == 2 and told.by_email == 0  # no SMTP: nobody is emailed
    notices = inbox.list_notices(ctx, nomail)
    assert [(n.kind, n.app_subdomain, n.emailed, n.read) for n in notices] == \
        [("crashed", "x", False, False)]
    assert "boom" in notices[0].body_text and "x" in notices[0].subject
    assert inbox.unread_count(ctx, nomail) == 1
    assert inbox.list_notices(ctx, viewer) == []  # viewers are not told
    assert [m.to_addr for m in _outbox(ctx)] == ([admin_mail] if admin_mail else [])
    # Once per incident: the same incident again adds nothing.
    assert _crash(ctx, ctx.settings, app_id).new_notices == 0
    assert inbox.unread_count(ctx, nomail) == 1


def test_queue_writes_the_inbox_too_and_marks_only_ones_own(ctx: Context, admin: User) -> None:
    app_id = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/y.git", subdomain="y").id
    ws = apps.get_app(ctx, admin, app_id).workspace_id
    dev = _member(ctx, "dee", ws, "developer", email="dee@example.com")
    other = _member(ctx, "ohm", ws, "developer", email="")
    smtp = dataclasses.replace(ctx.settings, smtp_host="127.0.0.1")
    with session_scope(ctx.engine) as s:  # the supervisor's callers use queue()
        queued = notifications.queue(s, smtp, s.get(App, app_id), "over_limit", "e7",
                                     limit_mb="512")
    assert queued == 1 + bool(admin.email)
    mine = inbox.list_notices(ctx, dev)
    assert [(n.kind, n.emailed) for n in mine] == [("over_limit", True)]
    assert _crash(ctx, smtp, app_id, "e8").by_email == 1 + bool(admin.email)
    assert [n.kind for n in inbox.list_notices(ctx, dev)] == ["crashed", "over_limit"]

    assert inbox.mark_read(ctx, other, [mine[0].id]) == 0  # not theirs
    assert inbox.mark_read(ctx, dev, [mine[0].id]) == 1
    assert inbox.unread_count(ctx, dev) == 1
    assert inbox.mark_all_read(ctx, dev) == 1 and inbox.unread_count(ctx, dev) == 0
    assert inbox.unread_count(ctx, other) == 2
    assert [n.kind for n in inbox.list_notices(ctx, other, unread_only=True)] == \
        ["crashed", "over_limit"]


# API -------------------------------------------------------------------------------------
def test_api_lists_and_marks_ones_own_notifications(world: World) -> None:
    ctx = world.ctx
    app_id = apps.list_apps(ctx, world.users["owner"])[0].id
    _crash(ctx, ctx.settings, app_id)

    async def scenario(c: TestClient) -> None:
        r = await c.get("/notifications", headers=api_auth(world, "readonly"))
        body = await r.json()
        assert r.status == 200 and body["unread"] == 1, body
        (notice,) = body["notifications"]
        assert notice["kind"] == "crashed" and notice["app"] == "dash" and not notice["read"]
        r = await c.get("/notifications", headers=api_auth(world, "viewer"))
        assert (await r.json())["notifications"] == []
        r = await c.post("/notifications/read", json={"ids": [notice["id"]]},
                         headers=api_auth(world, "outsider"))
        assert (await r.json())["marked_read"] == 0  # someone else's notice
        for bad in ({}, {"ids": []}, {"ids": ["1"]}, {"ids": [True]}, {"all": "yes"}):
            r = await c.post("/notifications/read", json=bad,
                             headers=api_auth(world, "readonly"))
            assert r.status == 422 and (await r.json())["error"]["code"] == "invalid", bad
        r = await c.post("/notifications/read", json={"ids": [notice["id"]]},
                         headers=api_auth(world, "readonly"))
        assert await r.json() == {"marked_read": 1, "unread": 0}
        r = await c.get("/notifications?unread=1", headers=api_auth(world, "developer"))
        assert (await r.json()) == {"unread": 0, "notifications": []}
        doc = await (await c.get("/openapi.json")).json()
        assert {"get"} <= set(doc["paths"]["/notifications"])
        assert {"post"} <= set(doc["paths"]["/notifications/read"])

    run_api(world, scenario)


# The over-limit page ---------------------------------------------------------------------
def test_notified_words_follow_what_was_done() -> None:
    told = notifications.Notified
    assert notified_text(told(1, 1, 1, 1)) == \
        "Thanks: the developers have been notified in their dashboard and by email."
    assert notified_text(told(0, 1, 1, 0)) == \
        "Thanks: the developers have been notified in their dashboard."
    assert "already been notified about this in their dashboard;" in \
        notified_text(told(0, 0, 2, 0))
    assert "Nobody could be notified" in notified_text(told(0, 0, 0, 0))


@pytest.mark.parametrize("email,smtp,said", [
    ("", "", "have been notified in their dashboard."),
    ("dev@example.com", "127.0.0.1", "have been notified in their dashboard and by email."),
])
def test_over_limit_notify_says_what_really_happened(settings: Settings, email: str,
                                                     smtp: str, said: str) -> None:
    ctx = open_context(dataclasses.replace(settings, smtp_host=smtp))

    async def scenario(env: Env) -> None:
        with session_scope(env.ctx.engine) as s:
            dev = s.get(User, env.dev.id)
            dev.email = email
            app = s.get(App, env.app_id)
            app.state = "over_limit"
            s.add(AppEvent(app_id=env.app_id, from_state="running", to_state="over_limit"))
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="over_limit", address=None))
        cookies = env.signed_in(env.viewer)
        async with env.request("GET", "/", page=True, cookies=cookies) as r:
            cookies[identity.CSRF_COOKIE] = token = \
                set_cookies(r)[identity.CSRF_COOKIE]
        async with env.request("POST", "/__stcloud/notify", cookies=cookies,
                               data={"csrf": token}) as r:
            page = await r.text()
        assert r.status == 200 and said in page, page
        if not email:
            assert "by email" not in page
        notices = inbox.list_notices(env.ctx, env.dev)
        assert [(n.kind, n.emailed) for n in notices] == [("over_limit", bool(email))]
        async with env.request("POST", "/__stcloud/notify", cookies=cookies,
                               data={"csrf": token}) as r:
            assert "already been notified" in await r.text()

    run_overlay(ctx, scenario)


# Dashboard -------------------------------------------------------------------------------
def _notify_admin(dash: Dash, incident: str) -> None:
    app_id = apps.deploy_app(dash.ctx, dash.admin, repo_url="https://github.com/owner/hello",
                             subdomain=f"hello-{incident}").id
    _crash(dash.ctx, dash.ctx.settings, app_id, incident)


def _bell(at: Any) -> str:
    return " ".join(str(link.label) for link in at.sidebar.get("page_link"))


def test_bell_shows_the_unread_count_on_every_page(dash: Dash) -> None:
    at = open_dashboard(dash.admin)
    assert "Notifications" in _bell(at) and "unread" not in _bell(at)
    _notify_admin(dash, "a")
    _notify_admin(dash, "b")
    at = open_dashboard(dash.admin, page="pages/dashboard/account.py")
    assert "2 unread notifications" in _bell(at)


def test_inbox_lists_newest_first_and_marks_read(dash: Dash) -> None:
    _notify_admin(dash, "old")
    _notify_admin(dash, "new")
    at = open_dashboard(dash.admin, page=INBOX_PAGE)
    shown = text(at)
    assert "**2** unread" in shown
    assert shown.index("hello-new") < shown.index("hello-old")
    newest = inbox.list_notices(dash.ctx, dash.admin)[0]
    click(at, f"inbox_read_{newest.id}")
    assert inbox.unread_count(dash.ctx, dash.admin) == 1
    assert "1 unread notification" in _bell(at.run())
    click(at, "inbox_read_all")
    assert inbox.unread_count(dash.ctx, dash.admin) == 0
    assert "All read" in text(at.run())
    with session_scope(dash.ctx.engine) as s:
        assert all(n.read_at is not None for n in s.exec(select(Notification)).all())


def test_a_mail_that_fails_for_good_no_longer_counts_as_emailed(ctx: Context, admin: User) -> None:
    app_id = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/z.git", subdomain="z").id
    ws = apps.get_app(ctx, admin, app_id).workspace_id
    dev = _member(ctx, "dora", ws, "developer", email="dora@example.com")
    # A real SMTP connection to a port nothing listens on; one attempt only.
    unreachable = dataclasses.replace(ctx.settings, smtp_host="127.0.0.1", smtp_port=1,
                                      smtp_tls="none", email_max_attempts=1)
    assert _crash(ctx, unreachable, app_id).by_email >= 1
    assert [n.emailed for n in inbox.list_notices(ctx, dev)] == [True]
    asyncio.run(mailer.send_pending(dataclasses.replace(ctx, settings=unreachable)))
    assert {m.status for m in _outbox(ctx)} == {"failed"}
    assert [n.emailed for n in inbox.list_notices(ctx, dev)] == [False]
