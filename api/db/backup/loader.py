"""The lines after a backup's header, read in order into the scratch database.

The loader follows the file's structure (a table line, its rows, the next table line, the
end line with its counts), checks each value with its column's check, and inserts the rows
in batches so that the scratch database's own constraints (CHECK, unique keys, foreign
keys) check the rest: a constraint added by a migration is checked with no change here.
A batch that fails is inserted again row by row, so that the refusal names its line."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import CheckConstraint, Connection, Dialect, MetaData, Table, insert, select
from sqlalchemy.exc import IntegrityError

from api.db.backup.column_checks import BadValue, checker
from api.db.backup.contents import BATCH_BYTES, BATCH_ROWS, NOT_DATA, SKIPPED
from api.db.backup.errors import BackupError, first_line, show


@dataclass
class Plan:
    """What a checked file holds: its schema and, per table, columns, row count and the
    length of its longest line (bytes)."""

    schema: str
    columns: dict[str, list[str]]
    rows: dict[str, int]
    longest: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


class Loader:
    """Pass 1's state: which table the file is in, the checks of its columns, and the
    rows on their way into the scratch database."""

    def __init__(
        self,
        path: Path,
        schema: str,
        metadata: MetaData,
        dialect: Dialect,
        connection: Connection,
        say: Callable[[str], None],
    ) -> None:
        self.path, self.schema, self.dialect = path, schema, dialect
        self.connection, self.say = connection, say
        self.expected = {n: t for n, t in metadata.tables.items() if n not in NOT_DATA}
        self.columns: dict[str, list[str]] = {}
        self.counted: dict[str, int] = {}
        self.longest: dict[str, int] = {}
        self.started: dict[str, int] = {}  # table -> the line of its table line
        self.table: Table | None = None
        self.checks: list[Callable[[Any], Any]] = []
        self.batch: list[tuple[int, dict[str, Any]]] = []
        self.batch_bytes = 0
        self.end: dict[str, Any] | None = None

    def refuse(self, number: int, problem: str) -> BackupError:
        return BackupError(f"{self.path}: line {number}: {problem}")

    def take(self, number: int, size: int, value: Any) -> None:
        if self.end is not None:
            raise self.refuse(number, "a line after the end line")
        if isinstance(value, list):
            self._row(number, size, value)
        elif isinstance(value, dict) and "table" in value:
            self._table_line(number, value)
        elif isinstance(value, dict) and "end" in value:
            self._end_line(number, value)
        else:
            raise self.refuse(
                number, f"{_kind(value)} where a row (a JSON array) or a table line belongs"
            )

    def _table_line(self, number: int, value: dict[str, Any]) -> None:
        if set(value) != {"table", "columns"}:
            raise self.refuse(
                number, f"a table line has keys table and columns, not {show(sorted(value))}"
            )
        name, columns = value["table"], value["columns"]
        table = self._known_table(number, name)
        self._check_columns(number, table, columns)
        self._flush()
        self.table, self.columns[name], self.counted[name] = table, columns, 0
        self.started[name], self.longest[name] = number, 0
        self.checks = [checker(table.c[c], self.dialect) for c in columns]

    def _known_table(self, number: int, name: Any) -> Table:
        if not isinstance(name, str) or (name not in self.expected and name not in NOT_DATA):
            raise self.refuse(number, f"unknown table {show(name)} (not at schema {self.schema})")
        if name == "alembic_version":
            raise self.refuse(number, "table alembic_version is the schema's bookkeeping, not data")
        if name in SKIPPED:
            raise self.refuse(number, f"table {name} is derived and never backed up")
        if name in self.started:
            raise self.refuse(number, f"table {name} again (first at line {self.started[name]})")
        return self.expected[name]

    def _check_columns(self, number: int, table: Table, columns: Any) -> None:
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise self.refuse(number, f"table {table.name}: columns must be a list of names")
        for name in columns:
            if name not in table.c:
                raise self.refuse(
                    number,
                    f"table {table.name} has no column {show(name)} at schema {self.schema}",
                )
            if columns.count(name) > 1:
                raise self.refuse(number, f"table {table.name}: column {name} twice")
        missing = [c.name for c in table.columns if c.name not in columns]
        if missing:
            raise self.refuse(number, f"table {table.name}: column {', '.join(missing)} missing")

    def _row(self, number: int, size: int, values: list[Any]) -> None:
        if self.table is None:
            raise self.refuse(number, "a row before any table line")
        names = self.columns[self.table.name]
        if len(values) != len(names):
            raise self.refuse(
                number, f"table {self.table.name}: {len(values)} values for {len(names)} columns"
            )
        row = {}
        for name, check, value in zip(names, self.checks, values, strict=True):
            try:
                row[name] = check(value)
            except BadValue as bad:
                raise self.refuse(
                    number, f"table {self.table.name}, column {name}: {bad}"
                ) from None
        self.batch.append((number, row))
        self.batch_bytes += size
        self.counted[self.table.name] += 1
        self.longest[self.table.name] = max(self.longest[self.table.name], size)
        if len(self.batch) >= BATCH_ROWS or self.batch_bytes >= BATCH_BYTES:
            self._flush()

    def _end_line(self, number: int, value: dict[str, Any]) -> None:
        if set(value) != {"end", "rows"} or value["end"] is not True:
            raise self.refuse(
                number, f'an end line is {{"end": true, "rows": {{...}}}}, not {show(value)}'
            )
        if not isinstance(value["rows"], dict):
            raise self.refuse(number, "the end line's rows are not a JSON object")
        self._flush()
        self.end = value

    def _flush(self) -> None:
        """Put the waiting rows into the scratch database: its constraints check them."""
        if not self.batch:
            return
        assert self.table is not None
        try:
            with self.connection.begin_nested():
                self.connection.execute(insert(self.table), [row for _, row in self.batch])
        except IntegrityError:
            self._refuse_the_failing_row()
        self.say(f"checking {self.table.name}: {self.counted[self.table.name]:,} rows")
        self.batch, self.batch_bytes = [], 0

    def _refuse_the_failing_row(self) -> None:
        """The batch failed as a whole; insert its rows one by one to name the line."""
        assert self.table is not None
        for number, row in self.batch:
            try:
                with self.connection.begin_nested():
                    self.connection.execute(insert(self.table), row)
            except IntegrityError as exc:
                reason = _explain(self.connection, self.table, row, first_line(exc))
                raise self.refuse(number, f"table {self.table.name}: {reason}") from None
        raise self.refuse(self.batch[0][0], f"table {self.table.name}: rows refused together")

    def finish(self) -> Plan:
        """The end line's counts against the rows read, and every table there."""
        if self.end is None:
            raise BackupError(f"{self.path}: cut short (no end line): nothing was restored")
        said = self.end["rows"]
        unknown = sorted(set(said) - set(self.counted))
        if unknown:
            raise BackupError(
                f"{self.path}: the end line counts rows of table {show(unknown[0])}, which the "
                "file does not hold"
            )
        for name, counted in self.counted.items():
            if said.get(name) != counted:
                raise BackupError(
                    f"{self.path}: the end line counts {show(said.get(name))} rows of table "
                    f"{name}; the file holds {counted}"
                )
        missing = sorted(set(self.expected) - set(self.counted))
        if missing:
            raise BackupError(
                f"{self.path}: no table {', '.join(missing)} (a backup holds every table)"
            )
        return Plan(self.schema, self.columns, self.counted, self.longest)


