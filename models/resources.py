"""Per-instance resource samples and the memory warning's state (supervisor/control/
usage_sampler.py writes both, backend/analytics/resources.py reads them). Tables only: no
behaviour. Migration 0016_resources."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index
from sqlmodel import Field, SQLModel


class InstanceUsageSample(SQLModel, table=True):
    """One instance's reading, taken with the app's UsageSample of the same `at` (which
    holds their sum and the limit). No FK: deleting an app leaves its rows to retention."""

    __tablename__ = "instance_usage_sample"
    __table_args__ = (Index("ix_instance_usage_sample_app_at", "app_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    app_id: int
    at: datetime = Field(index=True)
    instance: str = Field(max_length=64)
    memory_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))  # PSS
    uss_bytes: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    cpu_percent: float = 0.0


class MemoryWatch(SQLModel, table=True):
    """An app whose memory is at or above the warning threshold: since when (the first
    sample of this stretch), the last such sample, and when its developers were warned."""

    __tablename__ = "memory_watch"
    app_id: int = Field(primary_key=True)
    above_since: datetime
    last_at: datetime
    peak_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    limit_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    warned_at: datetime | None = None
