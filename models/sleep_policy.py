"""Each app's sleep policy (backend/apps/sleep_policy.py says what the fields mean,
supervisor/control/hibernation.py applies them). Tables only: no behaviour. Migration
0014_app_sleep_policy. An app without a row has the `default` policy.

No FK: like events, a deleted app's row stays (app ids are never reused) and is ignored."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.tables import utcnow


class AppSleepPolicy(SQLModel, table=True):
    """One app's policy: `kind` default | idle | never | schedule."""

    __tablename__ = "app_sleep_policy"
    app_id: int = Field(primary_key=True)
    kind: str = Field(default="default", max_length=16)
    idle_minutes: float = Field(default=0.0)  # idle: the period without a viewer
    # schedule: awake on these weekdays ("0,1,2,3,4": Monday to Friday) from start to end
    # (minutes after local midnight) in the IANA time zone `timezone`.
    days: str = Field(default="", max_length=32)
    start_minute: int = Field(default=0)
    end_minute: int = Field(default=0)
    timezone: str = Field(default="UTC", max_length=64)
    wake_on_visit: bool = Field(default=False)  # a visit wakes it (no button)
    # The start of the schedule window the supervisor last woke the app for (once each).
    scheduled_wake_at: datetime | None = Field(default=None)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="", max_length=255)
