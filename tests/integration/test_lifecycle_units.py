"""Lifecycle parts without a supervisor process: webhook verification through the proxy's
API mount, hibernation with a fake clock, the email outbox and its sender against a real
SMTP server (aiosmtpd), and the in-place file swap on real git checkouts."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from backend.accounts import auth
from backend.apps import hooks
from backend.apps import service as apps
from backend.errors import NotFound, PermissionDenied
from backend.platform import notifications
from models import App, AppEvent, EmailOutbox, Membership, User, session_scope, utcnow
from supervisor import mailer
from supervisor.api import make_api_app
from supervisor.control import hibernation
from supervisor.proxy import make_proxy_app
from supervisor.routes import RouteTable
from supervisor.sources import checkouts, gitsync
from tests.support.lifecycle_support import MailSink, github_push


class FakeRuntime:
    name = "fake"


class RecordingReconciler:
    """Stands in for the reconciler: records what the API asked for."""

    def __init__(self) -> None:
        self.runtime = FakeRuntime()
        self.pushes: list[tuple[int, str]] = []

    def push_detected(self, app_id: int, source: str) -> None:
        self.pushes.append((app_id, source))


def set_email(ctx, username: str, address: str) -> None:  # type: ignore[no-untyped-def]
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == username)).one()
        user.email = address
        s.add(user)


def load(ctx, app_id: int) -> App:  # type: ignore[no-untyped-def]
    with session_scope(ctx.engine) as s:
        return s.get(App, app_id)


# Webhooks ---------------------------------------------------------------------------------
def test_normalised_repo_urls() -> None:
    same = ["https://github.com/Owner/Repo.git", "git@github.com:owner/repo.git",
            "ssh://git@github.com/owner/repo", "https://github.com/owner/repo/",
            "http://github.com/owner/repo"]
    assert {hooks.normalise_repo_url(u) for u in same} == {"github.com/owner/repo"}
    assert hooks.normalise_repo_url("file:///srv/git/a/b.git") == "/srv/git/a/b"
    assert hooks.normalise_repo_url("/srv/git/a/b.git") == "/srv/git/a/b"
    assert hooks.normalise_repo_url("https://gitlab.com/a/b") != "github.com/a/b"


def test_webhooks_verify_before_acting(ctx, admin) -> None:
    one = apps.deploy_app(ctx, admin, repo_url="https://github.com/team/dash.git",
                          subdomain="dash")
    two = apps.deploy_app(ctx, admin, repo_url="git@github.com:team/dash.git", branch="dev",
                          subdomain="dash-dev")
    other = apps.deploy_app(ctx, admin, repo_url="https://github.com/team/other",
                            subdomain="other")
    secret_one, secret_two = load(ctx, one.id).webhook_secret, load(ctx, two.id).webhook_secret
    assert len(secret_one) >= 30 and secret_one != secret_two
    reconciler = RecordingReconciler()
    body = github_push("https://github.com/team/dash.git", "main")

    async def scenario() -> None:
        proxy = make_proxy_app(ctx.settings, RouteTable(), api=make_api_app(ctx, reconciler))
        async with TestClient(TestServer(proxy)) as client:
            host = {"Host": f"localhost:{ctx.settings.port}", "X-GitHub-Event": "push"}

            async def hook(data: bytes, **headers: str):  # type: ignore[no-untyped-def]
                resp = await client.post("/api/v1/hooks/github", data=data,
                                         headers={**host, **headers})
                return resp.status, await resp.json()

            assert (await hook(body))[0] == 401
            assert (await hook(body, **{"X-Hub-Signature-256": "sha256=" + "0" * 64}))[0] == 403
            assert (await hook(body, **{"X-Hub-Signature-256":
                                        hooks.sign("not-the-secret", body)}))[0] == 403
            tampered = body.replace(b"main", b"dev")
            assert (await hook(tampered, **{"X-Hub-Signature-256":
                                            hooks.sign(secret_one, body)}))[0] == 403
            assert reconciler.pushes == []  # nothing acted on a bad request
            # Signed with app one's secret: only app one (same repo, its branch) syncs.
            status, data = await hook(body, **{"X-Hub-Signature-256": hooks.sign(secret_one,
                                                                                 body)})
            assert (status, data["apps"]) == (202, [one.id])
            # Signed with app two's secret but for main: verified, not its branch.
            status, data = await hook(body, **{"X-Hub-Signature-256": hooks.sign(secret_two,
                                                                                 body)})
            assert (status, data["apps"]) == (200, [])
            dev = github_push("git@github.com:team/dash.git", "dev")
            status, data = await hook(dev, **{"X-Hub-Signature-256": hooks.sign(secret_two,
                                                                                dev)})
            assert (status, data["apps"]) == (202, [two.id])
            ping = {**host, "X-GitHub-Event": "ping",
                    "X-Hub-Signature-256": hooks.sign(secret_one, body)}
            assert (await client.post("/api/v1/hooks/github", data=body,
                                      headers=ping)).status == 200
            # The generic hook: token in the query, a header, or a bearer token.
            path = f"/api/v1/hooks/apps/{other.id}"
            assert (await client.post(path, headers=host)).status == 401
            assert (await client.post(path + "?token=wrong", headers=host)).status == 403
            assert (await client.post(f"/api/v1/hooks/apps/999?token={secret_one}",
                                      headers=host)).status == 403
            secret_other = load(ctx, other.id).webhook_secret
            assert (await client.post(path, headers={**host, "X-Stcloud-Token":
                                                     secret_other})).status == 202
            assert (await client.post(path, headers={**host, "Authorization":
                                                     f"Bearer {secret_other}"})).status == 202
            health = await client.get("/api/v1/health", headers=host)
            assert await health.json() == {"status": "ok", "engine": "fake",
                                           "apps": {"queued": 3}}
            # On an app host /api/v1 is the app's, never ours.
            app_host = {"Host": f"dash.localhost:{ctx.settings.port}"}
            assert (await client.post(path, headers=app_host)).status != 202

    asyncio.run(scenario())
    assert reconciler.pushes == [(one.id, "github webhook"), (two.id, "github webhook"),
                                 (other.id, "push hook"), (other.id, "push hook")]


def test_webhook_info_is_for_developers(ctx, admin) -> None:
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git")
    info = hooks.webhook_info(ctx, admin, view.id)
    assert info.github_url.endswith("/api/v1/hooks/github")
    assert info.secret == load(ctx, view.id).webhook_secret
    viewer = auth.create_user(ctx, "viewer", "password-viewer")
    with session_scope(ctx.engine) as s:
        s.add(Membership(user_id=viewer.id, workspace_id=view.workspace_id, role="viewer"))
    with pytest.raises(PermissionDenied):
        hooks.webhook_info(ctx, viewer, view.id)
    assert "webhook_secret" not in repr(load(ctx, view.id))


# Hibernation -------------------------------------------------------------------------------
def running_app(ctx, admin, name: str, visibility: str = "public") -> int:  # type: ignore
    view = apps.deploy_app(ctx, admin, repo_url=f"/srv/git/team/{name}.git", subdomain=name)
    with session_scope(ctx.engine) as s:
        app = s.get(App, view.id)
        app.state, app.visibility = "running", visibility
        app.last_deployed_at = utcnow()
        s.add(app)
    return view.id


def test_hibernation_plan_with_a_fake_clock(ctx, admin) -> None:
    settings = ctx.settings
    public = running_app(ctx, admin, "pub")
    private = running_app(ctx, admin, "priv", "private")
    t0 = load(ctx, public).last_deployed_at
    everyone = lambda: [load(ctx, public), load(ctx, private)]  # noqa: E731

    def at(days: float) -> hibernation.Plan:
        return hibernation.plan(everyone(), t0 + timedelta(days=days), settings)

    assert at(4.9) == hibernation.Plan([], [])
    assert at(5.0) == hibernation.Plan([public], [])
    assert at(7.0) == hibernation.Plan([], [public])
    assert at(70) == hibernation.Plan([], [public])  # private apps never sleep
    allowed = dataclasses.replace(settings, hibernate_private_apps=True)
    assert hibernation.plan(everyone(), t0 + timedelta(days=8), allowed).sleep == \
        [public, private]
    # A visit on day 6 restarts the clock: warned again on day 11, asleep on day 13.
    with session_scope(ctx.engine) as s:
        app = s.get(App, public)
        app.last_viewed_at = t0 + timedelta(days=6)
        s.add(app)
    assert at(7.0) == hibernation.Plan([], [])
    assert at(11.0) == hibernation.Plan([public], [])
    assert at(13.0) == hibernation.Plan([], [public])
    # The clock is the last view or deploy, not the (newer) creation of the row.
    with session_scope(ctx.engine) as s:
        app = s.get(App, private)
        app.visibility, app.last_viewed_at = "public", None
        app.last_deployed_at = app.created_at - timedelta(days=8)
        s.add(app)
    assert hibernation.plan([load(ctx, private)], load(ctx, private).created_at,
                            settings).sleep == [private]
    off = dataclasses.replace(settings, hibernate_after_days=0)
    assert hibernation.plan(everyone(), t0 + timedelta(days=99), off) == hibernation.Plan()


def test_day_five_warning_once_per_idle_period(ctx, admin) -> None:
    set_email(ctx, "admin", "admin@example.com")
    public = running_app(ctx, admin, "pub")
    running_app(ctx, admin, "priv", "private")
    t0 = load(ctx, public).last_deployed_at
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=5, hours=1)) == []
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=6)) == []  # no repeat
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=7)) == [public]

    def warnings() -> list[EmailOutbox]:
        with session_scope(ctx.engine) as s:
            return list(s.exec(select(EmailOutbox).where(EmailOutbox.kind == "sleep_warning")))

    first = warnings()
    assert len(first) == 1 and first[0].app_id == public
    assert first[0].subject == "Your Streamlit app pub will go to sleep soon"
    assert "visit the app" in first[0].body_text and "--allow-empty" in first[0].body_text
    # A push (a deploy) on day 6.5 restarts the clock: a second warning for the new period.
    with session_scope(ctx.engine) as s:
        app = s.get(App, public)
        app.last_deployed_at = t0 + timedelta(days=6, hours=12)
        s.add(app)
    assert hibernation.run_hibernation_pass(ctx, t0 + timedelta(days=12)) == []
    assert len(warnings()) == 2


def test_wake_app_permissions_and_intent(ctx, admin) -> None:
    public = running_app(ctx, admin, "pub")
    private = running_app(ctx, admin, "priv", "private")
    assert apps.wake_app(ctx, None, public) == "running"  # awake: nothing to do
    with session_scope(ctx.engine) as s:
        for app_id in (public, private):
            app = s.get(App, app_id)
            app.state = "sleeping"
            s.add(app)
    assert apps.wake_app(ctx, None, public) == "starting"
    assert load(ctx, public).last_viewed_at is not None  # waking counts as a view
    with pytest.raises(NotFound):
        apps.wake_app(ctx, None, private)  # a visitor cannot see a private app
    outsider = auth.create_user(ctx, "outsider", "password-out")
    with pytest.raises(NotFound):
        apps.wake_app(ctx, outsider, private)
    assert apps.wake_app(ctx, admin, private) == "starting"
    with session_scope(ctx.engine) as s:
        reasons = s.exec(select(AppEvent.reason).where(AppEvent.to_state == "starting")).all()
    assert sorted(reasons) == ["Waking up (requested by a visitor)",
                               "Waking up (requested by admin)"]


# Email outbox and sender -----------------------------------------------------------------
@pytest.fixture
def mail_sink():  # type: ignore[no-untyped-def]
    sink = MailSink().start()
    yield sink
    sink.stop()


def test_recipients_and_dedupe(ctx, admin) -> None:
    set_email(ctx, "admin", "admin@example.com")
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git")
    dev = auth.create_user(ctx, "dev", "password-dev", email="dev@example.com")
    viewer = auth.create_user(ctx, "viewer", "password-viewer", email="viewer@example.com")
    noemail = auth.create_user(ctx, "quiet", "password-quiet")
    with session_scope(ctx.engine) as s:
        for user, role in ((dev, "developer"), (viewer, "viewer"), (noemail, "developer")):
            s.add(Membership(user_id=user.id, workspace_id=view.workspace_id, role=role))
    with session_scope(ctx.engine) as s:
        app = s.get(App, view.id)
        assert [u.username for u in notifications.recipients(s, app.workspace_id)] == \
            ["admin", "dev"]
        assert notifications.queue(s, ctx.settings, app, "over_limit", "41",
                                   limit_mb="1024") == 2
        assert notifications.queue(s, ctx.settings, app, "over_limit", "41") == 0
        assert notifications.queue(s, ctx.settings, app, "over_limit", "42") == 2
    rows = notifications.list_outbox(ctx, admin)
    assert len(rows) == 4 and {r.status for r in rows} == {"pending"}
    assert rows[0].subject == notifications.OVER_LIMIT_SUBJECT
    with pytest.raises(PermissionDenied):
        notifications.list_outbox(ctx, dev)


def queue_one(ctx, admin, kind: str = "crashed") -> int:  # type: ignore[no-untyped-def]
    set_email(ctx, "admin", "admin@example.com")
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git", subdomain="demo")
    with session_scope(ctx.engine) as s:
        notifications.queue(s, ctx.settings, s.get(App, view.id), kind, "1",
                            details="Traceback: boom")
    return view.id


def outbox(ctx) -> list[EmailOutbox]:  # type: ignore[no-untyped-def]
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(EmailOutbox).order_by(EmailOutbox.id)))


def test_sender_sends_once_with_text_html_and_links(ctx, admin, mail_sink) -> None:
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings,
                                                                **mail_sink.settings()))
    queue_one(ctx, admin)
    assert asyncio.run(mailer.send_pending(ctx)) == 1
    assert asyncio.run(mailer.send_pending(ctx)) == 0
    assert len(mail_sink.messages) == 1
    msg = mail_sink.messages[0]
    assert msg["Subject"] == "Your Streamlit app demo has crashed"
    assert msg["To"] == "admin@example.com" and msg["From"] == "cloud@example.com"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    app_url = ctx.settings.public_url("demo")
    for body in (text, html):
        assert app_url in body and ctx.settings.public_url() in body
        assert "Traceback: boom" in body
    row = outbox(ctx)[0]
    assert (row.status, row.attempts, row.lease_until) == ("sent", 1, None)


def test_sender_retries_with_backoff_and_resends_after_a_crash_once(ctx, admin,
                                                                   mail_sink) -> None:
    down = dataclasses.replace(ctx.settings, **{**mail_sink.settings(), "smtp_port": 1})
    queue_one(ctx, admin)
    now = utcnow()
    # SMTP unreachable: back to pending, retried after the backoff, not before.
    assert asyncio.run(mailer.send_pending(dataclasses.replace(ctx, settings=down), now)) == 0
    row = outbox(ctx)[0]
    assert (row.status, row.attempts) == ("pending", 1) and row.last_error
    assert row.next_attempt_at == now + mailer.retry_delay(1)
    up = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings,
                                                               **mail_sink.settings()))
    assert asyncio.run(mailer.send_pending(up, now + timedelta(seconds=5))) == 0
    # A sender claims the row and dies before marking it (the crash this guards against).
    later = now + timedelta(minutes=1)
    assert [r.id for r in mailer.claim(up, later)] == [row.id]
    assert mailer.claim(up, later + timedelta(seconds=1)) == []  # leased: nobody else
    assert asyncio.run(mailer.send_pending(up, later + timedelta(seconds=10))) == 0
    # After the lease the row is sent: exactly one message, then never again.
    after = later + mailer.LEASE + timedelta(seconds=1)
    assert asyncio.run(mailer.send_pending(up, after)) == 1
    assert asyncio.run(mailer.send_pending(up, after + timedelta(hours=2))) == 0
    assert len(mail_sink.messages) == 1
    assert mail_sink.messages[0]["Message-ID"] == mailer.message_id(up.settings, outbox(up)[0])
    assert outbox(up)[0].status == "sent"


def test_without_smtp_mail_waits_in_the_outbox(ctx, admin) -> None:
    queue_one(ctx, admin)
    assert asyncio.run(mailer.send_pending(ctx)) == 0
    assert [r.status for r in notifications.list_outbox(ctx, admin)] == ["pending"]


# In-place file swap -----------------------------------------------------------------------
def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"})


def test_sync_in_place_flips_files_atomically(make_repo, tmp_path: Path) -> None:
    big_a, big_b = b"A" * 4_000_000, b"B" * 4_000_000
    repo = make_repo("swap", {"app.py": "v = 1\n", "lib/helper.py": "h = 1\n",
                              "old.txt": "gone soon\n", "big.bin": big_a,
                              "same.txt": "unchanged\n"})
    app_dir = tmp_path / "apps" / "1"

    async def clone() -> tuple[str, Path]:
        return await gitsync.clone_tree(repo.url, "main", app_dir, lambda line: None)

    first, live = asyncio.run(clone())
    checkouts.point_current(app_dir, live)
    (live / "output.csv").write_text("the app's own file\n")  # untracked: kept
    same_inode = (live / "same.txt").stat().st_ino
    second = repo.commit({"app.py": "v = 2\n", "lib/helper.py": None, "lib/new.py": "n = 2\n",
                          "old.txt": None, "big.bin": big_b}, "second")
    _, fresh = asyncio.run(clone())
    old_files = asyncio.run(gitsync.tracked_files(live))
    new_files = asyncio.run(gitsync.tracked_files(fresh))
    torn: list[int] = []
    stop = threading.Event()

    def reader() -> None:  # a reader never sees a half-written file
        while not stop.is_set():
            data = (live / "big.bin").read_bytes()
            if data not in (big_a, big_b):
                torn.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        changed, removed = checkouts.sync_in_place(live, fresh, old_files, new_files,
                                                   last="app.py")
    finally:
        stop.set()
        thread.join()
    assert torn == []
    assert (changed, removed) == (3, 2)
    assert (live / "app.py").read_text() == "v = 2\n" and (live / "big.bin").read_bytes() == big_b
    assert not (live / "old.txt").exists() and not (live / "lib" / "helper.py").exists()
    assert (live / "lib" / "new.py").exists() and (live / "output.csv").exists()
    assert (live / "same.txt").stat().st_ino == same_inode  # untouched when unchanged
    assert asyncio.run(gitsync.head_commit(live)) == second != first
    assert checkouts.current_tree(app_dir) == live.resolve()
    checkouts.remove_unused(app_dir)
    assert [p.name for p in app_dir.iterdir() if p.name != "src"] == [live.name]


def test_sync_in_place_never_writes_through_a_symlink(make_repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = make_repo("evil", {"app.py": "x\n"})
    os.symlink(str(outside), repo.work / "d")
    git("add", "d", cwd=repo.work)
    repo.commit({}, "a link")
    app_dir = tmp_path / "apps" / "2"
    _, live = asyncio.run(gitsync.clone_tree(repo.url, "main", app_dir, lambda line: None))
    (repo.work / "d").unlink()
    repo.commit({"d/passwd": "pwned\n"}, "a directory where the link was")
    _, fresh = asyncio.run(gitsync.clone_tree(repo.url, "main", app_dir, lambda line: None))
    checkouts.sync_in_place(live, fresh, asyncio.run(gitsync.tracked_files(live)),
                            asyncio.run(gitsync.tracked_files(fresh)))
    assert list(outside.iterdir()) == []
    assert (live / "d").is_dir() and not (live / "d").is_symlink()
    assert (live / "d" / "passwd").read_text() == "pwned\n"


def test_env_sharing_by_workspace_scopes_each_environment(ctx, admin, tmp_path) -> None:
    """Same dependencies in two workspaces: one environment for the installation by
    default, one per workspace with env_sharing = workspace."""
    from supervisor.control.lifecycle import Lifecycle
    one = apps.deploy_app(ctx, admin, repo_url="https://github.com/acme/a", subdomain="a")
    two = apps.deploy_app(ctx, admin, repo_url="https://github.com/other/b", subdomain="b")
    assert one.workspace_id != two.workspace_id
    src = tmp_path / "src"
    src.mkdir()
    (src / "requirements.txt").write_text("pandas==3.1.1\n")
    shared = Lifecycle(ctx, FakeRuntime())  # type: ignore[arg-type]
    a, b = (shared.env_spec(load(ctx, i), src) for i in (one.id, two.id))
    assert a.scope == b.scope == "" and a.dep_hash == b.dep_hash
    scoped_ctx = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, env_sharing="workspace"))
    scoped = Lifecycle(scoped_ctx, FakeRuntime())  # type: ignore[arg-type]
    x, y = (scoped.env_spec(load(ctx, i), src) for i in (one.id, two.id))
    assert (x.scope, y.scope) == (f"workspace-{one.workspace_id}",
                                  f"workspace-{two.workspace_id}")
    assert len({x.dep_hash, y.dep_hash, a.dep_hash}) == 3
    assert scoped.env_spec(load(ctx, one.id), src).dep_hash == x.dep_hash  # stable
