"""setting_override and setting_change: settings changed live on the Server settings page
and their audit trail (models/setting_overrides.py).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 12:30:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('setting_override',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value_json', sa.Text(), nullable=False),
    sa.Column('changed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('changed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('setting_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('old_json', sa.Text(), nullable=False),
    sa.Column('new_json', sa.Text(), nullable=False),
    sa.Column('changed_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('changed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('setting_change')
    op.drop_table('setting_override')