def _explain(connection: Connection, table: Table, row: dict[str, Any], error: str) -> str:
    """SQLite's reason for refusing ``row``, with the values it is about."""
    if error.startswith("CHECK constraint failed: "):
        name = error.removeprefix("CHECK constraint failed: ")
        for check in table.constraints:
            if isinstance(check, CheckConstraint) and check.name == name:
                condition = str(check.sqltext)
                named = [c for c in row if re.search(rf"\b{re.escape(c)}\b", condition)]
                values = ", ".join(f"{c}={show(row[c])}" for c in named)
                return f"{values} breaks CHECK ({condition}) [{name}]"
    if error.startswith("UNIQUE constraint failed: ") and "index '" not in error:
        named = [
            c.split(".")[-1] for c in error.removeprefix("UNIQUE constraint failed: ").split(", ")
        ]
        values = ", ".join(f"{c}={show(row.get(c))}" for c in named)
        return f"{values} again: an earlier row has the same, and it must be unique"
    if error == "FOREIGN KEY constraint failed":
        for key in table.foreign_keys:
            value = row.get(key.parent.name)
            parent = key.column
            found = (
                value is None
                or connection.execute(select(parent).where(parent == value).limit(1)).first()
            )
            if not found:
                return (
                    f"{key.parent.name}={show(value)} refers to no {parent.table.name} row "
                    "on an earlier line"
                )
    return error


def _kind(value: Any) -> str:
    names = {dict: "a JSON object", str: "a JSON string", bool: "true or false"}
    if value is None:
        return "null"
    return names.get(type(value), "a JSON number")
