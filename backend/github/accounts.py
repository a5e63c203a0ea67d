"""GitHub accounts and the workspaces they give. Operator and user guide:
docs/github.md.

Connecting: a personal access token (classic or fine-grained, `connect_token`) or, when
the operator configured an OAuth app (`github_client_id`/`github_client_secret`), the OAuth
web flow: `oauth_state` + `oauth_authorize_url` send the browser to GitHub, and the
callback route hands the code to `oauth_exchange`. The token is stored encrypted; the
scopes GitHub reports are kept and explained (`github_status(...).scopes`): we ask for
`repo`, `admin:repo_hook` and `read:org`, more than we would like (see SCOPES).

Workspaces follow GitHub (Community Cloud: a workspace is a repository owner). Your own
account is a workspace where you are admin; each organisation you belong to is one too.
Your role in an owner's workspace is your best permission on its repositories: admin →
admin, maintain/push → developer, triage/pull → viewer (an organisation member with no
repository access is a viewer). Other people's personal workspaces are joined only when
they already exist here (someone deployed from them). Roles are refreshed on sign-in
(`refresh_user`, at most once per `github_refresh_minutes`) and by the supervisor
(`backend.github.sync.refresh_all`). A role granted by hand is never lowered by GitHub:
`GithubGrant.base_role` remembers it, and when GitHub takes access away the membership
returns to it (or is removed when GitHub created it).

The deploy form's pickers and the deploy itself are in `backend.github.deploy`; the periodic
checks (renamed or deleted repositories, lost rights, revoked tokens) in
`backend.github.sync`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import requests
from github import BadCredentialsException, GithubException
from sqlmodel import Session, col, select

from backend.accounts import keys
from backend.apps import secrets as secret_box
from backend.context import Context
from backend.errors import BackendError, ValidationError
from backend.github.client import (
    ROLE_RANK,
    SCOPES,
    Conn,
    GithubError,
    GithubRateLimited,
    GithubUnavailable,
    base_url,
    calling,
    connect,
    effective_scopes,
    forget,
    load_account,
    make_client,
    parse_scopes,
    rate_limit_message,
    refresh_interval,
    user_repos,
)
from backend.workspaces import get_or_create_workspace
from models import Membership, User, Workspace, id_of, session_scope, utcnow
from models.github import GithubAccount, GithubGrant

REQUESTED_SCOPES = ("repo", "admin:repo_hook", "read:org")
OAUTH_CALLBACK_PATH = "/api/v1/github/callback"
OAUTH_STATE_SECONDS = 600
ROLE_OF_PERMISSION = {"admin": "admin", "maintain": "developer", "push": "developer",
                      "triage": "viewer", "pull": "viewer"}


@dataclass(frozen=True)
class ScopeNote:
    scope: str
    granted: bool | None  # None: a fine-grained token, GitHub does not say
    why: str
    without: str


@dataclass(frozen=True)
class GithubStatus:
    """What the Account page shows about a connected GitHub account."""

    login: str
    base_url: str
    token_kind: str  # classic | fine-grained | oauth
    scopes: tuple[ScopeNote, ...]
    status: str  # ok | revoked | rate_limited | error
    message: str  # "" when all is well; else what is wrong and what to do
    rate_limited_until: datetime | None
    refreshed_at: datetime | None


def scope_notes(token_kind: str, scopes: str) -> tuple[ScopeNote, ...]:
    have = effective_scopes(parse_scopes(scopes))
    return tuple(ScopeNote(scope=name, granted=None if token_kind == "fine-grained"
                           else name in have, why=why, without=without)
                 for name, (why, without) in SCOPES.items())


def _status(account: GithubAccount) -> GithubStatus:
    now = utcnow()
    until = account.rate_limited_until
    limited = until is not None and until > now
    status = "rate_limited" if limited else (
        "ok" if account.status == "rate_limited" else account.status)
    message = rate_limit_message(account.login, until, now) if limited and until else (
        "" if status == "ok" else account.last_error)
    return GithubStatus(login=account.login, base_url=account.base_url,
                        token_kind=account.token_kind,
                        scopes=scope_notes(account.token_kind, account.scopes), status=status,
                        message=message, rate_limited_until=until if limited else None,
                        refreshed_at=account.refreshed_at)


def github_status(ctx: Context, user: User) -> GithubStatus | None:
    """The user's GitHub connection, or None when not connected."""
    account = load_account(ctx, id_of(user))
    return _status(account) if account else None


