"""Helpers for tests that work on the database directly: a small fleet, and the
statements a piece of code sends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from api.db import inventory
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.vocabulary import Kind


def h100_servers(db: sessionmaker[Session], count: int) -> list[str]:
    """``count`` idle servers gpu-0, gpu-1, … of 8 H100 and 64 CPUs each; their ids."""
    with unit_of_work(db) as session:
        return [
            inventory.create(
                session,
                cli_principal(),
                Kind.BAREMETAL,
                {
                    "hostname": f"gpu-{n}",
                    "totalcpu": 64,
                    "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
                },
            ).id
            for n in range(count)
        ]


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
