"""The SQL statements a piece of code sends, in order, as the database receives them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event


@dataclass
class Sent:
    statement: str
    parameters: Any

    @property
    def opening(self) -> str:
        """Its first words: "INSERT INTO allocation", "UPDATE device", "BEGIN"."""
        words = self.statement.split()
        return " ".join(words[:3] if words[0].upper() == "INSERT" else words[:2])

    @property
    def is_begin(self) -> bool:
        return self.statement.strip().upper() in ("BEGIN", "BEGIN IMMEDIATE")


@contextmanager
def statements_sent(engine: Engine) -> Iterator[list[Sent]]:
    """Every statement ``engine``'s connections send meanwhile, in order (a BEGIN that
    SQLite's connections send as a statement included; psycopg's, which travels with the
    first statement, is not one)."""
    sent: list[Sent] = []

    def record(_conn, _cursor, statement: str, parameters: Any, *_args) -> None:
        sent.append(Sent(statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
