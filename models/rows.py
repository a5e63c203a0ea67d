"""Typed access to what the ORM leaves untyped: a numbered row's id, a table class's Table."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Table, inspect
from sqlmodel import SQLModel


class Numbered(Protocol):
    """A table row with an integer primary key, None until the row is flushed."""

    @property
    def id(self) -> int | None: ...


def id_of(row: Numbered) -> int:
    """`row.id` for a row that was loaded or flushed. Raises ValueError for a row the
    database has not numbered yet (flush the session first)."""
    if row.id is None:
        raise ValueError(f"This {type(row).__name__} has no id yet: it was neither loaded nor "
                         "flushed, so flush the session before using its id.")
    return row.id


def table_of(model: type[SQLModel]) -> Table:
    """The Core `Table` behind a table class (`table=True`), for set-based statements."""
    table = inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to one table.")
    return table
