"""oidc_key, oidc_client, oidc_code: the platform's OpenID Connect provider (signing keys,
one client per app, single-use authorization codes; models/oidc.py).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 12:40:00
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oidc_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('private_pem', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kid')
    )
    op.create_table('oidc_client',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('secret_ciphertext', sa.Text(), nullable=False),
    sa.Column('cookie_secret_ciphertext', sa.Text(), nullable=False),
    sa.Column('identity_headers', sa.Boolean(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oidc_client') as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_client_app_id'), ['app_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_oidc_client_client_id'), ['client_id'],
                              unique=True)
    op.create_table('oidc_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('redirect_uri', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
    sa.Column('code_challenge', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('nonce', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_hash')
    )
    with op.batch_alter_table('oidc_code') as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_code_expires_at'), ['expires_at'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('oidc_code')
    op.drop_table('oidc_client')
    op.drop_table('oidc_key')
