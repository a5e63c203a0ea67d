"""Per-app credentials for private repositories on any git host (GitLab, Gitea/Forgejo,
Bitbucket, a plain SSH or HTTPS server): a read-only deploy key the platform generates, or
an access token for https. GitHub repositories deployed through the GitHub integration use
its own deploy keys (`backend.github.deploy_keys`) instead.

- **Deploy key**: `new_deploy_key()` makes an ed25519 pair; the developer adds the public
  line to the repository as a read-only deploy key (GitLab: Settings → Repository → Deploy
  keys; Gitea/Forgejo: Settings → Deploy keys; Bitbucket: Repository settings → Access
  keys; a plain server: `authorized_keys` of its git user) and deploys with the ssh URL.
- **Access token**: sent over https as the password of `username` (GitLab: any name, e.g.
  `oauth2`; Gitea/Forgejo: the token's owner; Bitbucket: `x-token-auth`), only to the
  repository's own URL (`http.<url>.extraHeader`), never in a URL, an argument list or a log.

Secrets are stored encrypted under the secrets key; nothing here returns them to a person:
`describe` gives the kind, the username and the public key only.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session

from backend.accounts import sealing
from backend.context import Context
from backend.errors import NotFound, ValidationError
from backend.workspaces import require_role, role_in
from models import App, AppGitCredential, User, session_scope

KINDS = ("deploy_key", "token")
MAX_TOKEN = 4096


@dataclass(frozen=True)
class GitCredential:
    """A credential as the supervisor uses it (`secret` in clear)."""
    kind: str
    secret: str
    username: str = ""
    public_key: str = ""


@dataclass(frozen=True)
class CredentialInfo:
    """What a developer may see of an app's credential."""
    kind: str  # "" when the app has none
    username: str = ""
    public_key: str = ""


def new_key_pair(comment: str) -> tuple[str, str]:
    """(private key in OpenSSH format, public key line) of a new ed25519 pair."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


def new_deploy_key(subdomain: str) -> GitCredential:
    """A new deploy key named after the app (its comment, as the git host lists it)."""
    private, public = new_key_pair(f"stcloud-{subdomain or 'app'}")
    return GitCredential("deploy_key", private, public_key=public)


def access_token(token: str, username: str = "") -> GitCredential:
    """An access token credential; ValidationError saying what to paste when malformed."""
    value = token.strip()
    if not value:
        raise ValidationError("git_token", "Paste the repository's access token.")
    if len(value) > MAX_TOKEN or any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ValidationError("git_token", "An access token is one line without spaces; "
                              "copy it again from the git host.")
    name = username.strip() or "oauth2"
    if len(name) > 255 or any(c.isspace() or c == ":" for c in name):
        raise ValidationError("git_username", "The username has no spaces or ':'.")
    return GitCredential("token", value, username=name)


def require_url_for(credential: GitCredential, repo_url: str) -> None:
    """A deploy key needs an ssh URL and a token an https one: say which when not."""
    url = repo_url.strip()
    is_https = url.lower().startswith("https://")
    is_ssh = url.lower().startswith("ssh://") or ("@" in url and "://" not in url)
    if credential.kind == "token" and not is_https:
        raise ValidationError("repo_url", "An access token is sent over https only: deploy "
                              "with the repository's https clone URL.")
    if credential.kind == "deploy_key" and not is_ssh:
        raise ValidationError("repo_url", "A deploy key works over ssh: deploy with the "
                              "repository's ssh clone URL (git@host:owner/repo.git).")


def row_for(ctx: Context, app_id: int, credential: GitCredential) -> AppGitCredential:
    return AppGitCredential(app_id=app_id, kind=credential.kind, username=credential.username,
                            secret=sealing.seal(ctx, credential.secret),
                            public_key=credential.public_key)


def credential_for_app(ctx: Context, app_id: int) -> tuple[GitCredential, str] | None:
    """(the app's credential, its repository URL), or None without one. For the
    supervisor's git runs only."""
    with session_scope(ctx.engine) as s:
        row = s.get(AppGitCredential, app_id)
        app = s.get(App, app_id)
        if row is None or app is None:
            return None
        secret = sealing.unseal(ctx, row.secret, "This app's repository credential")
        return GitCredential(row.kind, secret, row.username, row.public_key), app.repo_url


def _app_for(s: Session, user: User, app_id: int, action: str) -> App:
    app = s.get(App, app_id)
    if app is None or app.desired_state == "deleted" or role_in(s, user, app.workspace_id) is None:
        raise NotFound(f"App {app_id} does not exist (it may have been deleted).")
    require_role(s, user, app.workspace_id, "developer", action)
    return app


def describe(ctx: Context, user: User, app_id: int) -> CredentialInfo:
    """The app's credential without its secret (developers of the workspace)."""
    with session_scope(ctx.engine) as s:
        _app_for(s, user, app_id, "see this app's repository access")
        row = s.get(AppGitCredential, app_id)
        if row is None:
            return CredentialInfo("")
        return CredentialInfo(row.kind, row.username, row.public_key)


def set_credential(ctx: Context, user: User, app_id: int,
                   credential: GitCredential | None) -> CredentialInfo:
    """Replace (or with None remove) the app's credential; the next fetch uses it."""
    with session_scope(ctx.engine) as s:
        app = _app_for(s, user, app_id, "change this app's repository access")
        if credential is not None:
            require_url_for(credential, app.repo_url)
        row = s.get(AppGitCredential, app_id)
        if row is not None:
            s.delete(row)
            s.flush()
        if credential is None:
            return CredentialInfo("")
        s.add(row_for(ctx, app_id, credential))
        return CredentialInfo(credential.kind, credential.username, credential.public_key)
