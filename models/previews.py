"""Preview apps (backend/apps/previews.py): an app's developers turn previews on, and each
open pull request (or preview branch) of its repository runs as an app of its own. Tables
only.

No FK to `app`: like events, a deleted app's rows stay (app ids are never reused)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class AppPreviewConfig(SQLModel, table=True):
    """Whether `app_id` gets previews, and how long a preview may sit idle before it sleeps."""

    __tablename__ = "app_preview_config"
    app_id: int = Field(primary_key=True)
    enabled: bool = Field(default=False)
    # Pull requests from forks run someone else's code: previews of them only when on.
    allow_forks: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    idle_minutes: float = Field(default=30.0)
    # What a preview's st.secrets hold: "app" (the app's own), "none", or "own" (the TOML
    # in `secrets_ciphertext`, a Fernet token under the secrets key). Forks always get none.
    secrets_mode: str = Field(default="app", max_length=8)
    secrets_ciphertext: str = Field(default="", sa_column=Column(Text, nullable=False,
                                                                 default=""))
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=255)


class AppPreview(SQLModel, table=True):
    """One preview: the app `preview_app_id` runs `branch` (at `head_sha`) of pull request
    `number` (0 for a preview branch) of the app `parent_app_id`. `from_fork`: the code comes
    from another repository, so the preview gets none of the parent's secrets.
    `reported` is the state last posted back to the git host (a commit status)."""

    __tablename__ = "app_preview"
    __table_args__ = (UniqueConstraint("parent_app_id", "number", "branch"),)
    id: int | None = Field(default=None, primary_key=True)
    parent_app_id: int = Field(index=True)
    preview_app_id: int = Field(index=True)
    number: int = Field(default=0)
    branch: str = Field(max_length=255)
    head_sha: str = Field(default="", max_length=64)
    head_repo_url: str = Field(default="", max_length=2048)
    from_fork: bool = Field(default=False)
    title: str = Field(default="", max_length=255)
    reported: str = Field(default="", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
