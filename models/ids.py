"""The primary key of a row that the database has numbered."""

from __future__ import annotations

from typing import Protocol


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
