"""Resource usage samples of running apps (supervisor/control/usage_sampler.py writes them,
backend/analytics/usage.py reads them). Tables only: no behaviour. Migration
0007_usage_and_epochs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class UsageSample(SQLModel, table=True):
    """One reading of an app's instance: memory (bytes) against its limit, CPU when the
    runtime reports it. No FK: deleting an app leaves its rows to retention."""

    __tablename__ = "usage_sample"
    __table_args__ = (Index("ix_usage_sample_app_at", "app_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    app_id: int
    at: datetime = Field(default_factory=utcnow, index=True)
    memory_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    memory_limit_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    cpu_percent: float | None = Field(default=None)
