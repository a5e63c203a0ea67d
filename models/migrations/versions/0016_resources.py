"""resources: per-instance memory (PSS, USS) and CPU samples beside each app's usage
sample, and the memory warning's state per app (models/resources.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 12:40:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('instance_usage_sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('instance', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
    sa.Column('uss_bytes', sa.BigInteger(), nullable=True),
    sa.Column('cpu_percent', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('instance_usage_sample', schema=None) as batch_op:
        batch_op.create_index('ix_instance_usage_sample_app_at', ['app_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_usage_sample_at'), ['at'], unique=False)
    op.create_table('memory_watch',
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('above_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('last_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('peak_bytes', sa.BigInteger(), nullable=False),
    sa.Column('limit_bytes', sa.BigInteger(), nullable=False),
    sa.Column('warned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('app_id')
    )


def downgrade() -> None:
    op.drop_table('memory_watch')
    with op.batch_alter_table('instance_usage_sample', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_usage_sample_at'))
        batch_op.drop_index('ix_instance_usage_sample_app_at')
    op.drop_table('instance_usage_sample')
