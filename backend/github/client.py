"""Plumbing of the GitHub integration: PyGithub clients per connected account, the errors a
person sees, rate-limit back-off, OAuth scopes and why we ask for each, a short cache.

- One `Github` client per operation (`connect(ctx, user_id)`), built from the account's
  token (decrypted with the server's Fernet key, `backend.apps.secrets`) and API base URL
  (github.com, or an Enterprise server's `https://HOST/api/v3`). PyGithub's own retry and
  request spacing are off: its retry would *sleep* through a rate limit inside a dashboard
  request. We back off ourselves instead.
- `calling(ctx, conn)` wraps every API call. A 401 marks the account `revoked` (GitHub
  revoked or expired the token: the user connects again). A 403/429 rate-limit answer
  records `rate_limited_until` from `X-RateLimit-Reset` (or `Retry-After`), and until
  then `connect` refuses to call GitHub at all, with a message saying when it will try
  again. An unreachable GitHub becomes `GithubUnavailable`. Other `GithubException`s (404,
  403 for missing rights, 422) reach the caller, which knows what they mean there.
- The list of the user's repositories (one paginated `GET /user/repos`, 100 per page) is
  cached for `CACHE_SECONDS` per account: the deploy form's repository picker and the
  workspace refresh both read it. `forget(account_id)` drops an account's entries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import requests
from github import Auth, Github, GithubException, RateLimitExceededException
from sqlmodel import select

from backend.apps import secrets as secret_box
from backend.context import Context
from backend.errors import BackendError
from backend.repositories.git_env import known_hosts_path as known_hosts_path  # re-export
from models import id_of, session_scope, utcnow
from models.github import GithubAccount

DEFAULT_BASE_URL = "https://api.github.com"
TIMEOUT = 15  # seconds per HTTP request to GitHub
PER_PAGE = 100
CACHE_SECONDS = 60.0
USER_AGENT = "stcloud (self-hosted Streamlit Community Cloud)"
ROLE_RANK = {"": 0, "viewer": 1, "developer": 2, "admin": 3}

# Why each OAuth scope is requested, and what happens without it (docs/github.md).
SCOPES: dict[str, tuple[str, str]] = {
    "repo": (
        "Read your private repositories and add a read-only deploy key to the ones you "
        "deploy, so this server can clone them. GitHub has no narrower scope for deploy "
        "keys: `repo` also grants write access to your code, which we never use and would "
        "rather not have.",
        "Only public repositories can be deployed."),
    "admin:repo_hook": (
        "Add a push webhook to the repositories you deploy, so apps update seconds after a "
        "push, and remove it when the app is deleted.",
        "Apps notice pushes by polling the repository instead (every minute by default)."),
    "read:org": (
        "List the organisations you belong to: each becomes a workspace.",
        "Only organisations whose repositories you can see appear as workspaces."),
}
# Classic scopes that include others (GitHub's scope hierarchy; `repo` covers hooks).
IMPLIED = {"repo": {"public_repo", "admin:repo_hook", "write:repo_hook", "read:repo_hook"},
           "admin:repo_hook": {"write:repo_hook", "read:repo_hook"},
           "write:repo_hook": {"read:repo_hook"},
           "admin:org": {"write:org", "read:org"}, "write:org": {"read:org"}}

T = TypeVar("T")


class GithubError(BackendError):
    """A GitHub problem; the message says what happened and what to do."""


class GithubNotConnected(GithubError):
    pass


class GithubRevoked(GithubError):
    pass


class GithubUnavailable(GithubError):
    pass


class GithubRateLimited(GithubError):
    def __init__(self, message: str, until: datetime) -> None:
        super().__init__(message)
        self.until = until


@dataclass
class Conn:
    """A connected account and a client for it (close it when done: `with connect(...)`)."""

    account: GithubAccount
    gh: Github

    @property
    def login(self) -> str:
        return self.account.login

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.gh.close()


# Settings (read with getattr from backend/platform/settings.py) ---------------------------
def base_url(ctx: Context) -> str:
    return (getattr(ctx.settings, "github_base_url", "") or DEFAULT_BASE_URL).rstrip("/")


def refresh_interval(ctx: Context) -> timedelta:
    return timedelta(minutes=float(getattr(ctx.settings, "github_refresh_minutes", 30) or 30))


def make_client(api_url: str, token: str | None) -> Github:
    return Github(auth=Auth.Token(token) if token else None, base_url=api_url,
                  timeout=TIMEOUT, per_page=PER_PAGE, retry=None, user_agent=USER_AGENT,
                  seconds_between_requests=None, seconds_between_writes=None)


def is_loopback(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.endswith(".localhost") or \
        host.startswith("127.")


# Scopes ---------------------------------------------------------------------------------------
def parse_scopes(header: list[str] | str | None) -> list[str]:
    items = header.split(",") if isinstance(header, str) else (header or [])
    return sorted({s.strip() for s in items if s.strip()})


def effective_scopes(scopes: list[str]) -> set[str]:
    out = set(scopes)
    for s in scopes:
        out |= IMPLIED.get(s, set())
    return out


def has_scope(account: GithubAccount, scope: str) -> bool:
    """Whether the token may do what `scope` allows; fine-grained tokens report no scopes,
    so for them we try and read GitHub's answer instead."""
    if account.token_kind == "fine-grained":
        return True
    return scope in effective_scopes(parse_scopes(account.scopes))


