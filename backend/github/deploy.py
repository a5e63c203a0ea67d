"""Deploying from GitHub: the deploy form's pickers, the deploy, deploy keys and webhooks.

Pickers (cached per account for a minute, github_client.CACHE_SECONDS):
`list_admin_repos(ctx, user, query)` → repositories the user administers, filtered by a
substring; `list_branches(ctx, user, full_name)` → default branch first;
`list_python_files(ctx, user, full_name, branch)` → `.py` paths from the recursive git tree.

`deploy_from_github` follows Community Cloud's rules (seeds/003): the user must have
**admin** permission on the repository (deploying adds a deploy key and a webhook, which
only admins may do). A public repository is cloned over https. A private one gets a fresh
ed25519 key pair: the public half is added as a **read-only deploy key**
(`repo.create_key(title, key, read_only=True)`; GitHub emails the repository's admins about
it), the private half is stored encrypted and given to git by `supervisor/sources/git_auth.py`,
which clones the repository's ssh URL with it. The key exists before the app row does, so
the supervisor's first clone always finds it (`backend.github.deploy_keys`).

Then a push webhook is added (`<public_url>/api/v1/hooks/github`, JSON, the app's own
`App.webhook_secret`, which the webhook endpoint verifies). When that is not possible (no
hook scope, GitHub refuses, or GitHub could not reach a loopback public URL) the app is
left to polling (`git ls-remote`, setting git_poll_interval); `AppGithub.mode` and
`mode_reason` record which, for the dashboard. Nothing about the webhook can fail a deploy.

`on_app_deleted(ctx, app_id)` removes the webhook and the deploy key from GitHub. When
GitHub cannot be asked now (token revoked, rate limit, GitHub down) the row is kept as
`mode="cleanup"` and `backend.github.sync.refresh_all` retries; the app's events say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from github import GithubException, UnknownObjectException
from github.Repository import Repository
from sqlmodel import Session, select

from backend.apps import secrets as secret_box
from backend.apps import service as apps
from backend.apps.service import AppView
from backend.context import Context
from backend.errors import NotFound, PermissionDenied, ValidationError
from backend.github.accounts import apply_roles
from backend.github.client import (
    Conn,
    GithubError,
    cached,
    calling,
    connect,
    github_message,
    has_scope,
    is_loopback,
    user_repos,
)
from backend.github.deploy_keys import pin_host_keys
from backend.repositories.credentials import new_key_pair
from backend.validation import (
    repo_owner_and_name,
    validate_branch,
    validate_main_file,
    validate_subdomain,
)
from models import App, AppEvent, User, id_of, session_scope, utcnow
from models.github import AppGithub

FULL_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
HOOK_PATH = "/api/v1/hooks/github"


@dataclass(frozen=True)
class RepoChoice:
    full_name: str
    private: bool
    default_branch: str
    description: str


@dataclass(frozen=True)
class AppGithubView:
    """What the dashboard shows about an app's GitHub link."""

    repo_full_name: str
    private: bool
    mode: str  # webhook | polling
    mode_reason: str
    last_error: str  # "" when GitHub is fine
    has_deploy_key: bool


# Pickers --------------------------------------------------------------------------------------
def _check_full_name(full_name: str) -> str:
    name = full_name.strip().strip("/")
    if not FULL_NAME_RE.match(name):
        raise ValidationError("repo", f"'{full_name}' is not a GitHub repository name; use "
                              "owner/name.")
    return name


def _repo(conn: Conn, full_name: str) -> Repository:
    try:
        return conn.gh.get_repo(full_name)
    except UnknownObjectException:
        raise NotFound(f"The repository {full_name} does not exist on GitHub, or @{conn.login} "
                       "cannot see it (private repositories need the `repo` scope).") from None


def _branch_sha(repo: Repository, branch: str) -> str:
    try:
        return repo.get_branch(branch).commit.sha
    except UnknownObjectException:
        raise ValidationError("branch", f"The branch '{branch}' does not exist in "
                              f"{repo.full_name}.") from None


