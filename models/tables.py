"""The tables of the control plane (DESIGN.md, "Data"). Tables only: no behaviour.

Times are timezone-aware UTC datetimes (`utcnow()`); sqlmodel's UTCDateTime keeps them so
on SQLite and PostgreSQL alike.
Changing a table needs a migration in `models/migrations/versions/`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(30)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=64)
    email: str = Field(default="", max_length=254)
    name: str = Field(default="", max_length=128)
    password_hash: str = Field(default="")
    is_admin: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)
    # Sessions (dashboard sign-ins, their cookies) established before this time are signed
    # out; a password change or reset sets it. None: no change yet, every session counts.
    session_epoch: datetime | None = Field(default=None)
    # The workspace the dashboard shows this user (its switcher), kept across reloads, tabs
    # and sign-ins (backend.workspaces.remembered_workspace); None: the default one.
    current_workspace_id: int | None = Field(default=None)


class Workspace(SQLModel, table=True):
    """A repository owner: a user's personal handle or an organisation."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("user_id", "workspace_id"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    role: str = Field(default="developer", max_length=16)  # admin | developer | viewer


class App(SQLModel, table=True):
    """One deployed app: what the user asked for (desired_*) and what is (state, runtime_state).

    Ids are never reused: events, builds and other rows keyed by `app_id` outlive a deleted
    app, so a new app with an old id would inherit them. PostgreSQL sequences never go back;
    SQLite needs AUTOINCREMENT (without it a new row takes the highest live id + 1). SQLite
    reflection does not see AUTOINCREMENT: a migration that rebuilds this table (batch mode
    recreating it) must pass `table_kwargs={"sqlite_autoincrement": True}`."""

    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True)
    owner_id: int | None = Field(default=None, foreign_key="user.id")
    subdomain: str = Field(unique=True, index=True, max_length=63)
    repo_url: str = Field(max_length=2048)
    branch: str = Field(default="main", max_length=255)
    main_file: str = Field(default="streamlit_app.py", max_length=1024)
    python_version: str = Field(default="", max_length=16)  # the setting; "" the default
    # The Python version (e.g. 3.12.1) its environment was built with; "" before a build.
    built_python: str = Field(default="", max_length=16)
    visibility: str = Field(default="public", max_length=16)  # public | private
    memory_limit_mb: int | None = Field(default=None)
    # What the user wants: running | stopped | deleted. Reboot bumps restart_generation.
    desired_state: str = Field(default="running", max_length=16)
    restart_generation: int = Field(default=0)
    # What is: the state machine of DESIGN.md and the reason of its last transition.
    state: str = Field(default="queued", max_length=16, index=True)
    state_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    commit: str = Field(default="", max_length=64)
    env_hash: str = Field(default="", max_length=64)
    # JSON blob the runtime needs to find its instance again (pid, container id, address).
    runtime_state: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_deployed_at: datetime | None = Field(default=None)
    last_viewed_at: datetime | None = Field(default=None)
    # Signs push webhooks (GitHub's X-Hub-Signature-256) and authorises the generic push
    # hook. Generated with the row; never logged.
    webhook_secret: str = Field(default_factory=new_webhook_secret, max_length=64, repr=False)
    # Why the newest pushed version could not replace the serving one ("" when it did).
    last_deploy_error: str = Field(default="", sa_column=Column(Text, nullable=False,
                                                                default=""))
    # The crash loop so far (supervisor/control/lifecycle.py): JSON {"times": [epoch seconds],
    # "generation", "commit"}, so a supervisor restart keeps the backoff ("" when none).
    crash_record: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class AppEvent(SQLModel, table=True):
    __table_args__ = (Index("ix_appevent_app_time", "app_id", "time"),)
    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(index=True)  # no FK: events outlive a deleted app's row
    time: datetime = Field(default_factory=utcnow)
    from_state: str = Field(default="", max_length=16)
    to_state: str = Field(max_length=16)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Build(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(index=True)
    commit: str = Field(default="", max_length=64)
    dep_hash: str = Field(default="", max_length=64)
    status: str = Field(default="running", max_length=16)  # running | succeeded | failed
    reused_env: bool = Field(default=False)
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = Field(default=None)


class AppSecret(SQLModel, table=True):
    app_id: int = Field(primary_key=True)
    ciphertext: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    updated_at: datetime = Field(default_factory=utcnow)


class AppViewer(SQLModel, table=True):
    """An email invited to view a private app."""

    __table_args__ = (UniqueConstraint("app_id", "email"),)
    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(index=True)
    email: str = Field(max_length=254)
    created_at: datetime = Field(default_factory=utcnow)


class Favorite(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("user_id", "app_id"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    app_id: int = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)


class ViewEvent(SQLModel, table=True):
    __table_args__ = (Index("ix_viewevent_app_time", "app_id", "time"),)
    id: int | None = Field(default=None, primary_key=True)
    app_id: int
    viewer_key: str = Field(max_length=64)  # "u:<user id>" or "v:<visitor id>"
    time: datetime = Field(default_factory=utcnow, index=True)


class EmailOutbox(SQLModel, table=True):
    """One message to one recipient. `dedupe_key` names the incident and the recipient, so
    the same incident never queues a message twice; `lease_until` marks a row a sender has
    claimed (status `sending`) until then."""

    id: int | None = Field(default=None, primary_key=True)
    app_id: int | None = Field(default=None, index=True)
    kind: str = Field(default="", max_length=32)
    to_addr: str = Field(max_length=254)
    subject: str = Field(max_length=512)
    body_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    body_html: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    dedupe_key: str | None = Field(default=None, unique=True, max_length=255)
    status: str = Field(default="pending", max_length=16, index=True)
    # pending | sending | sent | failed
    attempts: int = Field(default=0)
    last_error: str = Field(default="")
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime | None = Field(default=None)
    lease_until: datetime | None = Field(default=None)
    sent_at: datetime | None = Field(default=None)


class ApiToken(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    name: str = Field(default="", max_length=128)
    token_hash: str = Field(unique=True, max_length=128)
    scopes: str = Field(default="read", max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = Field(default=None)
    revoked: bool = Field(default=False)


class Installation(SQLModel, table=True):
    """Facts about this installation that the supervisor decides once and keeps (one row,
    id 1): the engine apps run on, recorded at the first start so that a later start never
    silently moves them (supervisor/control/engine_choice.py), and how that engine isolates apps,
    refreshed at every start (the dashboard shows it)."""

    id: int | None = Field(default=None, primary_key=True)
    engine: str = Field(default="", max_length=16)  # process | docker | swarm; "" unknown
    engine_recorded_at: datetime | None = Field(default=None)
    # sandboxed | single-tenant | unavailable (sandbox wanted, host cannot) | containers
    isolation: str = Field(default="", max_length=32)
    # e.g. "bubblewrap"; for unavailable, what is missing
    isolation_detail: str = Field(default="", max_length=255)
    updated_at: datetime = Field(default_factory=utcnow)


class Notification(SQLModel, table=True):
    """One notice to one user's dashboard inbox (over limit, crashed, ...), written with the
    email about it, whether or not an email could go out. `dedupe_key` names the incident
    and the user, like the outbox's; `read_at` is None until the user marks it read."""

    __table_args__ = (Index("ix_notification_user_read", "user_id", "read_at"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    app_id: int | None = Field(default=None)  # no FK: the notice outlives a deleted app
    kind: str = Field(default="", max_length=32)
    subject: str = Field(max_length=512)
    body_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    dedupe_key: str = Field(unique=True, max_length=255)
    emailed: bool = Field(default=False)  # an email to this user was queued as well
    created_at: datetime = Field(default_factory=utcnow)
    read_at: datetime | None = Field(default=None)