# Accounts and clients -------------------------------------------------------------------------
def load_account(ctx: Context, user_id: int) -> GithubAccount | None:
    with session_scope(ctx.engine) as s:
        return s.exec(select(GithubAccount).where(GithubAccount.user_id == user_id)).first()


def rate_limit_message(login: str, until: datetime, now: datetime | None = None) -> str:
    minutes = max(1, round(((until - (now or utcnow())).total_seconds()) / 60))
    return (f"GitHub's API rate limit for @{login} is used up until {until:%H:%M} UTC (about "
            f"{minutes} minute{'s' if minutes != 1 else ''}). We wait until then before "
            "asking GitHub again; apps that are running are not affected.")


def revoked_message(login: str) -> str:
    return (f"GitHub no longer accepts the token of @{login}: it was revoked or it expired. "
            "Connect GitHub again on your Account page. Apps keep running.")


def connect(ctx: Context, user_id: int, now: datetime | None = None) -> Conn:
    """A client for the user's GitHub account, unless it is missing, revoked or backing off."""
    account = load_account(ctx, user_id)
    if account is None:
        raise GithubNotConnected("Connect your GitHub account first (Account page → GitHub).")
    if account.status == "revoked":
        raise GithubRevoked(revoked_message(account.login))
    until = account.rate_limited_until
    if until is not None and until > (now or utcnow()):
        raise GithubRateLimited(rate_limit_message(account.login, until, now), until)
    try:
        token = secret_box.decrypt(ctx, account.token_ciphertext)
    except BackendError:
        raise GithubError("The stored GitHub token cannot be decrypted (the server key in "
                          "<data_dir>/keys changed). Connect GitHub again.") from None
    return Conn(account=account, gh=make_client(account.base_url, token))


def _update_account(ctx: Context, account_id: int, **fields: Any) -> None:
    with session_scope(ctx.engine) as s:
        row = s.get(GithubAccount, account_id)
        if row is not None:
            for name, value in fields.items():
                setattr(row, name, value)
            s.add(row)


def _reset_time(headers: dict[str, Any], now: datetime) -> datetime:
    h = {k.lower(): v for k, v in (headers or {}).items()}
    try:
        if "retry-after" in h:
            return now + timedelta(seconds=max(1, int(float(h["retry-after"]))))
        if "x-ratelimit-reset" in h:
            reset = datetime.fromtimestamp(int(float(h["x-ratelimit-reset"])), UTC)
            if reset > now:
                return reset
    except (TypeError, ValueError):
        pass
    return now + timedelta(seconds=60)


