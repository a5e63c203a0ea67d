"""github: connected GitHub accounts (encrypted tokens), workspace roles granted by GitHub,
and per-app GitHub state (deploy key, webhook, push mode, last error) — models/github.py.

No data step: nothing was connected to GitHub before this revision.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:10:00.000000
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('github_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('github_id', sa.Integer(), nullable=False),
    sa.Column('login', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('token_ciphertext', sa.Text(), nullable=False),
    sa.Column('token_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scopes', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('base_url', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('rate_limited_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('refreshed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('github_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_github_account_login'), ['login'], unique=False)
        batch_op.create_index(batch_op.f('ix_github_account_user_id'), ['user_id'], unique=True)

    op.create_table('github_grant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('base_role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('user_id', 'workspace_id')
    )
    with op.batch_alter_table('github_grant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_github_grant_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_github_grant_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('app_github',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=True),
    sa.Column('pending_subdomain', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('repo_full_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('private', sa.Boolean(), nullable=False),
    sa.Column('deploy_key_id', sa.Integer(), nullable=True),
    sa.Column('private_key_ciphertext', sa.Text(), nullable=False),
    sa.Column('hook_id', sa.Integer(), nullable=True),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('mode_reason', sa.Text(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('checked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('app_github', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_app_github_app_id'), ['app_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_app_github_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('app_github', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_app_github_user_id'))
        batch_op.drop_index(batch_op.f('ix_app_github_app_id'))

    op.drop_table('app_github')
    with op.batch_alter_table('github_grant', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_github_grant_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_github_grant_user_id'))

    op.drop_table('github_grant')
    with op.batch_alter_table('github_account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_github_account_user_id'))
        batch_op.drop_index(batch_op.f('ix_github_account_login'))

    op.drop_table('github_account')
