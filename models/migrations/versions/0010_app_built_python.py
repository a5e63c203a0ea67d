"""app.built_python: the Python version (e.g. 3.12.1) the app's environment was actually
built with, which the dashboard, the API and the CLI show (models/tables.App); the app's
python_version stays its setting ("" for the server's default).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:20:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('app') as batch_op:
        batch_op.add_column(sa.Column('built_python', sqlmodel.sql.sqltypes.AutoString(length=16),
                                      nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('app') as batch_op:
        batch_op.drop_column('built_python')
