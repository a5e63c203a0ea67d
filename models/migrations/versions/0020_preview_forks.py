"""app_preview_config.allow_forks: whether pull requests from forks get previews at all
(off by default; models/previews.py).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 13:05:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app_preview_config') as batch_op:
        batch_op.add_column(sa.Column('allow_forks', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('app_preview_config') as batch_op:
        batch_op.drop_column('allow_forks')
