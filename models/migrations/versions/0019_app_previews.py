"""app_preview_config and app_preview: preview apps of pull requests and preview branches
(models/previews.py).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 12:50:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'app_preview_config',
        sa.Column('app_id', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('idle_minutes', sa.Float(), nullable=False),
        sa.Column('secrets_mode', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('secrets_ciphertext', sa.Text(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.PrimaryKeyConstraint('app_id'),
    )
    op.create_table(
        'app_preview',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('parent_app_id', sa.Integer(), nullable=False),
        sa.Column('preview_app_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('branch', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('head_sha', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('head_repo_url', sqlmodel.sql.sqltypes.AutoString(length=2048),
                  nullable=False),
        sa.Column('from_fork', sa.Boolean(), nullable=False),
        sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('reported', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('parent_app_id', 'number', 'branch'),
    )
    with op.batch_alter_table('app_preview') as batch_op:
        batch_op.create_index('ix_app_preview_parent_app_id', ['parent_app_id'])
        batch_op.create_index('ix_app_preview_preview_app_id', ['preview_app_id'])


def downgrade() -> None:
    op.drop_table('app_preview')
    op.drop_table('app_preview_config')