def list_admin_repos(ctx: Context, user: User, query: str = "",
                     limit: int = 100) -> list[RepoChoice]:
    """Repositories the user may deploy from (admin permission), matching `query`."""
    with connect(ctx, id_of(user)) as conn:
        repos = user_repos(ctx, conn)
    q = query.strip().lower()
    return [RepoChoice(r.full_name, r.private, r.default_branch, r.description)
            for r in repos if r.permission == "admin" and q in r.full_name.lower()][:limit]


def list_branches(ctx: Context, user: User, full_name: str) -> list[str]:
    """Branch names of the repository, its default branch first."""
    full_name = _check_full_name(full_name)
    with connect(ctx, id_of(user)) as conn:
        def fetch() -> list[str]:
            with calling(ctx, conn, unexpected=f"Listing the branches of {full_name} failed"):
                repo = _repo(conn, full_name)
                names = [b.name for b in repo.get_branches()]
                return sorted(names, key=lambda n: (n != repo.default_branch, n))
        return cached((conn.account.id, "branches", full_name.lower()), fetch)


def list_python_files(ctx: Context, user: User, full_name: str, branch: str) -> list[str]:
    """Paths of the `.py` files on the branch (top level first, streamlit_app.py first)."""
    full_name, branch = _check_full_name(full_name), validate_branch(branch)
    with connect(ctx, id_of(user)) as conn:
        def fetch() -> list[str]:
            with calling(ctx, conn, unexpected=f"Listing the files of {full_name} failed"):
                repo = _repo(conn, full_name)
                tree = repo.get_git_tree(_branch_sha(repo, branch), recursive=True)
                paths = [e.path for e in tree.tree if e.type == "blob" and
                         e.path.endswith(".py")]
            return sorted(paths, key=lambda p: (p.count("/"), p.rsplit("/", 1)[-1] !=
                                                "streamlit_app.py", p))
        return cached((conn.account.id, "files", full_name.lower(), branch), fetch)


# Deploy ---------------------------------------------------------------------------------------
def _require_admin(conn: Conn, repo: Repository) -> None:
    try:
        permission = repo.get_collaborator_permission(conn.login)
    except GithubException as e:
        if e.status not in (403, 404):
            raise
        permission = "none"
    if permission != "admin":
        raise PermissionDenied(
            f"You need admin permission on {repo.full_name} to deploy from it; GitHub says "
            f"@{conn.login} has {permission} permission. Deploying adds a read-only deploy key "
            "and a push webhook to the repository, which only its admins may do. Ask an admin "
            "to deploy it, or to make you an admin.")


def note_app(session: Session, app_id: int, reason: str) -> None:
    """An AppEvent that records something without changing the app's state."""
    app = session.get(App, app_id)
    state = app.state if app is not None else "deleted"
    session.add(AppEvent(app_id=app_id, from_state=state, to_state=state, reason=reason))


