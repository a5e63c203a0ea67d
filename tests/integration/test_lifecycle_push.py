"""Pushes end to end, on both engines: a real supervisor process, a local bare git repo the
test pushes to, webhooks through the proxy, Streamlit sessions through the proxy, and a
real SMTP server receiving the mail.

1. code-only push (GitHub webhook) → files swapped in place: an open session sees the new
   text, the instance (pid or container) is the same;
2. dependency push (generic push hook) → new environment built while the old version
   serves, new instance, route switched: a client polling the app the whole time sees no
   failed request; the old instance is gone afterwards;
3. dependency push whose build fails → the previous version keeps serving, the app shows
   the last deploy failed, the developers get exactly one email.
"""

from __future__ import annotations

import dataclasses
import time

from sqlmodel import select

from backend.apps import service as apps
from backend.context import Context, open_context
from models import AppEvent, EmailOutbox, User, session_scope
from tests.support.instances import http_get, instance_alive, instance_id
from tests.support.lifecycle_support import LiveSession, Poller, post, send_github_push
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_for_state, wait_until

REQUIREMENTS = "streamlit==1.67.0\npandas==3.1.1\n"  # the example app's: a shared env
NEW_REQUIREMENTS = REQUIREMENTS + "# pinned again: a new dependency set, nothing new to fetch\n"
BAD_REQUIREMENTS = REQUIREMENTS + "no-such-package-stcloud-x==9.9\n"


def page(version: str) -> str:
    return ("import streamlit as st\nfrom helper import greeting\n\n"
            f"st.title(greeting())\nst.write('Version {version}')\n")


def test_pushes_update_in_place_redeploy_without_downtime_and_report_failures(
        engine_settings, admin, make_repo, mail_sink, tmp_path) -> None:
    settings = dataclasses.replace(engine_settings, git_poll_interval=0.0, redeploy_drain=1.0,
                                   **mail_sink.settings())
    ctx = open_context(settings)
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == "admin")).one()
        user.email = "dev@example.com"
        s.add(user)
    repo = make_repo("live", {"streamlit_app.py": page("one"), "requirements.txt": REQUIREMENTS,
                              "helper.py": "def greeting():\n    return 'Live updates'\n",
                              "notes.txt": "removed by the first push\n"})
    port = settings.port
    host = f"live.localhost:{port}"
    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    session = None
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="live")
        app = wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"}, sup=sup)
        assert app.state == "running", app.state_reason
        secret, first_instance, env_hash = app.webhook_secret, instance_id(ctx, view.id), \
            app.env_hash
        session = LiveSession(port, host).start()
        wait_until(lambda: session.seen("Version one"), 60, "the first page", sup)

        # 1. Code-only push, announced by a signed GitHub webhook: in place, no restart.
        second = repo.commit({"streamlit_app.py": page("two"), "notes.txt": None,
                              "helper.py": "def greeting():\n    return 'Updated live'\n"})
        assert send_github_push(port, repo.url, "main", None)[0] == 401
        assert send_github_push(port, repo.url, "main", "wrong-secret")[0] == 403
        pushed = time.monotonic()
        status, data = send_github_push(port, repo.url, "main", secret, second)
        assert (status, data["apps"]) == (202, [view.id])
        wait_until(lambda: session.seen("Version two") and session.seen("Updated live"), 30,
                   "the open session to show the pushed code", sup)
        visible_after = time.monotonic() - pushed
        assert not session.closed, "the session must survive a code-only push"
        # The row is written once the files are in place; the open session may rerun first.
        wait_until(lambda: load_app(ctx, view.id).commit == second, 30,
                   "the new commit to be recorded", sup)
        app = load_app(ctx, view.id)
        assert app.state == "running" and app.env_hash == env_hash
        assert instance_id(ctx, view.id) == first_instance, "no restart for a code-only push"
        assert app.last_deployed_at is not None
        with session_scope(ctx.engine) as s:
            reasons = list(s.exec(select(AppEvent.reason).where(AppEvent.app_id == view.id)))
        assert any(r.startswith(f"Updated to {second[:7]} in place") for r in reasons)
        print(f"code-only push visible in the open session after {visible_after:.2f} s")
        session.close()

        # 2. Dependency push, announced by the generic hook: zero-downtime redeploy.
        third = repo.commit({"streamlit_app.py": page("three"),
                             "requirements.txt": NEW_REQUIREMENTS})
        poller = Poller(port, host).start()
        wait_until(lambda: len(poller.statuses) >= 5, 30, "the poller")
        status, _ = post(port, f"/api/v1/hooks/apps/{view.id}?token={secret}", b"", {})
        assert status == 202
        wait_until(lambda: (a := load_app(ctx, view.id)) and a.commit == third, 300,
                   "the redeploy", sup)
        wait_until(lambda: not instance_alive(first_instance), 60, "the old instance to stop",
                   sup)
        count = len(poller.statuses)
        wait_until(lambda: len(poller.statuses) >= count + 10, 30, "requests after the swap")
        poller.stop()
        assert poller.failures == [], poller.failures[:5]
        app = load_app(ctx, view.id)
        assert app.state == "running" and app.env_hash != env_hash and not app.last_deploy_error
        new_instance = instance_id(ctx, view.id)
        assert new_instance != first_instance and instance_alive(new_instance)
        session = LiveSession(port, host).start()
        wait_until(lambda: session.seen("Version three"), 60, "the redeployed page", sup)
        session.close()

        # 3. A dependency push that cannot build: the old version keeps serving.
        fourth = repo.commit({"streamlit_app.py": page("four"),
                              "requirements.txt": BAD_REQUIREMENTS})
        assert send_github_push(port, repo.url, "main", secret, fourth)[0] == 202
        app = wait_until(lambda: (a := load_app(ctx, view.id)) and a.last_deploy_error and a,
                         300, "the failed deploy", sup)
        assert "no-such-package-stcloud-x" in app.last_deploy_error
        assert app.state == "running" and app.commit == third
        assert instance_id(ctx, view.id) == new_instance and instance_alive(new_instance)
        assert http_get(port, host)[0] == 200
        wait_until(lambda: mail_sink.matching("could not be updated"), 30, "the email", sup)
        wait_until(lambda: _statuses(ctx) == {"deploy_failed:sent"}, 30, "the outbox to be sent",
                   sup)
        failed_mail = mail_sink.matching("could not be updated")
        assert len(failed_mail) == 1 and failed_mail[0]["To"] == "dev@example.com"
        assert fourth[:12] in failed_mail[0].get_body(("plain",)).get_content()
        assert mail_sink.subjects() == [failed_mail[0]["Subject"]]  # nothing else was mailed
    finally:
        if session is not None:
            session.close()
        sup.stop()


def _statuses(ctx: Context) -> set[str]:
    with session_scope(ctx.engine) as s:
        return {f"{r.kind}:{r.status}" for r in s.exec(select(EmailOutbox))}
