"""The table of every value an app's secrets have had (backend/apps/secrets.py keeps it,
backend/apps/log_masking.py masks those values in log text). Tables only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class AppSecretValue(SQLModel, table=True):
    """One value that was in an app's secrets at some time, current or replaced since.

    `ciphertext` is a Fernet token of the value under the same key as `AppSecret`;
    `fingerprint` is an HMAC-SHA256 of it under a key derived from that key, so a value is
    stored once per app without decrypting the others. The rows go with the app."""

    __tablename__ = "app_secret_value"
    __table_args__ = (UniqueConstraint("app_id", "fingerprint"),)
    id: int | None = Field(default=None, primary_key=True)
    app_id: int
    fingerprint: str = Field(max_length=64)
    ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    first_seen: datetime = Field(default_factory=utcnow)
