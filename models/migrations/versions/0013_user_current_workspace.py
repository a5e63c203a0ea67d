"""user.current_workspace_id: the workspace the dashboard's switcher shows the user, kept
server-side so a reload, a new tab and the next sign-in keep it (models/tables.User).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 07:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user') as batch_op:
        batch_op.add_column(sa.Column('current_workspace_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('user') as batch_op:
        batch_op.drop_column('current_workspace_id')
