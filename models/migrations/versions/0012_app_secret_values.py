"""app_secret_value: every value an app's secrets have had, encrypted, so that log views
mask a rotated or removed value too (models/secret_values.AppSecretValue).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:40:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app_secret_value',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('first_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('app_id', 'fingerprint')
    )


def downgrade() -> None:
    op.drop_table('app_secret_value')
