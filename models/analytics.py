"""Analytics aggregates, maintained on insert by `backend.analytics.reports.record_views`.

`ViewEvent` (models/tables.py) keeps every view; these tables keep what the Analytics page
reads, so no page render scans the raw events:

- `AnalyticsViewerMonth` (workspace, month, viewer): the distinct viewers of a workspace in
  one calendar month (UTC). A row is inserted the first time a viewer is seen in that month
  in any app of the workspace; each such insert adds one to `AnalyticsWorkspaceMonth`.
- `AnalyticsWorkspaceMonth` (workspace, month) -> viewers: the Workspace chart, one row a
  month. Counts only: retention keeps it when it prunes the identities behind it.
- `AnalyticsAppViewer` (app, viewer) -> first/last view, views: the App viewers list (recent
  unique viewers, newest first, by the (app_id, last_view) index). Its first insert per
  viewer adds one to `AnalyticsAppTotal.unique_viewers`.
- `AnalyticsAppTotal` (app) -> unique_viewers, views: all-time totals (kept by retention).
- `AnalyticsAppDay` (app, day) -> views: the daily views bar chart (UTC days).

Months and days are UTC calendar months and days (`date` of the first day of the month).
Tables only: no behaviour. Changing a table needs a migration (0003_analytics).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

# SQLite: tables keyed by their primary key alone (WITHOUT ROWID), so the key is the table
# and not a second index beside it. Other databases ignore the option.
CLUSTERED = {"sqlite_with_rowid": False}


class AnalyticsViewerMonth(SQLModel, table=True):
    __tablename__ = "analytics_viewer_month"
    __table_args__ = CLUSTERED
    workspace_id: int = Field(primary_key=True)
    month: date = Field(primary_key=True)  # first day of the UTC calendar month
    viewer_key: str = Field(primary_key=True, max_length=64)


class AnalyticsWorkspaceMonth(SQLModel, table=True):
    __tablename__ = "analytics_workspace_month"
    __table_args__ = CLUSTERED
    workspace_id: int = Field(primary_key=True)
    month: date = Field(primary_key=True)
    viewers: int = Field(default=0)


class AnalyticsAppViewer(SQLModel, table=True):
    __tablename__ = "analytics_app_viewer"
    __table_args__ = (Index("ix_analytics_app_viewer_recent", "app_id", "last_view"), CLUSTERED)
    app_id: int = Field(primary_key=True)
    viewer_key: str = Field(primary_key=True, max_length=64)
    first_view: datetime
    last_view: datetime  # retention's daily prune scans the table: no index to keep up
    views: int = Field(default=0)


class AnalyticsAppTotal(SQLModel, table=True):
    __tablename__ = "analytics_app_total"
    app_id: int = Field(primary_key=True)
    unique_viewers: int = Field(default=0)
    views: int = Field(default=0)


class AnalyticsAppDay(SQLModel, table=True):
    __tablename__ = "analytics_app_day"
    __table_args__ = CLUSTERED
    app_id: int = Field(primary_key=True)
    day: date = Field(primary_key=True)  # UTC calendar day
    views: int = Field(default=0)
