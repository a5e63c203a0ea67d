"""Our pages whose content depends on who looks: sleeping, over its limits, failed (build
or crash), no access, and sign-in problems. Same template as `pages.py`.

- Sleeping: anyone may press "Yes, get this app back up!" (a POST to `/__stcloud/wake`
  with the CSRF token in the form; the proxy then shows the oven until the app serves).
- Over its resource limits: developers (push access) see what happened, the memory
  limit and the highest reading before the stop, a Reboot button and a link to the logs;
  everyone else sees an explanation and "Notify the developer" (one email per incident).
- Build failed / crashed: developers see the reason, the phase that failed with the
  explainer's cause and fix and the log lines that show it (secrets masked, no host paths:
  `backend.apps.failure_reports`), and a link to the full log; others a short message (a log may
  hold things viewers should not read).
- No access to a private app: who to ask, and "Sign in as someone else".

Forms carry `csrf`, the same value as the `stcloud_csrf` cookie the response sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from aiohttp import web

from backend.apps import failure_reports
from backend.platform.notifications import Notified
from backend.platform.settings import Settings
from supervisor.proxy.pages import dashboard_link as _dashboard_link
from supervisor.proxy.pages import page_response as _response
from supervisor.proxy.pages import render
from supervisor.proxy.pages import status_box as _status_box
from supervisor.routes import Route


@dataclass(frozen=True)
class PageViewer:
    """Who looks at a page, as far as the page cares."""

    signed_in: bool = False
    username: str = ""
    developer: bool = False  # developer or admin of the app's workspace
    csrf: str = ""  # the form token ("" means no forms)
    cookies: tuple[str, ...] = ()  # Set-Cookie values to send with the page


@dataclass(frozen=True)
class AppFacts:
    """What the developer versions show, read from the database and the logs."""

    app_id: int
    workspace: str = ""
    memory_limit_mb: int = 0
    memory_used_mb: int = 0  # its highest memory reading before it was stopped (0: none)
    app_log_tail: str = ""
    build_log_tail: str = ""


def form(action: str, label: str, csrf: str, *, secondary: bool = False,
         fields: dict[str, str] | None = None) -> str:
    hidden = "".join(f'<input type="hidden" name="{escape(k, quote=True)}" '
                     f'value="{escape(v, quote=True)}">' for k, v in (fields or {}).items())
    kind = "button secondary" if secondary else "button"
    return (f'<form method="post" action="/__stcloud/{action}">'
            f'<input type="hidden" name="csrf" value="{escape(csrf, quote=True)}">{hidden}'
            f'<button type="submit" class="{kind}">{escape(label)}</button></form>')


def _app_link(settings: Settings, app_id: int, text: str = "the app's logs") -> str:
    url = f"{settings.public_url()}/logs?app={app_id}"
    return f'<a href="{escape(url, quote=True)}">{escape(text)}</a>'


def _pre(text: str) -> str:
    return f"<pre>{escape(text)}</pre>" if text.strip() else ""


def sleeping_page(route: Route, settings: Settings, viewer: PageViewer) -> web.Response:
    body = (
        "<p>Apps without visitors for a while are put to sleep to save resources. "
        "Anyone can wake it up; it is back in a few seconds.</p>\n"
        f"{form('wake', 'Yes, get this app back up!', viewer.csrf)}"
    )
    heading = "Zzzz… This app has gone to sleep due to inactivity"
    html = render(heading, heading, body, mark="😴", poll_keep=[route.state], poll_ms=5000)
    return _response(html, 503, retry_after=30, cookies=viewer.cookies)


def over_limit_page(route: Route, settings: Settings, viewer: PageViewer,
                    facts: AppFacts) -> web.Response:
    heading = "Argh. This app has gone over its resource limits"
    if viewer.developer:
        limit = f"{facts.memory_limit_mb} MiB" if facts.memory_limit_mb else "its limit"
        used = (f" Its highest memory reading before that was <strong>"
                f"{facts.memory_used_mb} MiB</strong> of that limit (readings are taken "
                "every so often; it grew past the limit after)."
                if facts.memory_used_mb else "")
        body = (
            f"<p>Your app used more memory than its limit of <strong>{escape(limit)}"
            f"</strong>, so it was stopped.{used} Visitors see a page saying so until it "
            "runs again.</p>\n"
            f"{_status_box(route.state, route.reason)}\n"
            "<p>To keep it from happening again, use less memory: cache data with "
            "<code>st.cache_data</code> or <code>st.cache_resource</code>, load less at "
            "once, and free large objects. Then reboot it.</p>\n"
            f"{form('reboot', 'Reboot app', viewer.csrf)}\n"
            f"<p>Read {_app_link(settings, route.app_id)} on the dashboard.</p>\n"
            f"{_pre(facts.app_log_tail)}"
        )
    else:
        body = (
            "<p>This app used more memory than it is allowed, so it was stopped. Its "
            "developers can reduce its memory use and reboot it.</p>\n"
            "<p>You can let them know that you ran into this:</p>\n"
            f"{form('notify', 'Notify the developer', viewer.csrf)}"
        )
    html = render(heading, heading, body, mark="🤯", poll_keep=[route.state], poll_ms=5000)
    return _response(html, 503, retry_after=30, cookies=viewer.cookies)


def failure_page(route: Route, settings: Settings, viewer: PageViewer,
                 facts: AppFacts) -> web.Response:
    """build_failed or crashed."""
    build = route.state == "build_failed"
    heading = "This app failed to build" if build else "This app has crashed"
    mark = "🛠️" if build else "💥"
    if viewer.developer:
        public = settings.public_url(route.subdomain)
        report = failure_reports.explain_build_log(
            settings, route.app_id, facts.build_log_tail, public) if build else \
            failure_reports.explain_app_log(settings, route.app_id, facts.app_log_tail, public)
        found = report.explanation
        todo = ("Push the fix; the app rebuilds on its own." if build else
                "Push the fix, and reboot the app.")
        body = (
            f"{_status_box(route.state, route.reason)}\n"
            f"<p><strong>What failed ({escape(report.phase)}):</strong> "
            f"{escape(found.summary)}</p>\n"
            f"<p><strong>What to do:</strong> {escape(found.fix)} {escape(todo)}</p>\n"
            + ("" if build else form("reboot", "Reboot app", viewer.csrf)) +
            f"\n{_pre(chr(10).join(found.lines))}"
            f"<p>The full {'build' if build else 'app'} log is on "
            f"{_app_link(settings, route.app_id, 'the dashboard')}.</p>"
        )
    else:
        body = ("<p>The app is not available right now. Its developers see why in their "
                "dashboard and can fix it.</p>\n<p>Try again later.</p>")
    html = render(heading, heading, body, mark=mark, poll_keep=[route.state], poll_ms=5000)
    return _response(html, 503, retry_after=30, cookies=viewer.cookies)


def forbidden_page(settings: Settings, host: str, viewer: PageViewer,
                   workspace: str) -> web.Response:
    ask = (f"the developers of the workspace <strong>{escape(workspace)}</strong>"
           if workspace else "the app's developers")
    body = (
        f"<p>You are signed in as <strong>{escape(viewer.username)}</strong>. "
        f"{escape(host)} is a private app: ask {ask} to invite the email address of your "
        "account as a viewer, then reload this page.</p>\n"
        + form("logout", "Sign in as someone else", viewer.csrf, secondary=True,
               fields={"again": "1"}) +
        f"\n<p>Or go back to {_dashboard_link(settings)}.</p>"
    )
    html = render("No access", "You don't have access to this app", body, mark="🔒")
    return _response(html, 403, cookies=viewer.cookies)


def notified_page(route: Route, settings: Settings, told: Notified | None) -> web.Response:
    """After "Notify the developer": says what was really done. `told` is None when this
    visitor had already asked too often (nothing was done this time)."""
    body = f"<p>{escape(notified_text(told))}</p>\n<p><a href=\"/\">Back to the app</a></p>"
    heading = "Developers notified" if told is None or told.in_dashboard else \
        "Nobody to notify"
    html = render(heading, heading, body, mark="📨")
    return _response(html, 200)


def notified_text(told: Notified | None) -> str:
    """The sentence of the notified page for what `notifications.notify` did."""
    if told is None:
        return "You have already let the app's developers know; thanks."
    if not told.in_dashboard:
        return ("Nobody could be notified: this app's workspace has no developers. Try "
                "again later.")
    how = "in their dashboard and by email" if told.by_email else "in their dashboard"
    if told.new_notices or told.new_emails:
        return f"Thanks: the developers have been notified {how}."
    return (f"The developers have already been notified about this {how}; thanks for "
            "letting them know.")


def problem_page(settings: Settings, heading: str, message: str, *,
                 retry_url: str = "", status: int = 400) -> web.Response:
    """A sign-in link that expired, a form sent twice, a request we refuse."""
    retry = (f'<p><a href="{escape(retry_url, quote=True)}">Try again</a></p>'
             if retry_url else "")
    body = f"<p>{escape(message)}</p>\n{retry}"
    html = render(heading, heading, body, mark="⚠️")
    return _response(html, status)
