"""Email notifications to an app's developers, through an outbox.

`queue()` adds one `EmailOutbox` row per recipient in the caller's session, i.e. in the same
transaction as the AppEvent that causes the mail: either both are committed or neither, so a
crash between "the app went over its limit" and "tell the developers" can neither lose the
mail nor send it twice. Each row's `dedupe_key` names the incident and the recipient
(`over_limit:<app>:<event id>:u<user id>`); the key is unique, so queueing the same incident
again is a no-op. The supervisor's sender (`supervisor/mailer.py`) delivers pending rows.

Recipients are the developers and admins of the app's workspace who have an email address.
Without SMTP settings rows stay `pending`; admins see them with `list_outbox()`. Every
developer and admin, with an address or without, also gets the notice in their dashboard
inbox (`backend/platform/inbox.py`), in the same transaction.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from backend.analytics import usage
from backend.context import Context
from backend.errors import BackendError, PermissionDenied
from backend.platform import inbox
from backend.platform.settings import Settings
from models import App, AppEvent, EmailOutbox, Membership, Notification, User, id_of, session_scope

OVER_LIMIT_SUBJECT = "Your Streamlit app has gone over its resource limits 🤯"
KINDS = ("over_limit", "crashed", "deploy_failed", "sleep_warning", "memory_warning")


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class OutboxView:
    id: int
    app_id: int | None
    kind: str
    to_addr: str
    subject: str
    status: str
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None


def recipients(session: Session, workspace_id: int) -> list[User]:
    """Developers and admins of the workspace with an email, one per address."""
    rows = session.exec(
        select(User).join(Membership, col(Membership.user_id) == User.id)
        .where(Membership.workspace_id == workspace_id,
               col(Membership.role).in_(("developer", "admin")),
               User.email != "")
        .order_by(col(User.id))).all()
    seen: set[str] = set()
    out = []
    for user in rows:
        key = user.email.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(user)
    return out


@dataclass(frozen=True)
class Notified:
    """What telling the developers about one incident did (this time or before)."""

    new_emails: int  # outbox rows queued by this call
    new_notices: int  # inbox notices added by this call
    in_dashboard: int  # users whose inbox holds this incident's notice
    by_email: int  # users an email about this incident is queued for (mail can be sent)


def team(session: Session, workspace_id: int) -> list[User]:
    """Developers and admins of the workspace, with or without an email address."""
    return list(session.exec(
        select(User).join(Membership, col(Membership.user_id) == User.id)
        .where(Membership.workspace_id == workspace_id,
               col(Membership.role).in_(("developer", "admin")))
        .order_by(col(User.id))).all())


def notify(session: Session, settings: Settings, app: App, kind: str, incident: str,
           **details: str) -> Notified:
    """Tell the app's developers about one incident: a notice in each one's dashboard inbox
    and, for those with an address, an email in the outbox; once per incident and user."""
    if kind == "over_limit" and "used_mb" not in details:
        details = {**details, **over_limit_figures(session, app)}
    mail = render(settings, app, kind, **details)
    incident_key = f"{kind}:{app.id}:{incident}"
    mailed = {user.id for user in recipients(session, app.workspace_id)}
    new_emails = new_notices = 0
    for user in team(session, app.workspace_id):
        key = f"{incident_key}:u{user.id}"[:255]
        if user.id in mailed and session.exec(
                select(EmailOutbox.id).where(EmailOutbox.dedupe_key == key)).first() is None:
            session.add(EmailOutbox(app_id=app.id, kind=kind, to_addr=user.email.strip(),
                                    subject=mail.subject, body_text=mail.text,
                                    body_html=mail.html, dedupe_key=key))
            new_emails += 1
        if inbox.add_notice(session, user, app, kind, incident_key, mail.subject,
                            mail.text.removeprefix("Hi,\n\n"),
                            emailed=user.id in mailed and bool(settings.smtp_host)):
            new_notices += 1
    session.flush()
    prefix = f"{incident_key}:u"[:255]
    in_dashboard = session.exec(select(func.count()).select_from(Notification).where(
        col(Notification.dedupe_key).startswith(prefix, autoescape=True))).one()
    emailed = session.exec(select(func.count()).select_from(EmailOutbox).where(
        col(EmailOutbox.dedupe_key).startswith(prefix, autoescape=True),
        EmailOutbox.status != "failed")).one()
    return Notified(new_emails=new_emails, new_notices=new_notices,
                    in_dashboard=int(in_dashboard),
                    by_email=int(emailed) if settings.smtp_host else 0)


def queue(session: Session, settings: Settings, app: App, kind: str, incident: str,
          **details: str) -> int:
    """`notify()`, returning how many outbox rows are new."""
    return notify(session, settings, app, kind, incident, **details).new_emails


def list_outbox(ctx: Context, admin_user: User, limit: int = 200) -> list[OutboxView]:
    """The newest outbox rows, for site admins (what was sent, what waits for SMTP)."""
    if not admin_user.is_admin:
        raise PermissionDenied("Only site admins can see the email outbox.")
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(EmailOutbox).order_by(col(EmailOutbox.id).desc())
                      .limit(limit)).all()
        return [OutboxView(id=id_of(r), app_id=r.app_id, kind=r.kind, to_addr=r.to_addr,
                           subject=r.subject, status=r.status, attempts=r.attempts,
                           last_error=r.last_error, created_at=r.created_at,
                           sent_at=r.sent_at) for r in rows]


# Templates --------------------------------------------------------------------------
def render(settings: Settings, app: App, kind: str, **d: str) -> Mail:
    """Subject, plain text and HTML of one mail; every mail links the app and dashboard."""
    url = settings.public_url(app.subdomain)
    dashboard = settings.public_url()
    name = app.subdomain
    if kind == "over_limit":
        subject = OVER_LIMIT_SUBJECT
        paras = [f"Your app {name} ({url}) used more than its memory limit of "
                 f"{d.get('limit_mb', '?')} MiB, so it was stopped. Visitors now see a page "
                 "saying that it has gone over its resource limits." + _used(d),
                 "To bring it back, reduce its memory use (cache data with st.cache_data or "
                 "st.cache_resource, load less data at once, free large objects), push the "
                 "fix, and reboot the app from your dashboard."]
    elif kind == "memory_warning":
        subject = f"Your Streamlit app {name} is close to its memory limit"
        paras = [f"Your app {name} ({url}) has used more than {d.get('percent', '80')} % of "
                 f"its memory limit for {d.get('minutes', '?')} minutes: "
                 f"{d.get('used_mb', '?')} MiB of {d.get('limit_mb', '?')} MiB at its "
                 "highest. If it goes over the limit it is stopped, and visitors see a page "
                 "saying that it has gone over its resource limits.",
                 "To keep it running, reduce its memory use (cache data with st.cache_data "
                 "or st.cache_resource, load less data at once, free large objects) and "
                 "push the fix. Its memory over the last hours is on the app's page in "
                 "your dashboard."]
    elif kind == "crashed":
        subject = f"Your Streamlit app {name} has crashed"
        paras = [f"Your app {name} ({url}) stopped unexpectedly several times in a row, so "
                 "it is no longer restarted automatically.",
                 "The last lines of its log are below. Fix the cause, push it, and reboot "
                 "the app from your dashboard."]
    elif kind == "deploy_failed":
        subject = f"Your Streamlit app {name} could not be updated"
        paras = [f"The new commit {d.get('commit', '')[:12]} of {app.repo_url} (branch "
                 f"{app.branch}) could not be deployed. The previous version "
                 f"({d.get('serving', '')[:12]}) keeps serving at {url}.",
                 "The error is below; the full build log is in the app's logs. Push a fix "
                 "to try again."]
    elif kind == "sleep_warning":
        subject = f"Your Streamlit app {name} will go to sleep soon"
        paras = [f"Nobody has viewed your app {name} ({url}) for {d.get('idle_days', '?')} "
                 f"days. Its sleep policy is {d.get('policy') or 'the server default'}, so "
                 f"it will sleep around {d.get('sleep_at', 'soon')}.",
                 "To keep it awake, visit the app, or push a commit to its branch "
                 f"({app.branch}); an empty one works: git commit --allow-empty -m "
                 "\"Keep awake\" && git push.",
                 "A sleeping app wakes up when someone presses \"Yes, get this app back "
                 "up!\" on its page, or from the dashboard."]
    else:
        raise ValueError(f"unknown email kind {kind!r}")
    block = d.get("details", "").strip()
    text = "Hi,\n\n" + "\n\n".join(paras) + "\n\n"
    if block:
        text += block + "\n\n"
    text += f"Open the app: {url}\nYour dashboard: {dashboard}\n"
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paras)
    if block:
        body += f"<pre>{html.escape(block)}</pre>"
    body += (f'<p><a href="{html.escape(url)}">Open the app</a> · '
             f'<a href="{html.escape(dashboard)}">Your dashboard</a></p>')
    return Mail(subject=subject, text=text,
                html=f"<html><body><p>Hi,</p>{body}</body></html>")


def over_limit_figures(session: Session, app: App) -> dict[str, str]:
    """`used_mb`: the highest memory reading before the app was stopped ({} without
    samples), for the over-limit email."""
    found = usage.peak_before_stop(session, id_of(app))
    return {} if found is None else {"used_mb": f"{found[0] / (1 << 20):.0f}",
                                     "used_minutes": str(usage.PEAK_MINUTES)}


def _used(d: dict[str, str]) -> str:
    if not d.get("used_mb"):
        return ""
    return (f" Its highest memory reading in the {d.get('used_minutes', '10')} minutes "
            f"before it was stopped was {d['used_mb']} MiB of that {d.get('limit_mb', '?')} "
            "MiB limit (readings are taken every so often; it grew past the limit after).")


class NoticeFailed(BackendError):
    """The developers could not be told just now (the database refused); try again later."""


def notify_over_limit(ctx: Context, app_id: int) -> Notified | None:
    """Tell the app's developers about its current over-limit incident (the AppEvent that
    put it over its limit): a dashboard notice each and, where possible, an email; the
    incident's dedupe key makes it once only. Returns what was done, now or before; None
    when the app is not over its limits (any more). Raises NoticeFailed when the database
    fails."""
    try:
        with session_scope(ctx.engine) as s:
            app = s.get(App, app_id)
            if app is None or app.state != "over_limit":
                return None
            event = s.exec(select(AppEvent).where(AppEvent.app_id == app_id,
                                                  AppEvent.to_state == "over_limit")
                           .order_by(col(AppEvent.id).desc())).first()
            if event is None:
                return None
            limit = app.memory_limit_mb or ctx.settings.memory_limit_mb
            return notify(s, ctx.settings, app, "over_limit", str(event.id),
                          limit_mb=str(limit))
    except SQLAlchemyError as exc:
        raise NoticeFailed(f"The over-limit notice for app {app_id} failed: "
                           f"{type(exc).__name__}.") from exc