def _is_rate_limit(e: GithubException) -> bool:
    if isinstance(e, RateLimitExceededException) or e.status == 429:
        return True
    h = {k.lower(): v for k, v in (e.headers or {}).items()}
    return e.status == 403 and str(h.get("x-ratelimit-remaining", "")) == "0"


@contextmanager
def calling(ctx: Context, conn: Conn, unexpected: str = "") -> Iterator[None]:
    """Map GitHub's answers that concern the whole account (see the module docstring).
    With `unexpected` ("Listing your repositories failed"), any other GitHub error becomes
    a GithubError with that message too, instead of reaching the caller."""
    try:
        yield
    except GithubException as e:
        account = conn.account
        if _is_rate_limit(e):
            now = utcnow()
            until = _reset_time(e.headers or {}, now)
            message = rate_limit_message(account.login, until, now)
            _update_account(ctx, id_of(account), status="rate_limited", rate_limited_until=until,
                            last_error=message)
            account.rate_limited_until = until
            raise GithubRateLimited(message, until) from None
        if e.status == 401:
            message = revoked_message(account.login)
            _update_account(ctx, id_of(account), status="revoked", last_error=message)
            account.status = "revoked"
            forget(account.id)
            raise GithubRevoked(message) from None
        if unexpected:
            raise GithubError(f"{unexpected}: GitHub answered {github_message(e)}. Try again "
                              "in a moment.") from None
        raise
    except requests.RequestException as e:
        raise GithubUnavailable(f"GitHub ({conn.account.base_url}) could not be reached: "
                                f"{type(e).__name__}. Try again in a moment.") from None


def github_message(e: GithubException) -> str:
    data = e.data if isinstance(e.data, dict) else {}
    text = str(data.get("message") or e.message or "").strip()
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        details = [str(x.get("message", x)) if isinstance(x, dict) else str(x) for x in errors]
        text = f"{text} ({'; '.join(details)})" if text else "; ".join(details)
    return f"{e.status}: {text}" if text else str(e.status)


# The user's repositories (shared by the picker and the workspace refresh) ---------------------
@dataclass(frozen=True)
class RepoInfo:
    full_name: str
    owner: str  # login as GitHub spells it
    owner_is_org: bool
    private: bool
    default_branch: str
    description: str
    permission: str  # admin | maintain | push | triage | pull


def _permission(perms: Any) -> str:
    if perms is None:
        return "pull"
    for name in ("admin", "maintain", "push", "triage"):
        if getattr(perms, name, False):
            return name
    return "pull"


def user_repos(ctx: Context, conn: Conn) -> list[RepoInfo]:
    """Every repository the user can see (owned, collaborator, organisation member),
    with their permission on each; cached for CACHE_SECONDS."""
    def fetch() -> list[RepoInfo]:
        with calling(ctx, conn, unexpected="Listing your GitHub repositories failed"):
            repos = conn.gh.get_user().get_repos(
                affiliation="owner,collaborator,organization_member", sort="pushed")
            return [RepoInfo(full_name=r.full_name, owner=r.owner.login,
                             owner_is_org=r.owner.type == "Organization", private=r.private,
                             default_branch=r.default_branch or "main",
                             description=r.description or "",
                             permission=_permission(r.permissions)) for r in repos]
    return cached((conn.account.id, "repos"), fetch)


# Cache ----------------------------------------------------------------------------------------
_cache: dict[tuple[Any, ...], tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def cached(key: tuple[Any, ...], compute: Callable[[], T], ttl: float = CACHE_SECONDS) -> T:
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] > now:
            return cast(T, hit[1])
    value = compute()
    with _cache_lock:
        _cache[key] = (now + ttl, value)
    return value


def forget(account_id: int | None = None) -> None:
    """Drop cached answers of one account (all accounts when None)."""
    with _cache_lock:
        for key in [k for k in _cache if account_id is None or k[0] == account_id]:
            del _cache[key]
