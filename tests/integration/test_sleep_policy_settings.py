"""Setting an app's sleep policy through the backend and the REST API, on the database:
who may, the operator's bounds (shortest idle period, `never` allowed and capped per
workspace) refused with the bound in the message, `wake_on_visit` kept when left out, and
the hibernation pass on these policies with a fake clock (the warning email names the
policy). The supervisor applying them is in test_sleep_policies.py."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import select

from backend.apps import sleep_settings
from backend.context import Context, open_context
from backend.errors import NotFound, PermissionDenied, ValidationError
from models import App, EmailOutbox, session_scope
from supervisor.control import hibernation
from tests.support.api_world import World, auth, run


def with_settings(world: World, **kw: Any) -> Context:
    return open_context(dataclasses.replace(world.ctx.settings, **kw))


def test_who_may_set_it_and_the_bounds(world: World) -> None:
    ctx, users = world.ctx, world.users
    app_id = world.new_app("bounded")
    view = sleep_settings.get_policy(ctx, users["viewer"], app_id)
    assert (view.kind, view.policy, view.can_manage) == ("default", "default", False)
    assert "asleep after 7 days" in view.description
    with pytest.raises(PermissionDenied):
        sleep_settings.set_policy(ctx, users["viewer"], app_id, "never")
    with pytest.raises(NotFound):
        sleep_settings.get_policy(ctx, users["outsider"], app_id)
    with pytest.raises(ValidationError, match="shortest idle period this server allows is "
                       "5 minutes; choose 5 minutes or more"):
        sleep_settings.set_policy(ctx, users["dev"], app_id, "idle 1m")
    saved = sleep_settings.set_policy(ctx, users["dev"], app_id, "idle 2h", wake_on_visit=True)
    assert (saved.policy, saved.wake_on_visit, saved.can_manage) == ("idle 2h", True, True)
    assert sleep_settings.set_policy(ctx, users["dev"], app_id, "idle 3h").wake_on_visit
    assert sleep_settings.wakes_on_visit(ctx, app_id)

    no_never = with_settings(world, sleep_never_allowed=False)
    with pytest.raises(ValidationError, match="does not allow apps that never sleep"):
        sleep_settings.set_policy(no_never, users["dev"], app_id, "never")
    capped = with_settings(world, sleep_never_max_per_workspace=1)
    sleep_settings.set_policy(capped, users["dev"], app_id, "never")
    sleep_settings.set_policy(capped, users["dev"], app_id, "never")  # already one: kept
    other = world.new_app("second")
    with pytest.raises(ValidationError, match=r"1 app that never sleep, the most this server "
                       r"allows \(1\)"):
        sleep_settings.set_policy(capped, users["dev"], other, "never")
    sleep_settings.set_policy(capped, users["dev"], app_id, "idle 1d")
    assert sleep_settings.set_policy(capped, users["dev"], other, "never").kind == "never"


def test_the_api_reads_and_sets_it(world: World) -> None:
    app_id = world.new_app("api-nap")
    path = f"/apps/{app_id}/sleep-policy"

    async def scenario(c: TestClient) -> None:
        dev = auth(world, "developer")
        r = await c.put(path, json={"policy": "idle 1m"}, headers=dev)
        body = await r.json()
        assert r.status == 422 and body["error"]["field"] == "policy"
        assert "5 minutes" in body["error"]["message"]
        r = await c.put(path, json={"policy": "sometimes"}, headers=dev)
        assert "Write one of: default, never" in (await r.json())["error"]["message"]
        r = await c.put(path, json={"policy": "idle 12h", "wake_on_visit": "yes"}, headers=dev)
        assert (await r.json())["error"]["field"] == "wake_on_visit"
        r = await c.put(path, json={"policy": "schedule mon-fri 08:00-18:00 Europe/Berlin",
                                    "wake_on_visit": True}, headers=dev)
        assert r.status == 200 and (await r.json())["wake_on_visit"] is True
        r = await c.get(path, headers=auth(world, "viewer"))
        got = await r.json()
        assert got["policy"] == "schedule mon-fri 08:00-18:00 Europe/Berlin"
        assert got["description"].startswith("awake Mon–Fri 08:00–18:00 (Europe/Berlin)")
        assert got["can_manage"] is False and got["next_sleep"].startswith("not running")

    run(world, scenario)


def running(ctx: Context, app_id: int) -> App:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        app.state = "running"
        s.add(app)
        s.flush()
        s.refresh(app)
        return app


def test_the_hibernation_pass_follows_each_policy(world: World) -> None:
    ctx, dev = world.ctx, world.users["dev"]
    week, never, default = (world.new_app(n) for n in ("week", "always", "plain"))
    sleep_settings.set_policy(ctx, dev, week, "idle 3d")
    sleep_settings.set_policy(ctx, dev, never, "never")
    t0 = max(running(ctx, a).created_at for a in (week, never, default))
    with session_scope(ctx.engine) as s:
        for a in (week, never, default):
            row = s.get(App, a)
            row.last_deployed_at = t0
            s.add(row)
    at = lambda days: hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=days))  # noqa
    assert at(1.9) == []
    assert at(2.0) == []  # the warning, a day before
    with session_scope(ctx.engine) as s:
        mails = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "sleep_warning")).all()
    assert {m.app_id for m in mails} == {week}  # one email per developer
    assert "Its sleep policy is asleep after 3 days without a viewer" in mails[0].body_text
    assert at(3.0) == [week]
    assert at(7.0) == [week, default]  # the default (Community Cloud's 7 days), never: no
    twelve = open_context(dataclasses.replace(ctx.settings, sleep_default_policy="idle 12h"))
    assert hibernation.run_hibernation_pass(twelve, t0 + timedelta(hours=13)) == [default]


def test_a_schedule_wakes_once_per_window_and_a_sleep_by_hand_in_it_lasts(
        world: World) -> None:
    ctx, dev = world.ctx, world.users["dev"]
    app_id = world.new_app("office")
    sleep_settings.set_policy(ctx, dev, app_id, "schedule daily 00:00-24:00 UTC")
    t = running(ctx, app_id).created_at + timedelta(minutes=1)
    assert hibernation.run_hibernation_pass(ctx, t) == []  # awake in its hours: counted

    def state() -> str:
        with session_scope(ctx.engine) as s:
            app = s.get(App, app_id)
            assert app is not None
            return app.state

    def put_to_sleep() -> None:
        with session_scope(ctx.engine) as s:
            app = s.get(App, app_id)
            assert app is not None
            app.state = "sleeping"
            s.add(app)

    put_to_sleep()  # by hand, within the window
    hibernation.run_hibernation_pass(ctx, t + timedelta(minutes=5))
    assert state() == "sleeping"
    tomorrow = t.replace(hour=0, minute=1, second=0) + timedelta(days=1)
    hibernation.run_hibernation_pass(ctx, tomorrow)
    assert state() == "starting"  # the next window wakes it, once
    put_to_sleep()
    hibernation.run_hibernation_pass(ctx, tomorrow + timedelta(minutes=5))
    assert state() == "sleeping"
