"""Tables of the sign-in limiter (backend/accounts/auth.py, docs/security.md). Tables only."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.tables import utcnow


class SigninFailure(SQLModel, table=True):
    """One failed password sign-in. `key` is sha256 of "username|client", so the table
    names neither; rows older than the limiter's window are deleted as new ones come."""

    __tablename__ = "signin_failure"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True, max_length=64)
    at: datetime = Field(default_factory=utcnow, index=True)
