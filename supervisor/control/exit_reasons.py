"""What the lifecycle writes when an app ends: why it stopped (over its memory limit, an
exit before or after it answered, with the end of its current run's log as its deployer may
see it), and which rows go with a deleted app."""

from __future__ import annotations

from sqlmodel import Session, delete

from backend.apps import failure_reports, failures
from backend.context import Context
from models import (
    AppGitCredential,
    AppSecret,
    AppSecretValue,
    AppViewer,
    Favorite,
    table_of,
)
from models.oidc import OidcClient
from supervisor.runtimes.base import Status

# The rows keyed by app id that go with the app (events, builds and usage stay).
APP_ROWS = (Favorite, AppViewer, AppSecret, AppSecretValue, AppGitCredential,
            OidcClient)  # the last: the app's st.login() client


def oom_reason(limit_mb: int) -> str:
    return (f"The app used more than its memory limit of {limit_mb} MiB and was stopped. "
            "Reboot it from the dashboard; if it happens again, reduce its memory use.")


def run_log_lines(ctx: Context, app_id: int, public_url: str, lines: int = 15) -> str:
    """The last lines the app's current run logged (never an earlier run's), as its
    deployer may see them: no colours, the app's secret values masked, no host paths,
    the public URL for Streamlit's internal one (`backend.apps.failure_reports.readable`)."""
    return failure_reports.run_lines(ctx, app_id, public_url, lines)


def exit_reason(ctx: Context, app_id: int, public_url: str, status: Status,
                start: bool) -> str:
    """Why the app ended: `start` while it was starting (before it answered)."""
    code = "" if status.exit_code is None else f" (exit code {status.exit_code})"
    when = "before it answered" if start else "unexpectedly"
    tail = run_log_lines(ctx, app_id, public_url)
    known = failures.known_app_failure(tail)
    if known is None and start and status.exit_code is None:  # wait_healthy timed out
        known = failures.explain("health", tail, timeout_s=ctx.settings.health_timeout)
        head = known.summary.rstrip(".") + ", and was stopped."
        return (f"{head} {known.fix} Last lines of its log:\n{tail}" if tail
                else f"{head} {known.fix}")
    why = f" {known.summary} {known.fix}" if known else ""
    return (f"The app stopped {when}{code}.{why} Last lines of its log:\n{tail}"
            if tail else f"The app stopped {when}{code}.{why}")


def purge_app_rows(s: Session, app_id: int) -> None:
    """Delete the rows of `APP_ROWS` that belong to `app_id`, in the session's transaction."""
    for model in APP_ROWS:
        table = table_of(model)
        s.exec(delete(table).where(table.c.app_id == app_id))
