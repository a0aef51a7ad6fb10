"""One check per column, made from its type and constraints, for every value a restore reads.

The scratch database that checks a file is SQLite, whose loose typing would store "8" in an
integer column, a 70-bit integer, or a string over its VARCHAR length; the target (maybe
PostgreSQL) would refuse them at the write, after the check said yes, or store them
differently. So Python checks what SQLite lets through, as the target stores it: types,
lengths, integer widths, NUL characters, time zones, UUID keys, NOT NULL. Constraints
SQLite does enforce (CHECK, unique, foreign keys) are left to it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Integer,
    Numeric,
    SmallInteger,
    String,
    TypeDecorator,
)

from api.db.backup.errors import BackupError, show
from api.db.base import Base, new_id


class BadValue(Exception):
    """A value that does not fit its column; the loader adds where it was."""


def checker(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any]:
    """A function that returns ``value`` as the column binds it, or raises BadValue."""
    check = _type_checker(column, dialect)
    if _is_generated_uuid(column):
        check = _also_uuid(check)
    nullable = column.nullable

    def checked(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise BadValue("null, but the column must hold a value (NOT NULL)")
        return check(value)

    return checked


def _type_checker(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any]:
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, Boolean):
        return _boolean
    if isinstance(kind, Integer):
        return _integer(_integer_bits(kind.dialect_impl(dialect), dialect))
    if isinstance(kind, DateTime):
        return _datetime
    if isinstance(kind, JSON):
        return _json
    if isinstance(kind, String):  # VARCHAR(n) and TEXT
        return _string(kind.length)
    if isinstance(kind, Float | Numeric):
        return _number
    raise BackupError(f"this gpuinv cannot check column {column.table.name}.{column.name} ({kind})")


def _integer_bits(kind: Any, dialect: Dialect) -> int:
    """How wide the target database stores this integer column."""
    if dialect.name == "sqlite" or isinstance(kind, BigInteger):
        return 64  # SQLite's INTEGER is 64-bit whatever it is declared as
    return 16 if isinstance(kind, SmallInteger) else 32


def _is_generated_uuid(column: Column[Any]) -> bool:
    """Keys the models make with new_id (a uuid4 string) must look like one."""
    model = Base.metadata.tables.get(column.table.name)
    mine = model.c.get(column.name) if model is not None else None
    default = getattr(getattr(mine, "default", None), "arg", None)
    return getattr(default, "__wrapped__", None) is new_id


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise BadValue(f"{show(value)} is not true or false")
    return value


def _integer(bits: int) -> Callable[[Any], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: Any) -> int:
        if type(value) is not int:  # not a bool, not 8.0, not "8"
            raise BadValue(f"{show(value)} is not an integer")
        if not low <= value <= high:
            raise BadValue(f"{show(value)} does not fit a {bits}-bit integer")
        return value

    return check


def _number(value: Any) -> float | int:
    if type(value) is int or type(value) is float:
        return value
    raise BadValue(f"{show(value)} is not a number")


def _string(length: int | None) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if type(value) is not str:
            raise BadValue(f"{show(value)} is not a string")
        if length is not None and len(value) > length:
            raise BadValue(f"{show(value)} is {len(value):,} characters, over the {length} allowed")
        if "\x00" in value:  # PostgreSQL's text cannot hold it
            raise BadValue(f"{show(value)} holds a NUL character")
        return value

    return check


def _datetime(value: Any) -> datetime:
    if type(value) is not str:
        raise BadValue(f"{show(value)} is not a datetime (an ISO 8601 string)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadValue(f"{show(value)} is not an ISO 8601 datetime") from None
    if parsed.tzinfo is None:
        raise BadValue(f"{show(value)} has no time zone")
    try:
        return parsed.astimezone(UTC)  # as it is stored: UTC
    except OverflowError:
        raise BadValue(f"{show(value)} is out of range in UTC") from None


def _json(value: Any) -> Any:
    return value  # parsed from JSON, finite, not too deep, valid Unicode: storable


def _also_uuid(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(value: Any) -> Any:
        value = check(value)
        try:
            canonical = str(uuid.UUID(value))
        except ValueError:
            canonical = None
        if canonical != value:
            raise BadValue(f"{show(value)} is not a UUID (like {new_id()})")
        return value

    return checked
