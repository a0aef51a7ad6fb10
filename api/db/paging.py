"""Keyset (cursor) pagination: a page costs the same at row 100,000 as at row 1.

The cursor is the ordering it was issued for and the last row's (sort value, id), opaque
to clients; the next page starts with ``WHERE (sort, id) > (value, id)`` on an index,
never with OFFSET.
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


def encode_cursor(order: str, value: Any, row_id: str) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([order, value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, order: str, value_type: type, id_type: type = str
) -> tuple[Any, str]:
    """The (sort value, id) of a cursor issued for this very ordering, else BAD_INPUT.

    The cursor names the ordering it was issued for and its value is type-checked: a
    cursor of another ordering (or a forged one) would otherwise reach the database as a
    comparison of unlike types, a 500 on PostgreSQL and a silently wrong page on SQLite.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        issued_for, value, row_id = json.loads(base64.urlsafe_b64decode(padded))
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
        # ids are UUID strings, or integers (the audit log's sequence): the column's type
        if not _plausible(row_id, id_type):
            raise ValueError
    except Exception:
        raise bad_input(
            f"after: {cursor!r} is not a cursor this API issued", field="after"
        ) from None
    if issued_for != order:
        raise bad_input(
            f"after: {cursor!r} was issued for another list or ordering; "
            "pass back the endCursor of the same query",
            field="after",
        )
    if not _plausible(value, value_type):
        raise bad_input(f"after: {cursor!r} is not a cursor this API issued", field="after")
    return value, row_id


def _plausible(value: Any, value_type: type) -> bool:
    if value_type is str:  # base64 hid it from the request's own checks of text
        return isinstance(value, str) and _bindable(value)
    if value_type is int:  # bool is an int to Python; 64 bits is all SQLite can bind
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    if value_type is datetime:  # naive datetimes are refused by UTCDateTime
        return isinstance(value, datetime) and value.tzinfo is not None
    return isinstance(value, value_type)


def _bindable(text: str) -> bool:
    """No NUL (PostgreSQL's text holds none) and no lone surrogate (no driver encodes one)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def keyset_page(
    session: Session,
    query: Select[Any],
    id_column: InstrumentedAttribute[Any],
    sort_column: InstrumentedAttribute[Any],
    descending: bool,
    first: int,
    after: str | None,
) -> Page:
    count_query = query
    order = f"{sort_column.class_.__tablename__}.{sort_column.key}"
    if after:
        value, row_id = decode_cursor(
            after, order, sort_column.type.python_type, id_column.type.python_type
        )
        key, bound = tuple_(sort_column, id_column), tuple_(value, row_id)
        query = query.where(key < bound if descending else key > bound)
    if descending:
        query = query.order_by(sort_column.desc(), id_column.desc())
    else:
        query = query.order_by(sort_column.asc(), id_column.asc())
    rows = list(session.scalars(query.limit(first + 1)))
    has_next = len(rows) > first
    rows = rows[:first]
    cursors = [
        encode_cursor(order, getattr(r, sort_column.key), getattr(r, id_column.key)) for r in rows
    ]
    return Page(rows, cursors, has_next, count_query)
