"""app ids are never reused: AUTOINCREMENT on SQLite's app table (models/tables.App).

Without AUTOINCREMENT SQLite gives a new row the highest live id + 1, so an app deployed
after the newest one was deleted took its id, and with it the deleted app's events, builds
and other rows keyed by `app_id` (they outlive the app). The table is rebuilt with
AUTOINCREMENT (every row, index and foreign key kept) and its sequence starts after the
highest app id ever used: the live rows' and any id that only rows of deleted apps still
name. PostgreSQL's sequences never hand out an id twice: nothing to do there.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def _highest_app_id_ever(bind: sa.Connection) -> int:
    """The largest id in app.id or in any table's app_id column (rows of deleted apps)."""
    inspector = sa.inspect(bind)
    highest = bind.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM app")).scalar() or 0
    for table in inspector.get_table_names():
        if table == "app" or not any(c["name"] == "app_id"
                                     for c in inspector.get_columns(table)):
            continue
        found = bind.execute(sa.text(f'SELECT COALESCE(MAX(app_id), 0) FROM "{table}"'))
        highest = max(highest, found.scalar() or 0)
    return int(highest)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    highest = _highest_app_id_ever(bind)
    with op.batch_alter_table("app", recreate="always",
                              table_kwargs={"sqlite_autoincrement": True}):
        pass
    op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name IN ('app', '_alembic_tmp_app')"))
    op.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('app', :seq)")
               .bindparams(seq=highest))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("app", recreate="always",
                              table_kwargs={"sqlite_autoincrement": False}):
        pass
    op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name IN ('app', '_alembic_tmp_app')"))