# Connecting -----------------------------------------------------------------------------------
def connect_token(ctx: Context, user: User, token: str) -> GithubStatus:
    """Check a personal access token with GitHub, store it encrypted, refresh workspaces."""
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise ValidationError("token", "Paste a GitHub personal access token (it starts with "
                              "ghp_ or github_pat_).")
    kind = "fine-grained" if token.startswith("github_pat_") else "classic"
    return _connect(ctx, user, token, kind)


def oauth_configured(ctx: Context) -> bool:
    return bool(getattr(ctx.settings, "github_client_id", "")
                and getattr(ctx.settings, "github_client_secret", ""))


def _state_key(ctx: Context) -> bytes:
    return keys.load_or_create_secret(ctx, "github_oauth_state").encode()


def oauth_state(ctx: Context, user: User) -> str:
    """An unguessable `state` for the OAuth flow, bound to the user and valid 10 minutes."""
    issued = str(int(time.time()))
    body = f"{user.id}.{issued}"
    sig = hmac.new(_state_key(ctx), body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{sig}"


def oauth_state_user(ctx: Context, state: str) -> int:
    """The id of the user who started the OAuth flow with `state` (signed by us, at most
    10 minutes old); ValidationError otherwise. The callback route may use it to know who
    is connecting: a state cannot be forged, and a stolen one only connects the GitHub
    account of whoever completes the flow to the user who started it."""
    try:
        user_id, issued, sig = state.split(".")
        fresh = 0 <= time.time() - int(issued) <= OAUTH_STATE_SECONDS
    except ValueError:
        user_id, sig, fresh, issued = "", "", False, "0"
    good = hmac.new(_state_key(ctx), f"{user_id}.{issued}".encode(),
                    hashlib.sha256).hexdigest()[:32]
    if not (fresh and user_id.isdigit() and hmac.compare_digest(good, sig)):
        raise ValidationError("state", "This GitHub sign-in link expired or was not started "
                              "here. Click Connect GitHub again.")
    return int(user_id)


def check_oauth_state(ctx: Context, user: User, state: str) -> None:
    if oauth_state_user(ctx, state) != user.id:
        raise ValidationError("state", "This GitHub sign-in link was started by another "
                              "user. Click Connect GitHub again.")


def oauth_authorize_url(ctx: Context, state: str, redirect_uri: str | None = None) -> str:
    """Where to send the browser to authorise the OAuth app (scopes: REQUESTED_SCOPES)."""
    if not oauth_configured(ctx):
        raise BackendError("GitHub sign-in is not configured on this server (settings "
                           "github_client_id and github_client_secret); paste a token "
                           "instead.")
    gh = make_client(base_url(ctx), None)
    try:
        app = gh.get_oauth_application(ctx.settings.github_client_id,
                                       ctx.settings.github_client_secret)
        query = urlencode({"client_id": app.client_id, "scope": " ".join(REQUESTED_SCOPES),
                           "state": state, "allow_signup": "false",
                           "redirect_uri": redirect_uri
                           or ctx.settings.public_url() + OAUTH_CALLBACK_PATH})
        return app.get_oauth_url(f"/authorize?{query}")
    finally:
        gh.close()


def oauth_exchange(ctx: Context, user: User, code: str, state: str | None = None) -> GithubStatus:
    """Trade the callback's `code` for a token (checking `state` when given) and connect."""
    if state is not None:
        check_oauth_state(ctx, user, state)
    if not oauth_configured(ctx):
        raise BackendError("GitHub sign-in is not configured on this server.")
    gh = make_client(base_url(ctx), None)
    try:
        app = gh.get_oauth_application(ctx.settings.github_client_id,
                                       ctx.settings.github_client_secret)
        access = app.get_access_token(code.strip())
        token = access.token
    except BadCredentialsException:
        raise ValidationError("code", "GitHub did not accept the sign-in code (it expired or "
                              "was used already). Click Connect GitHub again.") from None
    except GithubException as e:
        raise GithubError(f"GitHub refused the sign-in: {e.data}. Check the OAuth app's "
                          "client id and secret in the server settings.") from None
    except requests.RequestException as e:
        raise GithubUnavailable(f"GitHub could not be reached: {type(e).__name__}. Try "
                                "again in a moment.") from None
    finally:
        gh.close()
    if not token:
        raise GithubError("GitHub returned no token; click Connect GitHub again.")
    return _connect(ctx, user, token, "oauth")


def _connect(ctx: Context, user: User, token: str, kind: str) -> GithubStatus:
    api = base_url(ctx)
    gh = make_client(api, token)
    try:
        me = gh.get_user()
        login, github_id = me.login, me.id
        header = gh.oauth_scopes
    except BadCredentialsException:
        raise ValidationError("token", "GitHub did not accept this token (Bad credentials): "
                              "check it was copied whole and has not expired.") from None
    except GithubException as e:
        raise GithubError(f"GitHub answered {e.status} when we checked the token; try again "
                          "later.") from None
    except requests.RequestException as e:
        raise GithubUnavailable(f"GitHub ({api}) could not be reached: {type(e).__name__}. "
                                "Try again in a moment.") from None
    finally:
        gh.close()
    if header is None and kind == "classic":
        kind = "fine-grained"  # GitHub reports no scopes for fine-grained tokens
    with session_scope(ctx.engine) as s:
        other = s.exec(select(GithubAccount).where(
            GithubAccount.base_url == api, GithubAccount.github_id == github_id,
            GithubAccount.user_id != user.id)).first()
        if other is not None:
            raise ValidationError("token", f"The GitHub account @{login} is already "
                                  "connected to another user here.")
        row = s.exec(select(GithubAccount).where(GithubAccount.user_id == user.id)).first()
        row = row or GithubAccount(user_id=id_of(user))
        row.github_id, row.login, row.base_url, row.token_kind = github_id, login, api, kind
        row.token_ciphertext = secret_box.encrypt(ctx, token)
        row.scopes = ",".join(parse_scopes(header))
        row.status, row.last_error, row.rate_limited_until = "ok", "", None
        row.refreshed_at = None
        s.add(row)
    forget()
    try:
        refresh_user(ctx, user, force=True)
    except GithubError:
        pass  # connected; the status shows the problem and the next refresh retries
    status = github_status(ctx, user)
    if status is None:
        raise BackendError(f"The GitHub account @{login} was disconnected while it was being "
                           "connected. Connect it again.")
    return status


def disconnect(ctx: Context, user: User) -> None:
    """Forget the token and the workspace roles GitHub gave. Deploy keys and webhooks of
    apps already deployed stay (the apps keep updating)."""
    with session_scope(ctx.engine) as s:
        row = s.exec(select(GithubAccount).where(GithubAccount.user_id == user.id)).first()
        if row is not None:
            forget(row.id)
            s.delete(row)
        apply_roles(s, user, {}, create=set())


# Workspaces -----------------------------------------------------------------------------------
def github_roles(ctx: Context, conn: Conn) -> tuple[dict[str, str], set[str]]:
    """(workspace name → role, names to create) from GitHub: the user, orgs, repositories."""
    with calling(ctx, conn, unexpected="Reading your GitHub organisations failed"):
        me = conn.gh.get_user()
        login = me.login
        orgs = {o.login.lower() for o in me.get_orgs()}
    roles = {login.lower(): "admin"}
    for org in orgs:
        roles.setdefault(org, "viewer")
    for repo in user_repos(ctx, conn):
        owner, role = repo.owner.lower(), ROLE_OF_PERMISSION[repo.permission]
        if ROLE_RANK[role] > ROLE_RANK.get(roles.get(owner, ""), 0):
            roles[owner] = role
        if repo.owner_is_org:
            orgs.add(owner)
    return roles, {login.lower(), *orgs}


def apply_roles(session: Session, user: User, roles: dict[str, str], create: set[str],
                only: set[str] | None = None) -> None:
    """Make the user's GitHub-given memberships match `roles`. Workspaces named in `create`
    are made when missing. Grants of workspaces not in `roles` are withdrawn, unless `only`
    limits the update to some names."""
    grants = {g.workspace_id: g for g in session.exec(
        select(GithubGrant).where(GithubGrant.user_id == user.id))}
    seen: set[int] = set()
    for name, role in roles.items():
        ws = session.exec(select(Workspace).where(Workspace.name == name)).first()
        created = False
        if ws is None:
            if name not in create:
                continue
            ws, created = get_or_create_workspace(session, name, user), True
        seen.add(id_of(ws))
        m = session.exec(select(Membership).where(Membership.user_id == user.id,
                                                  Membership.workspace_id == ws.id)).first()
        grant = grants.get(id_of(ws))
        if grant is None:
            grant = GithubGrant(user_id=id_of(user), workspace_id=id_of(ws), role=role,
                                base_role="" if created or m is None else m.role)
        grant.role, grant.updated_at = role, utcnow()
        best = max(role, grant.base_role, key=lambda r: ROLE_RANK.get(r, 0))
        if m is None:
            m = Membership(user_id=id_of(user), workspace_id=id_of(ws), role=best)
        m.role = best
        session.add(m)
        session.add(grant)
    for ws_id, grant in grants.items():
        if ws_id in seen:
            continue
        if only is not None:
            ws = session.get(Workspace, ws_id)
            if ws is None or ws.name not in only:
                continue
        m = session.exec(select(Membership).where(Membership.user_id == user.id,
                                                  Membership.workspace_id == ws_id)).first()
        if m is not None:
            if grant.base_role:
                m.role = grant.base_role
                session.add(m)
            else:
                session.delete(m)
        session.delete(grant)
    session.flush()


def refresh_user(ctx: Context, user: User, force: bool = False,
                 now: datetime | None = None) -> list[tuple[str, str]] | None:
    """Bring the user's workspaces and roles up to date with GitHub (on sign-in; at most once
    per `github_refresh_minutes` unless `force`). None when GitHub is not connected.
    Raises GithubError (a BackendError) with a message for the user on revoked tokens,
    rate limits and an unreachable GitHub; memberships stay as they were then."""
    now = now or utcnow()
    account = load_account(ctx, id_of(user))
    if account is None:
        return None
    if not force and account.refreshed_at is not None and \
            now - account.refreshed_at < refresh_interval(ctx):
        return _granted(ctx, user)
    with connect(ctx, id_of(user), now) as conn:
        forget(conn.account.id)  # a refresh reads GitHub, not our cache
        roles, create = github_roles(ctx, conn)
        with session_scope(ctx.engine) as s:
            apply_roles(s, user, roles, create)
            row = s.get(GithubAccount, conn.account.id)
            if row is not None:
                row.refreshed_at, row.status, row.last_error = now, "ok", ""
                row.rate_limited_until = None
                s.add(row)
    return _granted(ctx, user)


def _granted(ctx: Context, user: User) -> list[tuple[str, str]]:
    with session_scope(ctx.engine) as s:
        rows = s.exec(select(Workspace.name, GithubGrant.role).join(
            GithubGrant, col(GithubGrant.workspace_id) == Workspace.id).where(
            GithubGrant.user_id == user.id).order_by(Workspace.name)).all()
        return [(n, r) for n, r in rows]


__all__ = ["GithubError", "GithubRateLimited", "GithubStatus", "ScopeNote", "apply_roles",
           "check_oauth_state", "connect_token", "disconnect", "github_status",
           "oauth_authorize_url", "oauth_configured", "oauth_exchange", "oauth_state",
           "oauth_state_user", "refresh_user"]
