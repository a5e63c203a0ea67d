"""usage and epochs: memory/CPU samples of running apps (models/usage.py), the crash loop
kept on the app row so a supervisor restart keeps the backoff (App.crash_record), and the
session epoch of each user: sessions from before a password change are signed out
(User.session_epoch).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 11:14:58
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('usage_sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
    sa.Column('memory_limit_bytes', sa.BigInteger(), nullable=False),
    sa.Column('cpu_percent', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('usage_sample', schema=None) as batch_op:
        batch_op.create_index('ix_usage_sample_app_at', ['app_id', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_usage_sample_at'), ['at'], unique=False)

    with op.batch_alter_table('app', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crash_record', sa.Text(), nullable=False, server_default=''))

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')

    with op.batch_alter_table('app', schema=None) as batch_op:
        batch_op.drop_column('crash_record')

    with op.batch_alter_table('usage_sample', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_sample_at'))
        batch_op.drop_index('ix_usage_sample_app_at')

    op.drop_table('usage_sample')
