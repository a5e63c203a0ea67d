"""What a pull request on GitHub is told about its preview app (`backend.apps.previews`):
a comment with the preview's URL when the preview is made, and a commit status on the head
(`stcloud/preview`: pending while it builds, then success with the URL, or failure), posted
with the GitHub account of whoever deployed the app from GitHub. Apps deployed by URL
without the GitHub integration get no comment or status. Best effort: GitHub being away
never fails a preview; `report_states` posts what is still due."""

from __future__ import annotations

import logging

import requests
from github import GithubException
from sqlmodel import select

from backend.context import Context
from backend.github.client import GithubError, connect
from models import App, AppGithub, AppPreview, session_scope

log = logging.getLogger("backend.github")
CONTEXT = "stcloud/preview"
STATUS = {"running": ("success", "The preview is running"),
          "sleeping": ("success", "The preview is asleep; a visit wakes it"),
          "build_failed": ("failure", "The preview failed to build"),
          "crashed": ("failure", "The preview crashed")}


def _github_of(ctx: Context, parent_app_id: int) -> tuple[str, int] | None:
    """(repository full name, deployer's user id) of an app deployed from GitHub."""
    with session_scope(ctx.engine) as s:
        row = s.exec(select(AppGithub).where(AppGithub.app_id == parent_app_id)).first()
        return (row.repo_full_name, row.user_id) if row is not None else None


def _post(ctx: Context, parent_app_id: int, path: str, body: dict[str, str]) -> bool:
    found = _github_of(ctx, parent_app_id)
    if found is None:
        return False
    full_name, user_id = found
    try:
        with connect(ctx, user_id) as conn:
            conn.gh.requester.requestJsonAndCheck("POST", f"/repos/{full_name}/{path}",
                                                  input=body)
        return True
    except (GithubError, GithubException, requests.RequestException) as e:
        log.warning("app=%s preview report to GitHub failed: %s", parent_app_id,
                    type(e).__name__)
        return False


def status_body(state: str, url: str) -> dict[str, str]:
    github_state, description = STATUS.get(state, ("pending", "The preview is being built"))
    return {"state": github_state, "target_url": url, "description": description,
            "context": CONTEXT}


def report_opened(ctx: Context, parent_app_id: int, number: int, sha: str, url: str,
                  created: bool) -> None:
    """A pending status on the new head, and the URL as a comment on a new preview."""
    if sha:
        _post(ctx, parent_app_id, f"statuses/{sha}", status_body("queued", url))
    if created:
        _post(ctx, parent_app_id, f"issues/{number}/comments",
              {"body": f"Preview of this pull request: {url}\n\nIt is private to the app's "
                       "workspace, updates with each push, sleeps when nobody looks and is "
                       "deleted when the pull request closes."})


def report_states(ctx: Context) -> int:
    """Post the status of each preview whose state settled since it was last posted; the
    number posted (for the supervisor's schedule)."""
    with session_scope(ctx.engine) as s:
        due = []
        for row in s.exec(select(AppPreview).where(AppPreview.number > 0)).all():
            app = s.get(App, row.preview_app_id)
            if app is None or app.state not in STATUS or row.reported == app.state or \
                    not row.head_sha:
                continue
            due.append((row.id, row.parent_app_id, row.head_sha, app.state,
                        ctx.settings.public_url(app.subdomain)))
    posted = 0
    for row_id, parent_id, sha, state, url in due:
        if _post(ctx, parent_id, f"statuses/{sha}", status_body(state, url)):
            posted += 1
        with session_scope(ctx.engine) as s:  # also when not posted: no GitHub link
            saved = s.get(AppPreview, row_id)
            if saved is not None:
                saved.reported = state
                s.add(saved)
    return posted
