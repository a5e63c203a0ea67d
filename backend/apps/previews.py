"""Preview apps: each open pull request of an app's repository (and each preview branch
pushed to any git host) runs as an app of its own at `<subdomain>-pr-<n>.<domain>`, so a
change can be tried before it is merged.

- The app's developers turn previews on (`set_config`); off by default.
- A preview is an `App` row like any other (the supervisor builds, runs, sleeps and deletes
  it as usual) in the app's workspace, **private** (members of the workspace and the app's
  invited viewers), with the app's main file, Python version and memory limit, asleep
  after `idle_minutes` without a viewer and woken by a visit.
- Its secrets: the app's own (`secrets_mode` "app", the default), none, or a TOML of their
  own for previews ("own"). Pull requests from forks get previews only with `allow_forks`
  on, and then **no secrets** and no repository credential: their code is someone else's.
- Pushes to the pull request's branch update the preview (the webhook asks the supervisor
  to sync it); closing the pull request deletes it.
- Its repository credential is the app's (`credential_source`), for the same repository.

The webhook handlers (`supervisor/api/hooks.py`) call `open_preview` / `close_preview`
after the event's signature verified against the app's webhook secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session, col, select

from backend.accounts import sealing
from backend.apps import secrets as app_secrets
from backend.apps import state as appstate
from backend.apps.service import load_app_for
from backend.context import Context
from backend.errors import ValidationError
from backend.platform.supervisor_report import wake_supervisor
from backend.validation import validate_repo_url
from models import (
    App,
    AppEvent,
    AppPreview,
    AppPreviewConfig,
    AppSleepPolicy,
    User,
    id_of,
    session_scope,
    utcnow,
)

SECRETS_MODES = ("app", "none", "own")
MIN_IDLE_MINUTES, MAX_IDLE_MINUTES = 5.0, 7 * 24 * 60.0


@dataclass(frozen=True)
class PreviewConfigView:
    app_id: int
    enabled: bool
    idle_minutes: float
    secrets_mode: str
    has_own_secrets: bool
    allow_forks: bool = False


@dataclass(frozen=True)
class PreviewView:
    """One preview as the dashboard lists it under its app."""
    preview_app_id: int
    number: int  # 0: a preview branch
    branch: str
    title: str
    subdomain: str
    url: str
    state: str
    from_fork: bool


@dataclass(frozen=True)
class Opened:
    preview_app_id: int
    created: bool  # False: an existing preview, to be synced to the new head
    url: str


def preview_subdomain(parent: str, number: int, branch: str) -> str:
    """`<parent>-pr-<n>` for a pull request, `<parent>-br-<branch>` for a preview branch,
    the parent's part shortened to fit one DNS label (63)."""
    tail = f"-pr-{number}" if number else "-br-" + (
        re.sub(r"[^a-z0-9-]+", "-", branch.lower()).strip("-")[:30].strip("-") or "branch")
    return parent[:63 - len(tail)].rstrip("-") + tail


def _config_row(s: Session, app_id: int) -> AppPreviewConfig:
    return s.get(AppPreviewConfig, app_id) or AppPreviewConfig(app_id=app_id)


def _view_of(row: AppPreviewConfig) -> PreviewConfigView:
    return PreviewConfigView(row.app_id, row.enabled, row.idle_minutes, row.secrets_mode,
                             bool(row.secrets_ciphertext), row.allow_forks)


def get_config(ctx: Context, user: User, app_id: int) -> PreviewConfigView:
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "viewer", "see this app's previews")
        return _view_of(_config_row(s, app_id))


def set_config(ctx: Context, user: User, app_id: int, *, enabled: bool,
               idle_minutes: float | None = None, secrets_mode: str | None = None,
               own_secrets: str | None = None,
               allow_forks: bool | None = None) -> PreviewConfigView:
    """Turn previews on or off and say how they sleep and which secrets they get (the
    app's developers). ValidationError naming the field when a value is out of range."""
    if idle_minutes is not None and not MIN_IDLE_MINUTES <= idle_minutes <= MAX_IDLE_MINUTES:
        raise ValidationError("idle_minutes", f"A preview sleeps after {MIN_IDLE_MINUTES:g} "
                              f"to {MAX_IDLE_MINUTES:g} minutes without a viewer.")
    if secrets_mode is not None and secrets_mode not in SECRETS_MODES:
        raise ValidationError("secrets_mode", "Previews get the app's secrets (app), none "
                              "(none), or their own (own).")
    if own_secrets is not None and own_secrets.strip():
        app_secrets.parse_secrets(own_secrets)  # SecretsError with line and column
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "change this app's previews")
        if _parent_of(s, app_id) is not None:
            raise ValidationError("enabled", "This app is itself a preview; turn previews "
                                  "on for the app it previews.")
        row = _config_row(s, app_id)
        row.enabled = enabled
        row.idle_minutes = idle_minutes if idle_minutes is not None else row.idle_minutes
        row.secrets_mode = secrets_mode or row.secrets_mode
        row.allow_forks = row.allow_forks if allow_forks is None else allow_forks
        if own_secrets is not None:
            row.secrets_ciphertext = sealing.seal(ctx, own_secrets) if own_secrets.strip() \
                else ""
        row.updated_at, row.updated_by = utcnow(), user.username
        s.add(row)
        s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state,
                       reason=f"Previews turned {'on' if enabled else 'off'} by "
                              f"{user.username}"))
        return _view_of(row)


def _parent_of(s: Session, app_id: int) -> AppPreview | None:
    return s.exec(select(AppPreview).where(AppPreview.preview_app_id == app_id)).first()