def deploy_from_github(ctx: Context, user: User, full_name: str, branch: str, main_file: str,
                       subdomain: str = "", python_version: str = "") -> AppView:
    """Deploy `branch` of the GitHub repository `full_name` (admins of it only)."""
    full_name, branch = _check_full_name(full_name), validate_branch(branch)
    main_file = validate_main_file(main_file)
    with connect(ctx, id_of(user)) as conn:
        with calling(ctx, conn, unexpected=f"Checking {full_name} on GitHub failed"):
            repo = _repo(conn, full_name)
            _require_admin(conn, repo)
            _branch_sha(repo, branch)
        clone_url = repo.ssh_url if repo.private else repo.clone_url
        sub = validate_subdomain(subdomain) if subdomain.strip() else \
            apps.suggest_free_subdomain(ctx, clone_url)
        if not apps.subdomain_available(ctx, sub):
            raise ValidationError("subdomain", f"The subdomain '{sub}' is taken; choose "
                                  "another.")
        row = AppGithub(pending_subdomain=sub, user_id=id_of(user), repo_id=repo.id,
                        repo_full_name=repo.full_name, private=repo.private)
        if repo.private:
            _add_deploy_key(ctx, conn, repo, row, sub)
            pin_host_keys(ctx, conn, clone_url)
        workspace = repo_owner_and_name(clone_url)[0]  # as deploy_app will name it
        with session_scope(ctx.engine) as s:
            s.add(row)  # before the app exists: its first clone finds the key
            apply_roles(s, user, {workspace: "admin"}, create={workspace}, only={workspace})
        try:
            view = apps.deploy_app(ctx, user, repo_url=clone_url, branch=branch,
                                   main_file=main_file, subdomain=sub,
                                   python_version=python_version)
        except BaseException:
            try:
                _remove_from_github(ctx, conn, row)
            except Exception:  # the deploy's own error matters more
                pass
            with session_scope(ctx.engine) as s:
                s.delete(s.get(AppGithub, row.id))
            raise
        mode, reason, hook_id = _add_webhook(ctx, conn, repo, view.id)
    with session_scope(ctx.engine) as s:
        saved = s.get(AppGithub, row.id)
        if saved is None:
            raise NotFound(f"The GitHub link of {repo.full_name} was removed while the app "
                           "was being deployed. Deploy it again.")
        saved.app_id, saved.pending_subdomain = view.id, ""
        saved.hook_id, saved.mode, saved.mode_reason = hook_id, mode, reason
        saved.checked_at = utcnow()
        s.add(saved)
        how = "by webhook" if mode == "webhook" else f"by polling: {reason}"
        key = (" Private repository: a read-only deploy key was added (GitHub emails the "
               "repository's admins about it)." if repo.private else "")
        note_app(s, view.id, f"Deployed from GitHub {repo.full_name} by @{conn.login}.{key} "
                          f"Pushes reach the app {how}")
    return view


def _add_deploy_key(ctx: Context, conn: Conn, repo: Repository, row: AppGithub,
                    sub: str) -> None:
    if not has_scope(conn.account, "repo"):
        raise PermissionDenied("Deploying a private repository needs the `repo` scope: we add "
                               "a read-only deploy key, and GitHub has no narrower scope for "
                               "that. Connect GitHub again and grant it.")
    domain = ctx.settings.domain
    private, public = new_key_pair(f"stcloud-{sub}@{domain}")
    title = f"Streamlit app {sub} on {domain} (read-only)"[:100]
    try:
        with calling(ctx, conn):
            key = repo.create_key(title, public, read_only=True)
    except GithubException as e:
        raise PermissionDenied(
            f"GitHub refused to add a deploy key to {repo.full_name} ({github_message(e)}). "
            "A classic token needs the `repo` scope; a fine-grained token needs the "
            "repository permission Administration: read and write.") from None
    row.deploy_key_id = key.id
    row.private_key_ciphertext = secret_box.encrypt(ctx, private)


def _add_webhook(ctx: Context, conn: Conn, repo: Repository,
                 app_id: int) -> tuple[str, str, int | None]:
    """(mode, reason, hook id): a push webhook for the app, or polling and why not."""
    url = ctx.settings.public_url() + HOOK_PATH
    if is_loopback(url) and not is_loopback(conn.account.base_url):
        return ("polling", f"GitHub cannot reach this server's public address "
                f"{ctx.settings.public_url()}, so no webhook was added.", None)
    if not has_scope(conn.account, "admin:repo_hook"):
        return ("polling", "The GitHub token lacks the admin:repo_hook scope, so no webhook "
                "was added.", None)
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None:
            raise NotFound(f"App {app_id} was deleted before its webhook could be added.")
        secret = app.webhook_secret
    config = {"url": url, "content_type": "json", "secret": secret,
              "insecure_ssl": "0"}
    try:
        with calling(ctx, conn):
            hook = repo.create_hook("web", config, events=["push", "pull_request"],
                                    active=True)
    except GithubException as e:
        return "polling", f"GitHub refused to add a webhook ({github_message(e)}).", None
    except GithubError as e:
        return "polling", f"No webhook was added: {e}", None
    return "webhook", "", hook.id


