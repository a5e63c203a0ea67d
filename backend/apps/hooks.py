"""Push webhooks: which apps a push is for, signature checks, and what developers paste
into their git host.

GitHub (`POST /api/v1/hooks/github`) signs the raw body with the app's webhook secret:
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`. One repository may back several apps, each
with its own secret: a push is accepted for the apps whose secret verifies the signature
and whose branch is the pushed ref. GitLab, Gitea/Forgejo and Bitbucket have endpoints of
their own (`push_formats`). Any other git host can call the generic hook
`POST /api/v1/hooks/apps/<id>` with the secret as `?token=`, an `X-Stcloud-Token` header or
`Authorization: Bearer`. Secrets are compared with `hmac.compare_digest` and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from sqlmodel import select

from backend.apps import push_formats
from backend.context import Context
from backend.errors import NotFound
from backend.workspaces import require_role, role_in
from models import App, User, id_of, session_scope


@dataclass(frozen=True)
class HookTarget:
    app_id: int
    branch: str
    secret: str


@dataclass(frozen=True)
class WebhookInfo:
    github_url: str  # payload URL for a GitHub webhook (content type application/json)
    generic_url: str  # for other git hosts: POST here with the secret as token
    secret: str
    # Per host of push_formats.FORMATS: (its name, the payload URL of its push webhook).
    host_urls: tuple[tuple[str, str], ...] = ()


def normalise_repo_url(url: str) -> str:
    """`https://github.com/Owner/Repo.git`, `git@github.com:owner/repo` and
    `ssh://git@github.com/owner/repo.git` all become `github.com/owner/repo`; a local path
    or file:// URL becomes the path without `.git`."""
    text = url.strip()
    if text.startswith("file://"):
        text = text[len("file://"):]
    if text.startswith("/"):
        return re.sub(r"\.git/?$", "", text.rstrip("/"))
    scp = re.match(r"^[\w.-]+@([\w.-]+):(.+)$", text)
    if scp:
        host, path = scp.groups()
    else:
        rest = re.sub(r"^[a-z+]+://", "", text, flags=re.I)
        rest = rest.split("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
        host, _, path = rest.partition("/")
        host = host.split(":", 1)[0]
    path = re.sub(r"\.git/?$", "", path.strip("/"))
    return f"{host.lower()}/{path.lower()}"


def sign(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub would send for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    return bool(secret) and hmac.compare_digest(sign(secret, body).encode(),
                                                header.strip().encode())


def token_valid(secret: str, token: str) -> bool:
    return bool(secret) and hmac.compare_digest(secret.encode(), token.strip().encode())


def apps_for_repo(ctx: Context, repo_urls: list[str]) -> list[HookTarget]:
    """Apps (not deleted) deployed from any of `repo_urls`."""
    wanted = {normalise_repo_url(u) for u in repo_urls if u}
    with session_scope(ctx.engine) as s:
        apps = s.exec(select(App).where(App.desired_state != "deleted")).all()
        return [HookTarget(id_of(a), a.branch, a.webhook_secret) for a in apps
                if normalise_repo_url(a.repo_url) in wanted]


def app_target(ctx: Context, app_id: int) -> HookTarget | None:
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None or app.desired_state == "deleted":
            return None
        return HookTarget(id_of(app), app.branch, app.webhook_secret)


def webhook_info(ctx: Context, user: User, app_id: int) -> WebhookInfo:
    """What a developer configures on the git host (developers of the workspace only)."""
    with session_scope(ctx.engine) as s:
        app = s.get(App, app_id)
        if app is None or app.desired_state == "deleted" or \
                role_in(s, user, app.workspace_id) is None:
            raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
        require_role(s, user, app.workspace_id, "developer", "see this app's webhook secret")
        base = ctx.settings.public_url() + "/api/v1/hooks"
        return WebhookInfo(github_url=f"{base}/github", generic_url=f"{base}/apps/{app.id}",
                           secret=app.webhook_secret,
                           host_urls=tuple((fmt.name, f"{base}/{key}")
                                           for key, fmt in push_formats.FORMATS.items()))
