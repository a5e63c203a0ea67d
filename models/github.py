"""GitHub integration tables (backend/github/accounts.py, backend/github/deploy.py). Tables only.

- `GithubAccount`: one connected GitHub account per user: its login, the token (encrypted
  with the server's Fernet key, never stored in clear), the scopes GitHub reported, the API
  base URL (github.com or an Enterprise server), and the state of the last call: `status`
  ok | revoked | rate_limited | error, with `last_error` for a person and, when GitHub's rate
  limit is used up, `rate_limited_until` (no call is made before then).
- `GithubGrant`: a workspace role that GitHub gave a user (the repository owner's
  workspace, the role from the user's repository permissions). `base_role` is the role the
  membership had before GitHub granted anything ("" when GitHub created it), so that when
  GitHub takes the access away the membership goes back to it (or goes, when "").
- `AppGithub`: what an app deployed from GitHub keeps: the repository (id and current full
  name, followed across renames), the read-only deploy key of a private repository (its id
  on GitHub and the private key, encrypted), the push webhook's id, and how pushes reach
  the app (`mode` webhook | polling, `mode_reason`). `last_error` is the GitHub problem the
  dashboard shows (deleted repository, lost admin rights, revoked token); "" when none.
  While the app row is being created `app_id` is NULL and `pending_subdomain` names it; a
  row whose app was deleted but whose key or hook could not be removed yet has
  `mode = "cleanup"` and is retried by the periodic refresh.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class GithubAccount(SQLModel, table=True):
    __tablename__ = "github_account"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", unique=True, index=True)
    github_id: int = Field(default=0)
    login: str = Field(default="", max_length=100, index=True)
    token_ciphertext: str = Field(default="", sa_column=Column(Text, nullable=False,
                                                               default=""), repr=False)
    token_kind: str = Field(default="classic", max_length=16)  # classic | fine-grained | oauth
    # Comma-separated, as GitHub's X-OAuth-Scopes header lists them; "" for fine-grained
    # tokens, whose permissions GitHub does not report.
    scopes: str = Field(default="", max_length=512)
    base_url: str = Field(default="https://api.github.com", max_length=512)
    status: str = Field(default="ok", max_length=16)  # ok | revoked | rate_limited | error
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    rate_limited_until: datetime | None = Field(default=None)
    refreshed_at: datetime | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)


class GithubGrant(SQLModel, table=True):
    __tablename__ = "github_grant"
    __table_args__ = (UniqueConstraint("user_id", "workspace_id"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    workspace_id: int = Field(index=True)
    role: str = Field(max_length=16)  # admin | developer | viewer, as GitHub gives it
    base_role: str = Field(default="", max_length=16)
    updated_at: datetime = Field(default_factory=utcnow)


class AppGithub(SQLModel, table=True):
    __tablename__ = "app_github"
    id: int | None = Field(default=None, primary_key=True)
    app_id: int | None = Field(default=None, unique=True, index=True)  # no FK: see above
    pending_subdomain: str = Field(default="", max_length=63)
    user_id: int = Field(index=True)  # whose GitHub token manages the key and the hook
    repo_id: int = Field(default=0)
    repo_full_name: str = Field(max_length=255)
    private: bool = Field(default=False)
    deploy_key_id: int | None = Field(default=None)
    private_key_ciphertext: str = Field(default="", sa_column=Column(Text, nullable=False,
                                                                     default=""), repr=False)
    hook_id: int | None = Field(default=None)
    mode: str = Field(default="polling", max_length=16)  # webhook | polling | cleanup
    mode_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    checked_at: datetime | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)
