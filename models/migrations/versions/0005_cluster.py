"""cluster: leader lease, node registry, app requests and one-time sign-in tokens, so that
several supervisors and proxies share one database (models/cluster.py, docs/scale-out.md).

No data step: the lease row is created by the first supervisor (supervisor/control/leader.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:40:28.025744
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('arg', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('app_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_app_request_app_id'), ['app_id'], unique=False)

    op.create_table('cluster_lease',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('pid_started', sa.Float(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('acquired_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('cluster_node',
    sa.Column('node_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('engine', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('python_versions', sa.Text(), nullable=False),
    sa.Column('dashboard_address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('panel_address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('node_id')
    )
    with op.batch_alter_table('cluster_node', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cluster_node_heartbeat_at'), ['heartbeat_at'], unique=False)

    op.create_table('signin_token',
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subdomain', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('signin_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_token_expires_at'), ['expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('signin_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signin_token_expires_at'))

    op.drop_table('signin_token')
    with op.batch_alter_table('cluster_node', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cluster_node_heartbeat_at'))

    op.drop_table('cluster_node')
    op.drop_table('cluster_lease')
    with op.batch_alter_table('app_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_app_request_app_id'))

    op.drop_table('app_request')
