"""Several supervisors and proxies on one database (docs/scale-out.md,
supervisor/control/leader.py).

- the lease: one leader, compare-and-set take-over, fencing of the old leader, immediate
  take-over when the holder is provably gone (same host; PostgreSQL session ended);
- two real supervisors sharing a data dir: a reboot asked through the follower's API is
  done by the leader; the leader killed (SIGKILL) during a deploy, then the next leader
  killed during a hibernation pass: each time the other takes over within a bound, every
  app ends in its wanted state with exactly one instance (or none, asleep), nothing lost;
- two standalone proxies (`python -m supervisor proxy`) serving one app: sessions through
  both are each one view event; a sign-in token minted by one is redeemed by the other,
  once.

Each runs on SQLite and on PostgreSQL (`new_postgres_database`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlmodel import select

from backend.accounts import api_tokens, identity
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.platform.settings import PROJECT_ROOT, Settings
from models import App, AppRequest, ClusterLease, User, ViewEvent, session_scope, utcnow
from supervisor.control.leader import LEASE, Leadership, Me, current_leader, me
from tests.conftest import GitRepo, free_port
from tests.support.instances import http_get, instance_id, running_instances
from tests.support.lifecycle_support import build_visible_dir, gated_package, package_files
from tests.support.overlay_support import dashboard_cookie
from tests.support.streamlit_client import open_streamlit_session
from tests.support.supervisor_harness import (
    SupervisorProcess,
    load_app,
    stored_app,
    wait_for_state,
    wait_until,
)

LEASE_SECONDS = 3.0
FAILOVER_BOUND = LEASE_SECONDS + 30  # lease expiry at worst, plus a loaded machine's slack


@pytest.fixture
def db_settings(settings: Settings, db_url: str) -> Settings:
    """`settings` on SQLite and on PostgreSQL, with a short lease so take-overs are quick."""
    return dataclasses.replace(settings, database_url=db_url, lease_seconds=LEASE_SECONDS)


# The lease, in process -------------------------------------------------------------------
def _node(name: str) -> Me:
    m = me()
    return Me(name, m.host, m.pid, m.pid_started)  # this live process: never "gone"


def _holder(ctx: Context) -> tuple[str, int]:
    with session_scope(ctx.engine) as s:
        row = s.get(ClusterLease, LEASE)
        return (row.holder, row.epoch) if row else ("", 0)


def test_lease_one_leader_takeover_and_fencing(db_settings: Settings) -> None:
    ctx = open_context(db_settings)
    a, b = Leadership(ctx, _node("a")), Leadership(ctx, _node("b"))
    assert a.step() and a.is_leader
    assert not b.step() and not b.is_leader, "a live, unexpired lease is not taken"
    assert _holder(ctx) == ("a", a.epoch)
    assert a.step(), "renewal keeps it"

    if ctx.engine.dialect.name == "postgresql":
        a._drop_lock_conn()  # a's database session ends, as when its process is killed
        deadline = time.monotonic() + 10  # the server ends the session a moment later
        while not b.step():  # polls as a follower does
            assert time.monotonic() < deadline, \
                "the advisory lock is free: taken before the lease expires"
            time.sleep(0.05)
    else:
        with session_scope(ctx.engine) as s:  # a stops renewing: its lease runs out
            row = s.get(ClusterLease, LEASE)
            row.expires_at = utcnow() - timedelta(seconds=1)
            s.add(row)
        assert b.step()
    assert b.epoch == a.epoch + 1 and _holder(ctx) == ("b", b.epoch)
    assert not a.step() and not a.is_leader, "fenced: the old leader's epoch is stale"
    assert asyncio.run(a.confirm()) is False

    b.release()  # a clean shutdown hands over at once
    c = Leadership(ctx, _node("c"))
    assert c.step() and c.epoch == b.epoch + 1
    c.release()
    a.release()


def test_lease_of_a_dead_process_on_this_host_is_taken_at_once(settings: Settings) -> None:
    ctx = open_context(dataclasses.replace(settings, lease_seconds=3600))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ghost = Leadership(ctx, Me("ghost", me().host, dead.pid, time.time() - 5))
    assert ghost.step()
    heir = Leadership(ctx, _node("heir"))
    assert heir.step(), "the holder's pid is gone: no need to wait an hour"
    leader = current_leader(ctx)
    assert leader is not None and leader.holder == "heir"
    heir.release()
    ghost.release()


# Two supervisors --------------------------------------------------------------------------
def _node_settings(base: Settings, name: str) -> Settings:
    return dataclasses.replace(base, node_id=name, port=free_port())


def _leader(ctx: Context) -> str:
    row = current_leader(ctx)
    return row.holder if row else ""


def _reboot_via_api(port: int, token: str, app_id: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/api/v1/apps/{app_id}/reboot", body=b"{}",
                     headers={"Host": f"localhost:{port}", "Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def _pid(ctx: Context, app_id: int) -> str | None:
    return instance_id(ctx, app_id)


def _exactly_one(settings: Settings, ctx: Context, app_id: int) -> bool:
    found = running_instances(settings, app_id)
    return len(found) == 1 and found == [_pid(ctx, app_id)]


def _backdate(ctx: Context, app_ids: list[int], days: float) -> None:
    then = utcnow() - timedelta(days=days)
    with session_scope(ctx.engine) as s:
        for app_id in app_ids:
            app = s.get(App, app_id)
            app.created_at = app.last_deployed_at = app.last_viewed_at = then
            s.add(app)


def test_two_supervisors_failover_during_deploy_and_hibernation(
        db_settings: Settings, admin: User, make_repo: Callable[..., GitRepo],
        tmp_path: Path) -> None:
    base = dataclasses.replace(db_settings, hibernation_interval=0.3, git_poll_interval=0)
    ctx = open_context(base)
    _, token = api_tokens.create_token(ctx, admin, "ops", ("read", "deploy"))
    sup_a = SupervisorProcess(_node_settings(base, "node-a"), tmp_path / "a.log").start()
    wait_until(lambda: _leader(ctx) == "node-a", 30, "node-a to lead", sup_a)
    sup_b = SupervisorProcess(_node_settings(base, "node-b"), tmp_path / "b.log").start()
    procs = [sup_a, sup_b]
    try:
        # A deploy and a reboot asked through the follower are done by the leader.
        hello = make_repo("hello")
        one = apps.deploy_app(ctx, admin, repo_url=hello.url, subdomain="one")
        app = wait_for_state(ctx, one.id, {"running", "build_failed", "crashed"}, sup=sup_a)
        assert app.state == "running", app.state_reason
        first_pid = _pid(ctx, one.id)
        assert _reboot_via_api(sup_b.settings.port, token, one.id) in (200, 202)
        wait_until(lambda: (a := load_app(ctx, one.id)) and a.state == "running"
                   and _pid(ctx, one.id) not in (None, first_pid), 120,
                   "the leader to reboot the app", sup_a)
        assert _leader(ctx) == "node-a" and _exactly_one(base, ctx, one.id)
        wait_until(lambda: http_get(sup_b.settings.port, f"one.localhost:{sup_b.settings.port}"
                                    )[0] == 200, 30, "the follower's proxy to serve it", sup_b)

        # Kill -9 the leader while it deploys (the build waits on a gate).
        pkg, gate = gated_package(build_visible_dir(base, "gated"))
        repo = make_repo("two", {
            "streamlit_app.py": "import streamlit as st\nst.write('two')\n",
            "requirements.txt": "streamlit==1.67.0\n./gatedpkg\n", **package_files(pkg)})
        two = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="two")
        wait_until(lambda: stored_app(ctx, two.id).state == "building"
                   and "environment" in stored_app(ctx, two.id).state_reason,
                   120, "the deploy to build", sup_a)
        adopted_pid = _pid(ctx, one.id)
        killed = time.monotonic()
        sup_a.kill()
        wait_until(lambda: _leader(ctx) == "node-b", FAILOVER_BOUND, "node-b to lead", sup_b)
        print(f"failover after SIGKILL during a deploy: {time.monotonic() - killed:.2f} s")
        gate.write_text("ok")
        app = wait_for_state(ctx, two.id, {"running", "build_failed", "crashed"}, sup=sup_b)
        assert app.state == "running", app.state_reason
        for app_id in (one.id, two.id):  # stays so over several passes of the new leader
            wait_until(lambda: _exactly_one(base, ctx, app_id), 30, "one instance", sup_b)
        assert _pid(ctx, one.id) == adopted_pid, "the running app was adopted, not restarted"

        # A new supervisor joins as follower; kill -9 the leader during a hibernation pass.
        sup_c = SupervisorProcess(_node_settings(base, "node-c"), tmp_path / "c.log").start()
        procs.append(sup_c)
        _backdate(ctx, [one.id, two.id], days=8)

        def pass_under_way() -> bool:
            with session_scope(ctx.engine) as s:
                asked = s.exec(select(AppRequest).where(AppRequest.kind == "sleep")).first()
                slept = s.exec(select(App).where(App.state == "sleeping")).first()
            return asked is not None or slept is not None
        wait_until(pass_under_way, 60, "the hibernation pass", sup_b, interval=0.01)
        killed = time.monotonic()
        sup_b.kill()
        wait_until(lambda: _leader(ctx) == "node-c", FAILOVER_BOUND, "node-c to lead", sup_c)
        print(f"failover after SIGKILL during hibernation: {time.monotonic() - killed:.2f} s")
        for app_id in (one.id, two.id):
            wait_for_state(ctx, app_id, {"sleeping"}, timeout=60, sup=sup_c)
            wait_until(lambda: running_instances(base, app_id) == [], 30, "no instance", sup_c)

        def all_served() -> bool:
            with session_scope(ctx.engine) as s:
                return s.exec(select(AppRequest)).first() is None
        wait_until(all_served, 30, "every request to be served", sup_c)
        assert all(stored_app(ctx, i).state == "sleeping" for i in (one.id, two.id))
    finally:
        for proc in procs:
            proc.stop()


# Two standalone proxies -----------------------------------------------------------------
class ProxyProcess(SupervisorProcess):
    """`python -m supervisor proxy` with these settings."""

    def start(self, timeout: float = 60) -> ProxyProcess:
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        env.pop("DATABASE_URL", None)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "supervisor", "proxy"],
                                         cwd=PROJECT_ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._proxy_answers, timeout, "the proxy to listen", self)
        return self


def _views(ctx: Context, app_id: int) -> list[str]:
    with session_scope(ctx.engine) as s:
        return sorted(s.exec(select(ViewEvent.viewer_key).where(ViewEvent.app_id == app_id)))


def _location(port: int, host: str, path: str, cookies: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={
            "Host": host, "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.headers.get("Location", "")
    finally:
        conn.close()


def test_two_proxies_serve_one_app_and_count_each_view_once(
        db_settings: Settings, admin: User, hello_repo: GitRepo, tmp_path: Path) -> None:
    ctx = open_context(db_settings)
    sup = SupervisorProcess(db_settings, tmp_path / "sup.log").start()
    proxies = [ProxyProcess(_node_settings(db_settings, f"proxy-{i}"), tmp_path / f"p{i}.log")
               .start() for i in (1, 2)]
    view = None
    try:
        view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain="hello")
        app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, sup=sup)
        assert app.state == "running", app.state_reason
        for p in proxies:
            port = p.settings.port
            wait_until(lambda: http_get(port, f"hello.localhost:{port}")[0] == 200, 30,
                       "the app through a standalone proxy", p)
            wait_until(lambda: http_get(port, f"localhost:{port}")[0] == 200, 60,
                       "the dashboard through a standalone proxy", p)

        async def sessions() -> None:
            visitors = [identity.new_visitor_id() for _ in range(3)]
            plan = [(proxies[0], visitors[0]), (proxies[1], visitors[1]),
                    (proxies[0], visitors[2]), (proxies[1], visitors[2]),  # a reconnect
                    (proxies[1], visitors[0])]                            # via the other
            for proxy, visitor in plan:
                port = proxy.settings.port
                seen = await open_streamlit_session(
                    f"ws://127.0.0.1:{port}", f"hello.localhost:{port}", 60,
                    cookies={identity.VISITOR_COOKIE: visitor})
                assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", seen
        asyncio.run(sessions())
        wait_until(lambda: len(_views(ctx, view.id)) >= 3, 30, "the view events", sup)
        # Each viewer once: a second session of the same viewer within the analytics
        # window is a reconnect, whichever proxy it came through.
        keys = _views(ctx, view.id)
        assert len(keys) == 3 and len(set(keys)) == 3, keys

        # A sign-in token minted by one proxy is redeemed by the other, once.
        one, two = (p.settings.port for p in proxies)
        status, loc = _location(one, f"localhost:{one}", "/__stcloud/authorize?" + urlencode(
            {"app": "hello", "next": "/"}), {identity.DASHBOARD_COOKIE:
                                             dashboard_cookie(ctx, admin.username)})
        assert status == 302 and "/__stcloud/callback?" in loc, (status, loc)
        token = parse_qs(urlsplit(loc).query)["token"][0]
        callback = "/__stcloud/callback?" + urlencode({"token": token, "next": "/"})
        assert _location(two, f"hello.localhost:{two}", callback, {})[0] == 302
        assert _location(one, f"hello.localhost:{one}", callback, {})[0] == 400, "single use"

        # Losing either: a proxy killed (-9) leaves the other serving; with the supervisor
        # killed too, the surviving proxy still serves the running app from the database.
        proxies[0].kill()
        sup.kill()

        async def survivor_session() -> None:
            seen = await open_streamlit_session(f"ws://127.0.0.1:{two}",
                                                f"hello.localhost:{two}", 60)
            assert seen["script_finished"] == "FINISHED_SUCCESSFULLY", seen
        assert http_get(two, f"hello.localhost:{two}")[0] == 200
        asyncio.run(survivor_session())
    finally:
        for p in [*proxies, sup]:
            p.stop()
        for pid in running_instances(db_settings, view.id) if view else ():
            os.killpg(int(pid), signal.SIGKILL)  # orphaned by the supervisor's kill


def test_requests_are_rows_served_by_the_leader(settings: Settings) -> None:
    """A push asked of any process is an `app_request` row (what a follower's API and a
    standalone proxy write); the rows stay until the leader served them."""
    from supervisor.proxy.standalone import DatabaseRequests
    ctx = open_context(settings)
    DatabaseRequests(ctx).push_detected(7, "push hook")
    with session_scope(ctx.engine) as s:
        rows = [(r.app_id, r.kind, r.arg) for r in s.exec(select(AppRequest))]
    assert rows == [(7, "sync", "push hook")]
