"""A supervisor killed (SIGKILL) in the middle of a zero-downtime redeploy: the old version
keeps serving throughout, the next supervisor adopts it, redoes the interrupted build, and
when that build fails the developers get exactly one email, even after yet another
restart. The build is held open by a package whose build backend waits for the test."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlmodel import select

from backend.apps import service as apps
from backend.context import Context, open_context
from models import Build, EmailOutbox, User, session_scope
from tests.support.instances import http_get, instance_alive, instance_id, running_instances
from tests.support.lifecycle_support import (
    build_visible_dir,
    gated_package,
    package_files,
)
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_for_state, wait_until

REQUIREMENTS = "streamlit==1.67.0\npandas==3.1.1\n"
PAGE = "import streamlit as st\nst.write('Version {n}')\n"


def builds_of(ctx: Context, app_id: int, commit: str) -> list[str]:
    with session_scope(ctx.engine) as s:
        return sorted(s.exec(select(Build.status).where(Build.app_id == app_id,
                                                        Build.commit == commit)))


def outbox_kinds(ctx: Context) -> list[tuple[str, str]]:
    with session_scope(ctx.engine) as s:
        return sorted((r.kind, r.status) for r in s.exec(select(EmailOutbox)))


def source_trees(app_dir: Path) -> list[str]:
    return [p.name for p in app_dir.iterdir() if p.name.startswith("src-")]


def test_killed_mid_build_recovers_and_mails_once(settings, admin, make_repo, mail_sink,
                                                  tmp_path) -> None:
    settings = dataclasses.replace(settings, git_poll_interval=0.5, **mail_sink.settings())
    ctx = open_context(settings)
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == "admin")).one()
        user.email = "dev@example.com"
        s.add(user)
    pkg, gate = gated_package(build_visible_dir(settings, "gated"))
    repo = make_repo("mid", {"streamlit_app.py": PAGE.format(n=1),
                             "requirements.txt": REQUIREMENTS})
    host = f"mid.localhost:{settings.port}"
    sup = SupervisorProcess(settings, tmp_path / "sup1.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="mid")
        first = wait_for_state(ctx, view.id, {"running", "crashed", "build_failed"}, sup=sup)
        assert first.state == "running", first.state_reason
        serving = instance_id(ctx, view.id)
        assert serving

        # A dependency push whose build hangs until the test opens the gate.
        pushed = repo.commit({"streamlit_app.py": PAGE.format(n=2), "requirements.txt":
                              REQUIREMENTS + "./gatedpkg\n", **package_files(pkg)})
        wait_until(lambda: builds_of(ctx, view.id, pushed) == ["running"]
                   and "building the new environment" in load_app(ctx, view.id).state_reason,
                   60, "the build to start", sup)
        sup.kill()
        assert instance_alive(serving), "the app outlives its supervisor"
        gate.write_text("fail")

        sup = SupervisorProcess(settings, tmp_path / "sup2.log").start()
        wait_until(lambda: http_get(settings.port, host)[0] == 200, 60, "the adopted app", sup)
        app = wait_until(lambda: (a := load_app(ctx, view.id)) and a.last_deploy_error and a,
                         120, "the retried build to fail", sup)
        assert "gatedpkg" in app.last_deploy_error or "Installing" in app.last_deploy_error
        assert app.state == "running" and app.commit == first.commit
        assert instance_id(ctx, view.id) == serving, "adopted, never restarted"
        assert builds_of(ctx, view.id, pushed) == ["failed", "interrupted"]
        wait_until(lambda: mail_sink.matching("could not be updated"), 30, "the email", sup)
        # Marked sent after the SMTP server took it (a kill in between would resend it once,
        # as supervisor/mailer.py documents; that case is tested in test_lifecycle_mail).
        wait_until(lambda: outbox_kinds(ctx) == [("deploy_failed", "sent")], 30,
                   "the outbox row to be marked sent", sup)

        # Another crash-restart: the failed commit is not retried, nothing is mailed again;
        # a later code-only push (found by polling) still goes through, in place.
        sup.kill()
        sup = SupervisorProcess(settings, tmp_path / "sup3.log").start()
        fixed = repo.commit({"streamlit_app.py": PAGE.format(n=3),
                             "requirements.txt": REQUIREMENTS,
                             **dict.fromkeys(package_files(pkg))})  # the package goes
        wait_until(lambda: load_app(ctx, view.id).commit == fixed, 60, "the fix", sup)
        app = load_app(ctx, view.id)
        assert app.state == "running" and not app.last_deploy_error
        assert instance_id(ctx, view.id) == serving
        assert running_instances(settings, view.id) == [serving], "no second instance left"
        # The in-place update notes the new commit, then deletes the clone it took the
        # files from: wait for that, not only for the commit.
        app_dir = settings.apps_path / str(view.id)
        wait_until(lambda: len(source_trees(app_dir)) == 1, 30,
                   "a single source tree in the app dir", sup)
        assert len(mail_sink.matching("could not be updated")) == 1
        assert outbox_kinds(ctx) == [("deploy_failed", "sent")]
    finally:
        sup.stop()


def test_a_push_refused_before_its_build_is_not_retried(settings, admin, make_repo,
                                                        tmp_path) -> None:
    """A push whose dependency files are refused before any build starts (a requirement
    naming a path outside the repository) is recorded as a failed build of that commit, so
    polling does not try it again every interval; the next push still goes through."""
    settings = dataclasses.replace(settings, git_poll_interval=0.3)
    ctx = open_context(settings)
    repo = make_repo("refused", {"streamlit_app.py": PAGE.format(n=1),
                                 "requirements.txt": REQUIREMENTS})
    sup = SupervisorProcess(settings, tmp_path / "sup.log").start()
    try:
        view = apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain="refused")
        first = wait_for_state(ctx, view.id, {"running", "crashed", "build_failed"}, sup=sup)
        assert first.state == "running", first.state_reason
        refused = repo.commit({"requirements.txt": REQUIREMENTS + "pkg @ file:///etc\n"})
        wait_until(lambda: builds_of(ctx, view.id, refused) == ["failed"], 60,
                   "the refused commit's failed build", sup)
        fixed = repo.commit({"streamlit_app.py": PAGE.format(n=2),
                             "requirements.txt": REQUIREMENTS})
        wait_until(lambda: load_app(ctx, view.id).commit == fixed, 60, "the next push", sup)
        assert builds_of(ctx, view.id, refused) == ["failed"]
        assert sup.output().count(f"commit={refused[:12]}") == 1, "tried once"
    finally:
        sup.stop()
