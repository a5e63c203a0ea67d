"""installation: the engine apps run on, recorded at the first start so that a later start
never moves them silently, and how that engine isolates apps (models/tables.Installation).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:10:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('installation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('engine', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('engine_recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('isolation', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('isolation_detail', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('installation')
