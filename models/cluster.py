"""cluster: what several supervisors and proxies share through the database
(docs/scale-out.md). Tables only.

- `ClusterLease`: one row per lease (`name="leader"`): who holds it, until when, and its
  fencing `epoch` (bumped by every take-over; the holder checks it before each action).
- `ClusterNode`: every supervisor and proxy process, with its heartbeat and, for a
  supervisor, where its dashboard and Manage app panel listen (standalone proxies forward
  there).
- `AppRequest`: work asked of the leader besides desired state (a push found, a sleep
  due); removed once served, so a leader's death loses none.
- `SigninToken`: one-time sign-in tokens (hash only), minted by one proxy and redeemed by
  any, once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class ClusterLease(SQLModel, table=True):
    __tablename__ = "cluster_lease"
    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(default="", max_length=128)
    host: str = Field(default="", max_length=255)
    pid: int = Field(default=0)
    pid_started: float = Field(default=0.0)  # the holder's process start time (pid reuse)
    epoch: int = Field(default=0)
    expires_at: datetime = Field(default_factory=utcnow)
    acquired_at: datetime = Field(default_factory=utcnow)


class ClusterNode(SQLModel, table=True):
    __tablename__ = "cluster_node"
    node_id: str = Field(primary_key=True, max_length=128)
    role: str = Field(default="supervisor", max_length=16)  # supervisor | proxy
    host: str = Field(default="", max_length=255)
    pid: int = Field(default=0)
    engine: str = Field(default="", max_length=32)
    python_versions: str = Field(default="[]", sa_column=Column(Text, nullable=False,
                                                                default="[]"))
    dashboard_address: str = Field(default="", max_length=300)  # "host:port" or ""
    panel_address: str = Field(default="", max_length=300)
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow, index=True)


class AppRequest(SQLModel, table=True):
    __tablename__ = "app_request"
    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(index=True)  # no FK: a deleted app's requests are dropped
    kind: str = Field(max_length=16)  # sync | sleep
    arg: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime = Field(default_factory=utcnow)


class SigninToken(SQLModel, table=True):
    __tablename__ = "signin_token"
    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int
    username: str = Field(max_length=64)
    subdomain: str = Field(max_length=63)
    expires_at: datetime = Field(index=True)
