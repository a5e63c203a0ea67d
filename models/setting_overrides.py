"""Tables of the settings changed live on the Server settings page
(backend/platform/setting_overrides.py). Tables only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class SettingOverride(SQLModel, table=True):
    """A setting's live value, over what the defaults, the file and the environment give.
    `value_json` is the value as JSON (a number, text or true/false)."""

    __tablename__ = "setting_override"
    name: str = Field(primary_key=True, max_length=64)
    value_json: str = Field(sa_column=Column(Text, nullable=False))
    changed_by: str = Field(max_length=64)
    changed_at: datetime = Field(default_factory=utcnow)


class SettingChange(SQLModel, table=True):
    """One live change (or reset, `new_json` empty) of a setting, for the audit trail. The
    highest id is the version of the live settings: every process that holds settings
    compares it with the one it applied and reloads when it moved."""

    __tablename__ = "setting_change"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    old_json: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    new_json: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    changed_by: str = Field(max_length=64)
    changed_at: datetime = Field(default_factory=utcnow)