def credential_source(ctx: Context, app_id: int) -> int:
    """The app whose repository credential `app_id` uses: a same-repository preview uses
    its parent's; every other app its own."""
    with session_scope(ctx.engine) as s:
        row = _parent_of(s, app_id)
        return row.parent_app_id if row is not None and not row.from_fork else app_id


def list_previews(ctx: Context, user: User, app_id: int) -> list[PreviewView]:
    """The app's live previews, newest first (whoever can see the app)."""
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "viewer", "see this app's previews")
        rows = s.exec(select(AppPreview).where(AppPreview.parent_app_id == app_id)
                      .order_by(col(AppPreview.id).desc())).all()
        views = []
        for row in rows:
            app = s.get(App, row.preview_app_id)
            if app is None or app.desired_state == "deleted":
                continue
            views.append(PreviewView(row.preview_app_id, row.number, row.branch, row.title,
                                     app.subdomain, ctx.settings.public_url(app.subdomain),
                                     app.state, row.from_fork))
        return views


def previews_enabled(ctx: Context, app_id: int) -> bool:
    with session_scope(ctx.engine) as s:
        row = s.get(AppPreviewConfig, app_id)
        return row is not None and row.enabled


def open_preview(ctx: Context, parent_app_id: int, *, number: int, branch: str,
                 head_sha: str = "", head_repo_url: str = "", from_fork: bool = False,
                 title: str = "") -> Opened | None:
    """Create the preview of pull request `number` (0: of preview branch `branch`), or
    find it to be synced; None when the app has previews off or is gone."""
    with session_scope(ctx.engine) as s:
        parent = s.get(App, parent_app_id)
        config = s.get(AppPreviewConfig, parent_app_id)
        if parent is None or parent.desired_state == "deleted" or config is None or \
                not config.enabled or (from_fork and not config.allow_forks):
            return None
        if head_repo_url:
            try:
                head_repo_url = validate_repo_url(head_repo_url, ctx.settings.allow_local_repos)
            except ValidationError:
                return None
        found = s.exec(select(AppPreview).where(
            AppPreview.parent_app_id == parent_app_id, AppPreview.number == number,
            AppPreview.branch == branch)).first()
        if found is not None:
            preview = s.get(App, found.preview_app_id)
            if preview is not None and preview.desired_state != "deleted":
                found.head_sha, found.updated_at = head_sha, utcnow()
                found.title = title[:255] or found.title
                found.reported = ""
                s.add(found)
                return Opened(found.preview_app_id, False,
                              ctx.settings.public_url(preview.subdomain))
            s.delete(found)
            s.flush()
        sub = _free_subdomain(s, preview_subdomain(parent.subdomain, number, branch))
        preview = App(workspace_id=parent.workspace_id, owner_id=parent.owner_id,
                      subdomain=sub, repo_url=head_repo_url or parent.repo_url, branch=branch,
                      main_file=parent.main_file, python_version=parent.python_version,
                      visibility="private", memory_limit_mb=parent.memory_limit_mb,
                      state="queued", state_reason="Preview requested")
        s.add(preview)
        s.flush()
        what = f"pull request #{number}" if number else f"branch {branch}"
        s.add(AppEvent(app_id=id_of(preview), from_state="", to_state="queued",
                       reason=f"Preview of {parent.subdomain} for {what}"))
        s.add(AppPreview(parent_app_id=parent_app_id, preview_app_id=id_of(preview),
                         number=number, branch=branch, head_sha=head_sha,
                         head_repo_url=head_repo_url, from_fork=from_fork, title=title[:255]))
        s.add(AppSleepPolicy(app_id=id_of(preview), kind="idle",
                             idle_minutes=config.idle_minutes, wake_on_visit=True,
                             updated_by="previews"))
        preview_id, mode, own = id_of(preview), config.secrets_mode, config.secrets_ciphertext
    secrets = "" if from_fork or mode == "none" else (
        sealing.unseal(ctx, own, "This app's preview secrets") if mode == "own"
        else app_secrets.secrets_text_of(ctx, parent_app_id))
    if secrets.strip():
        app_secrets.set_secrets_for(ctx, preview_id, secrets, "Secrets of the preview set "
                                    f"from {'its own' if mode == 'own' else 'the app'}")
    wake_supervisor(ctx)
    return Opened(preview_id, True, ctx.settings.public_url(sub))


def _free_subdomain(s: Session, wanted: str) -> str:
    candidate, n = wanted, 2
    while s.exec(select(App.id).where(App.subdomain == candidate)).first() is not None:
        candidate, n = f"{wanted[:60]}-{n}", n + 1
    return candidate


def close_preview(ctx: Context, parent_app_id: int, *, number: int, branch: str) -> int | None:
    """Delete the preview of pull request `number` (or preview branch `branch`); its app
    id, None when there was none."""
    with session_scope(ctx.engine) as s:
        q = select(AppPreview).where(AppPreview.parent_app_id == parent_app_id,
                                     AppPreview.number == number)
        if not number:
            q = q.where(AppPreview.branch == branch)
        row = s.exec(q).first()
        if row is None:
            return None
        preview_id = row.preview_app_id
        s.delete(row)
        app = s.get(App, preview_id)
        if app is not None and app.desired_state != "deleted":
            app.desired_state = "deleted"
            what = f"pull request #{number}" if number else f"branch {branch}"
            appstate.transition(s, app, "deleting", f"The {what} was closed")
    wake_supervisor(ctx)
    return preview_id


def close_all(ctx: Context, parent_app_id: int) -> list[int]:
    """Delete every preview of a deleted app; their app ids."""
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(AppPreview).where(AppPreview.parent_app_id == parent_app_id)
                      ).all()
        keys = [(r.number, r.branch) for r in rows]
    closed = [close_preview(ctx, parent_app_id, number=n, branch=b) for n, b in keys]
    return [c for c in closed if c is not None]
