"""Keyset (cursor) pagination: a page costs the same at row 100,000 as at row 1.

The cursor is the last row's (sort value, id), opaque to clients; the next page starts
with ``WHERE (sort, id) > (value, id)`` on an index, never with OFFSET.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.domain.errors import bad_input


@dataclass
class Page:
    rows: Sequence[Any]
    cursors: list[str]
    has_next: bool
    count_query: Select[Any]

    def total(self, session: Session) -> int:
        return session.scalar(select(func.count()).select_from(self.count_query.subquery())) or 0


def encode_cursor(value: Any, row_id: str) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, row_id = json.loads(base64.urlsafe_b64decode(padded))
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
        if not isinstance(row_id, str):
            raise ValueError
        return value, row_id
    except Exception:
        raise bad_input(f"after: {cursor!r} is not a cursor this API issued", field="after") \
            from None


def keyset_page(session: Session, query: Select[Any], id_column: InstrumentedAttribute[Any],
                sort_column: InstrumentedAttribute[Any], descending: bool, first: int,
                after: str | None) -> Page:
    count_query = query
    if after:
        value, row_id = decode_cursor(after)
        key, bound = tuple_(sort_column, id_column), tuple_(value, row_id)
        query = query.where(key < bound if descending else key > bound)
    if descending:
        query = query.order_by(sort_column.desc(), id_column.desc())
    else:
        query = query.order_by(sort_column.asc(), id_column.asc())
    rows = list(session.scalars(query.limit(first + 1)))
    has_next = len(rows) > first
    rows = rows[:first]
    cursors = [encode_cursor(getattr(r, sort_column.key), getattr(r, id_column.key))
               for r in rows]
    return Page(rows, cursors, has_next, count_query)
