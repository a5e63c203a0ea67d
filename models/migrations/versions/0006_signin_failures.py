"""signin failures: the sign-in limiter's failed attempts (models/security.py), kept in the
database so that the limit survives restarts and holds across dashboard processes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:30:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('signin_failure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signin_failure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_failure_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_signin_failure_key'), ['key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('signin_failure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signin_failure_key'))
        batch_op.drop_index(batch_op.f('ix_signin_failure_at'))

    op.drop_table('signin_failure')