# Delete ---------------------------------------------------------------------------------------
def _remove_from_github(ctx: Context, conn: Conn, row: AppGithub) -> None:
    """Delete the row's webhook and deploy key on GitHub (already gone counts as done).
    Raises GithubError (try later) or GithubException/NotFound (cannot be done)."""
    if row.hook_id is None and row.deploy_key_id is None:
        return
    with calling(ctx, conn):
        repo = _repo(conn, row.repo_full_name)
        for kind, ident in (("hook", row.hook_id), ("key", row.deploy_key_id)):
            if ident is None:
                continue
            try:
                (repo.get_hook(ident) if kind == "hook" else repo.get_key(ident)).delete()
            except UnknownObjectException:
                pass


def cleanup(ctx: Context, row_id: int, now: datetime | None = None) -> bool:
    """Remove a deleted app's webhook and deploy key from GitHub; True when finished (done,
    or impossible and said so), False to retry later."""
    with session_scope(ctx.engine) as s:
        row = s.get(AppGithub, row_id)
    if row is None:
        return True
    what = " and ".join(n for n, v in (("webhook", row.hook_id),
                                       ("deploy key", row.deploy_key_id)) if v is not None)
    problem, done = "", True
    try:
        with connect(ctx, row.user_id, now) as conn:
            _remove_from_github(ctx, conn, row)
    except NotFound:
        problem = (f"The {what} of {row.repo_full_name} could not be removed from GitHub: the "
                   "repository was deleted or its deployer cannot see it any more. If it "
                   "still exists, remove them by hand: repository Settings → Deploy keys / "
                   "Webhooks.")
    except GithubException as e:
        problem = (f"Could not remove the {what} of {row.repo_full_name} from GitHub "
                   f"({github_message(e)}). Remove it by hand: repository Settings → Deploy "
                   "keys / Webhooks.")
    except GithubError as e:
        problem, done = (f"The {what} of {row.repo_full_name} will be removed from GitHub "
                         f"when GitHub can be asked again: {e}"), False
    with session_scope(ctx.engine) as s:
        saved = s.get(AppGithub, row_id)
        if saved is None:
            return True
        if problem and problem != saved.last_error and saved.app_id is not None:
            note_app(s, saved.app_id, problem)
        elif not problem and what and saved.app_id is not None:
            note_app(s, saved.app_id, f"Removed the {what} from GitHub {saved.repo_full_name}.")
        if done:
            s.delete(saved)
        else:
            saved.mode, saved.last_error, saved.private_key_ciphertext = "cleanup", problem, ""
            s.add(saved)
    return done


def on_app_deleted(ctx: Context, app_id: int) -> None:
    """For the supervisor when it deletes an app: remove its webhook and deploy key from
    GitHub (retried by refresh_all when GitHub cannot be asked now). Never raises for
    GitHub problems; blocking (run it in a thread)."""
    with session_scope(ctx.engine) as s:
        row = s.exec(select(AppGithub).where(AppGithub.app_id == app_id)).first()
        row_id = row.id if row is not None else None
    if row_id is not None:
        cleanup(ctx, row_id)


def app_github_info(ctx: Context, user: User, app_id: int) -> AppGithubView | None:
    """The app's GitHub link for its details page (None for apps not deployed from GitHub)."""
    apps.get_app(ctx, user, app_id)  # NotFound unless the user can see the app
    with session_scope(ctx.engine) as s:
        row = s.exec(select(AppGithub).where(AppGithub.app_id == app_id)).first()
        if row is None:
            return None
        return AppGithubView(repo_full_name=row.repo_full_name, private=row.private,
                             mode=row.mode, mode_reason=row.mode_reason,
                             last_error=row.last_error,
                             has_deploy_key=row.deploy_key_id is not None)
