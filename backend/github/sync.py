"""The periodic GitHub refresh, for the supervisor's scheduler (blocking; run it in a thread):

    await asyncio.to_thread(github_sync.refresh_all, ctx, utcnow())

every few minutes. For each connected account whose last refresh is older than
`github_refresh_minutes` (and that is not backing off from a rate limit) it refreshes the
user's workspaces and roles (`backend.github.accounts.refresh_user`) and checks the apps the user
deployed from GitHub:

- repository renamed or transferred (GitHub answers 301; PyGithub follows it): the new
  full name is recorded and the app's repo URL follows it (webhooks and polling then use
  the new name); the app stays in its workspace;
- repository deleted, or the user lost access (404); a public repository made private;
  the deployer lost admin permission; the deployer's token revoked (401): the problem is
  kept on `AppGithub.last_error` and written once as an AppEvent (its state unchanged),
  and a note says when it is solved.

None of these stop a running app: it keeps serving its current version, and the deploy key
and webhook keep working without the user's token. Deleted apps whose deploy key or webhook
could not be removed yet are retried here (`github_deploy.cleanup`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from github import GithubException, UnknownObjectException
from github.Permissions import Permissions
from sqlmodel import col, select

from backend.context import Context
from backend.github import accounts as github
from backend.github.client import (
    GithubError,
    GithubRevoked,
    calling,
    connect,
    refresh_interval,
    revoked_message,
)
from backend.github.deploy import cleanup, note_app
from models import App, User, Workspace, id_of, session_scope, utcnow
from models.github import AppGithub, GithubAccount

log = logging.getLogger("backend.github.sync")


@dataclass
class RefreshReport:
    refreshed: list[str] = field(default_factory=list)  # logins refreshed
    skipped: dict[str, str] = field(default_factory=dict)  # login → why not
    problems: dict[str, str] = field(default_factory=dict)  # login → message
    apps_checked: int = 0
    cleanups_pending: int = 0


def refresh_all(ctx: Context, now: datetime | None = None) -> RefreshReport:
    """Refresh every connected account that is due (see the module docstring)."""
    now = now or utcnow()
    report = RefreshReport()
    with session_scope(ctx.engine) as s:
        pairs = s.exec(select(GithubAccount, User).join(
            User, col(User.id) == GithubAccount.user_id)).all()
    for account, user in pairs:
        login = account.login
        if account.status == "revoked":
            _flag_apps(ctx, account, now)
            report.skipped[login] = "token revoked"
            continue
        if account.rate_limited_until is not None and account.rate_limited_until > now:
            report.skipped[login] = f"rate limited until {account.rate_limited_until:%H:%M} UTC"
            continue
        report.cleanups_pending += _retry_cleanups(ctx, account.user_id, now)
        if account.refreshed_at is not None and \
                now - account.refreshed_at < refresh_interval(ctx):
            report.skipped[login] = "refreshed recently"
            continue
        try:
            github.refresh_user(ctx, user, force=True, now=now)
            report.apps_checked += check_apps(ctx, id_of(user), now)
            report.refreshed.append(login)
        except GithubRevoked as e:
            with session_scope(ctx.engine) as s:
                fresh = s.get(GithubAccount, account.id)
            if fresh is not None:
                _flag_apps(ctx, fresh, now)
            report.problems[login] = str(e)
        except GithubError as e:
            report.problems[login] = str(e)
        except Exception as e:  # one account never stops the others
            log.exception("GitHub refresh of @%s failed", login)
            report.problems[login] = f"Unexpected error: {e}"
    return report


def _retry_cleanups(ctx: Context, user_id: int, now: datetime) -> int:
    with session_scope(ctx.engine) as s:
        ids = s.exec(select(AppGithub.id).where(AppGithub.user_id == user_id,
                                                AppGithub.mode == "cleanup")).all()
    return sum(0 if cleanup(ctx, row_id, now) else 1 for row_id in ids if row_id is not None)


def _rows(ctx: Context, user_id: int) -> list[AppGithub]:
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(AppGithub).where(
            AppGithub.user_id == user_id, AppGithub.app_id != None,  # noqa: E711
            AppGithub.mode != "cleanup")).all())


def check_apps(ctx: Context, user_id: int, now: datetime | None = None) -> int:
    """Check the GitHub repositories of the apps `user_id` deployed; returns how many.
    Raises GithubError when the account cannot be used (rate limit, revoked, down)."""
    now = now or utcnow()
    rows = _rows(ctx, user_id)
    if not rows:
        return 0
    checked = 0
    with connect(ctx, user_id, now) as conn:
        for row in rows:
            problem, renamed = "", None
            try:
                with calling(ctx, conn):
                    repo = conn.gh.get_repo(row.repo_full_name)
                    if repo.full_name != row.repo_full_name:
                        renamed = (repo.id, repo.full_name, repo.ssh_url if row.private
                                   else repo.clone_url)
                    # None when GitHub's answer carried no permissions for the token
                    permissions: Permissions | None = repo.permissions
                    if repo.private and not row.private:
                        problem = (f"The GitHub repository {repo.full_name} is private now, "
                                   "so this server can no longer fetch it over https. The app "
                                   "keeps running its current version; delete it and deploy "
                                   "it again to get a deploy key.")
                    elif permissions is None or not permissions.admin:
                        problem = (f"@{conn.login}, who deployed this app, no longer has admin "
                                   f"permission on {repo.full_name}. The app keeps running and "
                                   "updating, but its deploy key and webhook cannot be "
                                   "managed; an admin of the repository should redeploy it.")
            except UnknownObjectException:
                problem = (f"The GitHub repository {row.repo_full_name} was deleted, or "
                           f"@{conn.login} lost access to it. The app keeps running its "
                           "current version but no longer gets updates. Restore the "
                           "repository or the access, or delete the app.")
            except GithubException as e:  # a passing GitHub error: check again next time
                log.warning("GitHub check of %s failed: %s", row.repo_full_name, e.status)
                continue
            _record(ctx, id_of(row), problem, now, renamed)
            checked += 1
    return checked


def _flag_apps(ctx: Context, account: GithubAccount, now: datetime) -> None:
    problem = (f"{revoked_message(account.login)} This app was deployed by @{account.login}; "
               "it keeps running and updating (its deploy key and webhook do not need the "
               "token), but GitHub checks stop until the token is replaced.")
    for row in _rows(ctx, account.user_id):
        _record(ctx, id_of(row), problem, now)


def _record(ctx: Context, row_id: int, problem: str, now: datetime,
            renamed: tuple[int, str, str] | None = None) -> None:
    """Store what a check found; one AppEvent when the problem changes or a rename."""
    with session_scope(ctx.engine) as s:
        row = s.get(AppGithub, row_id)
        app = s.get(App, row.app_id) if row is not None and row.app_id else None
        if row is None or app is None:
            return
        if renamed is not None:
            repo_id, new_name, new_url = renamed
            old = row.repo_full_name
            row.repo_id, row.repo_full_name = repo_id, new_name
            app.repo_url, app.updated_at = new_url, utcnow()
            s.add(app)
            ws = s.get(Workspace, app.workspace_id)
            moved = old.split("/")[0].lower() != new_name.split("/")[0].lower()
            note_app(s, id_of(app), f"The GitHub repository {old} is now {new_name}; the app "
                     "follows it." + (f" It stays in the workspace {ws.name if ws else ''}."
                                      if moved else ""))
        if problem != row.last_error:
            note_app(s, id_of(app), problem or f"GitHub problem solved for {row.repo_full_name}.")
            row.last_error = problem
        row.checked_at = now
        s.add(row)
