"""How the supervisor authenticates to an app's repository on a git host other than
GitHub's integration (backend/repositories/credentials.py): a read-only deploy key the
platform generated (its public half is what the developer adds to the repository) or an
access token for https. Tables only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class AppGitCredential(SQLModel, table=True):
    """One app's credential. `kind` is `deploy_key` (`secret` the OpenSSH private key,
    `public_key` its public line) or `token` (`secret` the token, sent as the password of
    `username` over https). `secret` is a Fernet token under the secrets key. The row goes
    with the app."""

    __tablename__ = "app_git_credential"
    app_id: int = Field(primary_key=True)
    kind: str = Field(max_length=16)
    username: str = Field(default="", max_length=255)
    secret: str = Field(sa_column=Column(Text, nullable=False))
    public_key: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)
