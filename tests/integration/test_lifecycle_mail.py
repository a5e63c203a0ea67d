"""The email outbox and its sender against a real SMTP server (aiosmtpd), without a
supervisor process: recipients and dedupe, one send with text, HTML and links, retries with
backoff and a resend after a crash, and mail that waits without SMTP."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from sqlmodel import select

from backend.accounts import auth
from backend.apps import service as apps
from backend.context import Context
from backend.errors import PermissionDenied
from backend.platform import notifications
from models import App, EmailOutbox, Membership, User, session_scope, utcnow
from supervisor import mailer
from tests.support.lifecycle_support import (
    set_email,
)


# Email outbox and sender -----------------------------------------------------------------
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


def queue_one(ctx: Context, admin: User, kind: str = "crashed") -> int:
    set_email(ctx, "admin", "admin@example.com")
    view = apps.deploy_app(ctx, admin, repo_url="/srv/git/team/demo.git", subdomain="demo")
    with session_scope(ctx.engine) as s:
        notifications.queue(s, ctx.settings, s.get(App, view.id), kind, "1",
                            details="Traceback: boom")
    return view.id


def outbox(ctx: Context) -> list[EmailOutbox]:
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
