"""Alembic environment: runs on the connection that `models.engine.migrate` hands in."""

from alembic import context
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` from the command line
    from sqlalchemy import create_engine
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SystemExit("alembic.ini has no sqlalchemy.url: set it to the database to compare "
                         "the models with.")
    connection = create_engine(url).connect()

context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
