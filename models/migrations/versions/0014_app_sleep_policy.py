"""app_sleep_policy: each app's sleep policy, set by its developers within the operator's
bounds (models/sleep_policy.AppSleepPolicy, backend/apps/sleep_policy.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 12:30:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app_sleep_policy',
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('idle_minutes', sa.Float(), nullable=False),
    sa.Column('days', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('start_minute', sa.Integer(), nullable=False),
    sa.Column('end_minute', sa.Integer(), nullable=False),
    sa.Column('timezone', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('wake_on_visit', sa.Boolean(), nullable=False),
    sa.Column('scheduled_wake_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.PrimaryKeyConstraint('app_id')
    )


def downgrade() -> None:
    op.drop_table('app_sleep_policy')
