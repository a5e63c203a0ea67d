"""The email sender: delivers pending `EmailOutbox` rows over SMTP, with retries.

One pass (`send_pending(ctx, now)`, run by the scheduler every `email_interval` seconds):
1. Claim the next due row: a `pending` one whose `next_attempt_at` has come, or a `sending`
   one whose lease ran out (a sender died holding it). Claiming is a compare-and-set UPDATE
   (`status`, `attempts` unchanged since read) that sets `sending`, `lease_until = now +
   LEASE` and counts the attempt, committed before any SMTP traffic, so two senders never
   hold one row. Rows are claimed one at a time, right before each is sent: a sender killed
   mid-pass leaves at most one row `sending`, never a batch of unsent ones held back.
2. Send it; on success mark it `sent` at once (then claim the next, up to BATCH a pass).
   On a temporary failure put it back to `pending` with `next_attempt_at` backed off
   (30 s, 1, 2, 4 … min, at most 1 h); after `email_max_attempts` attempts, or when the
   server refuses the recipient, mark it `failed`.

The trade-off, stated plainly: SMTP has no idempotent "send once". If the supervisor dies
after the server accepted a message but before the row became `sent` (the window is the
server's final "250" reply to the end of DATA plus one UPDATE commit, about a millisecond
on SQLite), the row's lease runs out and that one message is sent again: at most one
duplicate of that one message, never a lost one and never a second copy of any other. A
kill anywhere else (before DATA ends, between messages, while idle) sends nothing twice
(tests/integration/test_reliability.py kills senders mid-pass). Both copies carry the same
`Message-ID` (derived from the row's dedupe key), which lets mail clients and servers that
deduplicate show it once. The opposite choice (mark sent before sending) would lose mail on a crash.

Without `smtp_host` nothing is sent and rows wait in the outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import smtplib
import ssl
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlmodel import col, or_, select, update

from backend.context import Context
from backend.platform.settings import Settings
from models import EmailOutbox, Notification, id_of, session_scope, utcnow

log = logging.getLogger("supervisor.mailer")
LEASE = timedelta(seconds=120)  # longer than one SMTP conversation may take
SMTP_TIMEOUT = 30.0
BATCH = 50


class PermanentMailError(Exception):
    """The server refused the message for good (e.g. unknown recipient): do not retry."""


def configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def sender_address(settings: Settings) -> str:
    return settings.smtp_from or f"noreply@{settings.domain}"


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def message_id(settings: Settings, row: EmailOutbox) -> str:
    key = row.dedupe_key or f"outbox-{row.id}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    domain = settings.domain if "." in settings.domain else "stcloud.localhost"
    return f"<{digest}.{row.id}@{domain}>"


def build_message(settings: Settings, row: EmailOutbox) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender_address(settings)
    msg["To"] = row.to_addr
    msg["Subject"] = row.subject
    msg["Message-ID"] = message_id(settings, row)
    msg["Date"] = format_datetime(row.created_at)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(row.body_text)
    if row.body_html:
        msg.add_alternative(row.body_html, subtype="html")
    return msg


def deliver(settings: Settings, msg: EmailMessage) -> None:
    """One SMTP conversation (blocking; run in a thread)."""
    mode = settings.smtp_tls.lower()
    if mode not in ("starttls", "ssl", "none"):
        raise PermanentMailError(f"Setting smtp_tls must be starttls, ssl or none, not "
                                 f"{settings.smtp_tls!r}.")
    port = settings.smtp_port or {"starttls": 587, "ssl": 465, "none": 25}[mode]
    context = ssl.create_default_context()
    if mode == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, port, timeout=SMTP_TIMEOUT,
                                                context=context)
    else:
        client = smtplib.SMTP(settings.smtp_host, port, timeout=SMTP_TIMEOUT)
    try:
        client.ehlo()
        if mode == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if settings.smtp_user:
            client.login(settings.smtp_user, settings.smtp_password)
        try:
            client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentMailError(f"The server refused the recipient: {exc.recipients}") \
                from None
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def claim(ctx: Context, now: datetime, limit: int = BATCH) -> list[EmailOutbox]:
    """Mark due rows `sending` under a lease (committed before any send) and return them."""
    claimed = []
    with session_scope(ctx.engine) as s:
        due = s.exec(select(EmailOutbox).where(or_(
            (col(EmailOutbox.status) == "pending") & or_(
                col(EmailOutbox.next_attempt_at).is_(None),
                col(EmailOutbox.next_attempt_at) <= now),
            (col(EmailOutbox.status) == "sending") & (col(EmailOutbox.lease_until) < now),
        )).order_by(col(EmailOutbox.id)).limit(limit)).all()
        for row in due:
            s.expunge(row)  # a plain copy from here on; the UPDATE below is the claim
            result = s.exec(update(EmailOutbox).where(
                col(EmailOutbox.id) == row.id, col(EmailOutbox.status) == row.status,
                col(EmailOutbox.attempts) == row.attempts).values(
                status="sending", lease_until=now + LEASE, attempts=row.attempts + 1)
                .execution_options(synchronize_session=False))
            if result.rowcount == 1:
                row.status, row.attempts = "sending", row.attempts + 1
                claimed.append(row)
    return claimed


def _finish(ctx: Context, row_id: int, attempts: int, **values: object) -> None:
    """Record a send attempt's outcome. A message that failed for good no longer counts as
    emailed in the recipient's dashboard notice about it (same dedupe key)."""
    with session_scope(ctx.engine) as s:
        done = s.exec(update(EmailOutbox).where(
            col(EmailOutbox.id) == row_id, col(EmailOutbox.status) == "sending",
            col(EmailOutbox.attempts) == attempts).values(lease_until=None, **values))
        if values.get("status") == "failed" and done.rowcount:
            key = s.exec(select(EmailOutbox.dedupe_key).where(EmailOutbox.id == row_id)).one()
            if key:
                s.exec(update(Notification).where(
                    col(Notification.dedupe_key) == key).values(emailed=False))


async def send_pending(ctx: Context, now: datetime | None = None) -> int:
    """One sender pass; returns how many messages were sent."""
    settings = ctx.settings
    if not configured(settings):
        return 0
    now = now or utcnow()
    sent = 0
    for _ in range(BATCH):
        # One row at a time: a sender killed mid-pass leaves at most one row `sending`
        # (the one whose fate is unknown), not a batch held back until its lease runs out.
        claimed = await asyncio.to_thread(claim, ctx, now, 1)
        if not claimed:
            break
        row = claimed[0]
        try:
            await asyncio.to_thread(deliver, settings, build_message(settings, row))
        except PermanentMailError as exc:
            log.warning("email id=%s kind=%s failed for good: %s", row.id, row.kind, exc)
            await asyncio.to_thread(_finish, ctx, id_of(row), row.attempts, status="failed",
                                    last_error=str(exc)[:2000])
        except (smtplib.SMTPException, OSError) as exc:
            final = row.attempts >= settings.email_max_attempts
            log.warning("email id=%s kind=%s attempt=%s failed%s: %s", row.id, row.kind,
                        row.attempts, " for good" if final else "; will retry", exc)
            await asyncio.to_thread(
                _finish, ctx, id_of(row), row.attempts, status="failed" if final else "pending",
                last_error=str(exc)[:2000], next_attempt_at=now + retry_delay(row.attempts))
        else:
            sent += 1
            log.info("email id=%s kind=%s app=%s sent", row.id, row.kind, row.app_id)
            await asyncio.to_thread(_finish, ctx, id_of(row), row.attempts, status="sent",
                                    sent_at=utcnow(), last_error="")
    return sent
