"""`gpuinv backup FILE` / `gpuinv restore FILE`: the whole inventory, profiles, allocations,
tokens and audit log in one file, restored into an empty database row for row.

The file is gzip'd JSON lines, so it streams both ways and any tool can read it:

    {"format": "gpuinv-backup", "version": 1, "schema": "0005", "created_at": ..., ...}
    {"table": "tenant", "columns": ["id", "slug", ...]}
    ["4f0c...", "acme", ...]                      one array per row, in column order
    ...
    {"end": true, "rows": {"tenant": 3, "device": 100000, ...}}

A restore never trusts the file. It goes in two passes:

1. Check: read the file once, line by line (no line longer than ``max_line`` bytes is ever
   held, so a gzip bomb costs that much memory and no more), and load it into a scratch
   SQLite database in a temporary directory, built by our own migrations at the schema the
   file names. Python checks what SQLite's loose typing would let through (types, lengths,
   integer ranges of the target database, JSON, datetimes, UUIDs, NOT NULL); the scratch
   database checks the rest with the schema's own constraints (CHECK, unique keys and
   partial unique indexes, foreign keys), so a new constraint is checked without a change
   here. The scratch database is then migrated to head, which tries an older schema's data
   migrations too.
2. Write: only then is the target touched: its schema created (or an empty one migrated)
   and every row copied from the scratch database in one transaction (into SQLite by
   INSERT ... SELECT from it attached).

A bad file is refused with one line naming the line, table, column and value, and the
target is left as it was: no rows and, if it had none, no schema. The scratch database
takes about as much disk as the restored one (in TMPDIR). Should the write itself fail
(the database gone, its disk full), its rows are rolled back and the empty schema stays,
which a new restore accepts.

The change feed (device_change) is not kept: it is derived, and the database's triggers
write it afresh as the devices are restored.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import re
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    TypeDecorator,
    event,
    insert,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy import table as table_named
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from api.db.base import Base, UTCDateTime, new_id, utcnow
from api.db.session import (
    alembic_config,
    insert_rows,
    make_engine,
    session_factory,
    upgrade_to_head,
)

FORMAT = "gpuinv-backup"
VERSION = 1
SKIPPED = {"device_change"}  # derived: the triggers rebuild it
NOT_DATA = SKIPPED | {"alembic_version"}
_BATCH = 5000

# The longest line a restore reads, in bytes. Memory is bounded by it: a longer line (a
# gzip bomb is one) is refused once this much of it has been read, and a line under it
# costs at most about 30 bytes of memory per byte once parsed (a line of tiny JSON objects;
# ours cost far less). Our longest lines, allocations and their audit events, hold a
# device document of some 1.5 KB per device allocated.
MAX_LINE = 4 * 2**20
# JSON deeper than this is refused: ours nests a handful of levels, and Python's json
# module fails on about a thousand (RecursionError), at a depth that depends on the caller.
MAX_DEPTH = 100
# Rows are written in batches of at most this much source text (and _BATCH rows), so a
# batch of big rows costs no more memory than a batch of small ones.
_BATCH_BYTES = 2**20


class BackupError(Exception):
    """A file that cannot be restored, or a database that must not be restored into."""


def tables() -> list[Table]:
    """Every table worth keeping, parents before children."""
    return [t for t in Base.metadata.sorted_tables if t.name not in SKIPPED]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def known_revisions(engine: Engine) -> list[str]:
    """Every schema this gpuinv knows, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    return [s.revision for s in reversed(list(scripts.walk_revisions()))]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass
class Written:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    longest: int = 0  # bytes of the longest line: a restore refuses lines over its limit

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def backup(
    engine: Engine, path: Path, progress: Callable[[str, int], None] | None = None
) -> Written:
    """Write the database to ``path`` (gzip'd JSON lines) from one consistent snapshot."""
    revision = current_revision(engine)
    if revision != head_revision(engine):
        raise BackupError(
            f"the database is at schema {revision or 'none'}, not {head_revision(engine)}: "
            "run `gpuinv db upgrade` first"
        )
    written = Written(path)
    partial = path.with_name(path.name + ".partial")
    with session_factory(engine)() as session, gzip.open(partial, "wt", encoding="utf-8") as out:
        # Every table from one snapshot: the session holds one transaction throughout
        # (on SQLite a read transaction in WAL mode is a snapshot by itself).
        if engine.dialect.name == "postgresql":
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        _line(out, _header(revision))
        for table in tables():
            columns = [c.name for c in table.columns]
            _line(out, {"table": table.name, "columns": columns})
            count = 0
            ordered = select(*table.columns).order_by(*table.primary_key.columns)
            for row in session.execute(ordered.execution_options(yield_per=_BATCH)):
                line = json.dumps([_encode(v) for v in row], separators=(",", ":"))
                out.write(line + "\n")
                written.longest = max(written.longest, len(line.encode()))
                count += 1
                if progress and count % _BATCH == 0:
                    progress(table.name, count)
            written.rows[table.name] = count
            if progress:
                progress(table.name, count)
        _line(out, {"end": True, "rows": written.rows})
    partial.replace(path)  # never a half-written file under the name asked for
    return written


def _header(revision: str | None) -> dict[str, Any]:
    from api import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "schema": revision,
        "created_at": utcnow().isoformat(),
        "gpuinv": __version__,
    }


def _line(out: IO[str], value: Any) -> None:
    out.write(json.dumps(value, separators=(",", ":")) + "\n")


# -- restore ----------------------------------------------------------------------------


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


def restore(
    engine: Engine,
    path: Path,
    progress: Callable[[str], None] | None = None,
    *,
    max_line: int = MAX_LINE,
) -> Plan:
    """Restore ``path`` into an empty database (created if need be) at the newest schema.

    Nothing is written to ``engine`` until the whole file has been checked."""
    say = progress or (lambda _: None)
    _refuse_a_used_database(engine)
    try:
        workdir = tempfile.TemporaryDirectory(prefix="gpuinv-restore-")
    except OSError as exc:
        raise BackupError(f"cannot make a scratch directory to check the file in: {exc}") from None
    with workdir:
        scratch = _scratch_engine(Path(workdir.name) / "check.db")
        try:
            plan = _check(path, engine.dialect, scratch, max_line, say)
            _write(engine, scratch, plan, say)
        finally:
            scratch.dispose()
    return plan


# -- the target -------------------------------------------------------------------------


def _refuse_a_used_database(engine: Engine) -> None:
    """A restore goes into a new database, or an empty one at a schema we know."""
    try:
        names = set(inspect(engine).get_table_names())
        revision = current_revision(engine)
        with engine.connect() as connection:
            occupied = [
                name
                for name in sorted(names - NOT_DATA)
                if connection.execute(
                    select(literal_column("1")).select_from(table_named(name)).limit(1)
                ).first()
            ]
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot read the database: {_first_line(exc)}") from None
    if occupied:
        raise BackupError(
            "the database is not empty (rows in " + ", ".join(occupied) + "): restore "
            "into a new database (set GPUINV_DATABASE_URL to one)"
        )
    if revision is None and names:
        raise BackupError(
            f"the database holds tables ({', '.join(sorted(names))}) but no gpuinv schema: "
            "restore into a new database"
        )
    if revision is not None and revision not in known_revisions(engine):
        raise BackupError(
            f"the database is at schema {revision}, which this gpuinv does not know: restore "
            "into a new database"
        )


def _write(target: Engine, scratch: Engine, plan: Plan, say: Callable[[str], None]) -> None:
    """Pass 2: create the target's schema, copy every checked row into it in one
    transaction, and let PostgreSQL's sequences continue after the restored keys."""
    try:
        upgrade_to_head(target)
        if target.dialect.name == "sqlite":
            _copy_attached(target, scratch, say)
            return
        with session_factory(target)() as session, session.begin():
            with scratch.connect() as source:
                for table in tables():
                    _copy(source, session, table, plan, say)
            _reset_sequences(session)
    except (SQLAlchemyError, CommandError) as exc:
        raise BackupError(
            f"writing to the database failed ({_first_line(exc)}): no row was restored; the "
            "database has the empty schema, which a new `gpuinv restore` accepts"
        ) from None


def _copy_attached(target: Engine, scratch: Engine, say: Callable[[str], None]) -> None:
    """SQLite to SQLite: both databases store values alike (SQLAlchemy wrote both), so
    INSERT ... SELECT from the attached scratch database copies the rows without a round
    trip through Python: several times faster."""
    path = scratch.url.database
    with target.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("ATTACH DATABASE ? AS scratch", (path,))  # not within a transaction
        try:
            with connection.begin():
                for table in tables():
                    columns = ", ".join(f'"{c.name}"' for c in table.columns)
                    connection.exec_driver_sql(
                        f'INSERT INTO main."{table.name}" ({columns}) '
                        f'SELECT {columns} FROM scratch."{table.name}"'
                    )
                    say(f"restoring {table.name}")
        finally:
            driver.execute("DETACH DATABASE scratch")


def _copy(
    source: Connection, session: Session, table: Table, plan: Plan, say: Callable[[str], None]
) -> None:
    longest = plan.longest.get(table.name) or max(plan.longest.values(), default=1)
    per_batch = max(1, min(_BATCH, _BATCH_BYTES // max(longest, 1)))
    done = 0
    result = source.execution_options(yield_per=per_batch).execute(select(*table.columns))
    for rows in result.mappings().partitions():
        insert_rows(session, table, [dict(row) for row in rows])
        done += len(rows)
        say(f"restoring {table.name}: {done:,} rows")


def _reset_sequences(session: Session) -> None:
    """Restored integer keys were written as given; PostgreSQL's sequences must continue
    after them (SQLite's AUTOINCREMENT follows the largest key by itself)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in tables():
        for column in table.primary_key.columns:
            if column.autoincrement is True or (
                column.autoincrement == "auto" and column.type.python_type is int
            ):
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                        f"COALESCE((SELECT max({column.name}) FROM {table.name}), 0) + 1, false)"
                    )
                )


def _first_line(exc: BaseException) -> str:
    """A database error's own message, without SQLAlchemy's statement and links."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


# -- pass 1: the file, checked into a scratch database --------------------------------


def _check(
    path: Path, dialect: Dialect, scratch: Engine, max_line: int, say: Callable[[str], None]
) -> Plan:
    """Read the whole file once into ``scratch``; raise BackupError at the first fault
    found (a value's type at its line; a constraint when its batch reaches the scratch
    database, which may be a few lines later)."""
    with contextlib.closing(_lines(path, max_line)) as lines:
        schema = _read_header(path, next(lines, None), scratch)
        try:
            command.upgrade(alembic_config(scratch), schema)
            if schema == head_revision(scratch):  # a later migration may expect the triggers
                _drop_change_feed(scratch)
            with scratch.begin() as connection:
                loader = _Loader(path, schema, _schema_at(scratch), dialect, connection, say)
                for number, size, value in lines:
                    loader.take(number, size, value)
                plan = loader.finish()
        except SQLAlchemyError as exc:
            raise BackupError(
                f"{path}: checking it in a scratch database failed ({_first_line(exc)})"
            ) from None
    if schema != head_revision(scratch):
        _migrate_scratch(path, scratch, schema)
    return plan


def _scratch_engine(path: Path) -> Engine:
    """The scratch database is thrown away after the restore: it need not survive a
    crash, so it is written without fsync."""
    engine = make_engine(f"sqlite:///{path}", pool_size=1)
    event.listen(engine, "connect", _without_fsync)
    return engine


def _without_fsync(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=OFF")


def _drop_change_feed(scratch: Engine) -> None:
    """The change-feed triggers only log changed devices into device_change, which a
    restore skips: without them the scratch database is written a third faster."""
    with scratch.begin() as connection:
        triggers = connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%device_change%'"
        ).scalars()
        for name in list(triggers):
            connection.exec_driver_sql(f'DROP TRIGGER "{name}"')


def _migrate_scratch(path: Path, scratch: Engine, schema: str) -> None:
    """An older schema's rows go through our data migrations here first, so that a
    migration that fails on them fails before the target is touched."""
    try:
        upgrade_to_head(scratch)
    except Exception as exc:  # a migration may raise anything; say which and stop
        raise BackupError(
            f"{path}: its rows (schema {schema}) cannot be migrated to the newest schema "
            f"({_first_line(exc)})"
        ) from None


def _read_header(path: Path, first: tuple[int, int, Any] | None, scratch: Engine) -> str:
    """The file's first line; returns the schema it names, one this gpuinv knows."""
    header = first[2] if first else None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{path}: not a gpuinv backup (line 1 is no gpuinv-backup header)")
    if header.get("version") != VERSION:
        raise BackupError(
            f"{path}: backup format version {_show(header.get('version'))}; this gpuinv reads "
            f"version {VERSION}"
        )
    schema = header.get("schema")
    if not isinstance(schema, str):
        raise BackupError(f"{path}: the header names no schema ({_show(schema)})")
    if schema not in known_revisions(scratch):
        raise BackupError(
            f"{path}: written by a newer gpuinv (schema {_show(schema)}; this one knows up to "
            f"{head_revision(scratch)}): restore it with that version or a later one"
        )
    return schema


def _schema_at(scratch: Engine) -> MetaData:
    """The tables as the migrations made them at the file's schema (an older backup has
    older columns), with our column types where the models still have the column (UTC
    datetimes, JSON, BigInteger on PostgreSQL)."""
    metadata = MetaData()
    metadata.reflect(scratch)
    for table in metadata.tables.values():
        model = Base.metadata.tables.get(table.name)
        for column in table.columns:
            mine = model.c.get(column.name) if model is not None else None
            if mine is not None:
                column.type = mine.type
            elif isinstance(column.type, DateTime):
                column.type = UTCDateTime()  # every datetime of ours is UTC
    return metadata


# -- reading lines ------------------------------------------------------------------------


def _lines(path: Path, max_line: int) -> Iterator[tuple[int, int, Any]]:
    """(line number, bytes, JSON value) for every line of the gzip'd file."""
    for number, raw in _raw_lines(path, max_line):
        yield number, len(raw), _parse(path, number, raw)


def _raw_lines(path: Path, max_line: int) -> Iterator[tuple[int, bytes]]:
    """Every line whole, newline included, but never more than ``max_line`` bytes of one
    in memory: a longer line is refused when that much of it has been decompressed."""
    try:
        with gzip.open(path, "rb") as source:
            number = 0
            while line := source.readline(max_line + 1):
                number += 1
                if not line.endswith(b"\n"):  # every line is written whole, newline included
                    if len(line) > max_line:
                        raise BackupError(
                            f"{path}: line {number} is longer than {_size(max_line)}, the "
                            "longest line a restore reads (--max-line-mib sets it)"
                        )
                    raise BackupError(
                        f"{path}: cut short (line {number} is incomplete): nothing was restored"
                    )
                yield number, line
    except (EOFError, OSError, zlib.error) as exc:
        # gzip says "Compressed file ended before the end-of-stream marker" for a cut file,
        # "CRC check failed" or "invalid ..." for a damaged one
        raise BackupError(f"{path}: not a complete gpuinv backup ({exc})") from None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _parse(path: Path, number: int, raw: bytes) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackupError(
            f"{path}: line {number} is not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
            f"{exc.start + 1})"
        ) from None
    try:
        value = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path}: line {number} is not JSON ({exc.msg})") from None
    except RecursionError:
        raise BackupError(
            f"{path}: line {number} nests JSON deeper than {MAX_DEPTH} levels"
        ) from None
    except ValueError as exc:  # an integer of over 4,300 digits, NaN, Infinity, 1e999
        reason = str(exc).split(";")[0]
        raise BackupError(f"{path}: line {number} holds a number JSON cannot ({reason})") from None
    # Only a line with that many brackets can nest that deep, and only one with a \uD8xx
    # escape can hold half a surrogate pair: the (slower) walk is for those alone.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH or _SURROGATE_ESCAPE.search(raw):
        problem = _nesting_or_text_problem(value)
        if problem:
            raise BackupError(f"{path}: line {number} {problem}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"{literal[:30]} is too large for a float")
    return number


def _nesting_or_text_problem(value: Any) -> str | None:
    """What makes a parsed line unstorable: JSON deeper than MAX_DEPTH, or a string with a
    lone surrogate (valid JSON, not valid Unicode: neither database can store it).

    A stack of iterators, one per open container: memory grows with the depth only."""
    stack = [iter([value])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str) and not _is_unicode(item):
                return f"holds a string that is not valid Unicode (a lone surrogate): {_show(item)}"
            if isinstance(item, list | dict):
                if len(stack) > MAX_DEPTH:
                    return f"nests JSON deeper than {MAX_DEPTH} levels"
                stack.append(iter(item) if isinstance(item, list) else _keys_and_values(item))
                break
        else:
            stack.pop()
    return None


def _keys_and_values(item: dict[str, Any]) -> Iterator[Any]:
    yield from item
    yield from item.values()


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- the file's structure, its values, and the scratch database ---------------------------


class _Bad(Exception):
    """A value that does not fit its column; the loader adds where it was."""


class _Loader:
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
                number, f"a table line has keys table and columns, not {_show(sorted(value))}"
            )
        name, columns = value["table"], value["columns"]
        table = self._known_table(number, name)
        self._check_columns(number, table, columns)
        self._flush()
        self.table, self.columns[name], self.counted[name] = table, columns, 0
        self.started[name], self.longest[name] = number, 0
        self.checks = [_checker(table.c[c], self.dialect) for c in columns]

    def _known_table(self, number: int, name: Any) -> Table:
        if not isinstance(name, str) or (name not in self.expected and name not in NOT_DATA):
            raise self.refuse(number, f"unknown table {_show(name)} (not at schema {self.schema})")
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
                    f"table {table.name} has no column {_show(name)} at schema {self.schema}",
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
            except _Bad as bad:
                raise self.refuse(
                    number, f"table {self.table.name}, column {name}: {bad}"
                ) from None
        self.batch.append((number, row))
        self.batch_bytes += size
        self.counted[self.table.name] += 1
        self.longest[self.table.name] = max(self.longest[self.table.name], size)
        if len(self.batch) >= _BATCH or self.batch_bytes >= _BATCH_BYTES:
            self._flush()

    def _end_line(self, number: int, value: dict[str, Any]) -> None:
        if set(value) != {"end", "rows"} or value["end"] is not True:
            raise self.refuse(
                number, f'an end line is {{"end": true, "rows": {{...}}}}, not {_show(value)}'
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
                reason = _explain(self.connection, self.table, row, _first_line(exc))
                raise self.refuse(number, f"table {self.table.name}: {reason}") from None
        raise self.refuse(self.batch[0][0], f"table {self.table.name}: rows refused together")

    def finish(self) -> Plan:
        if self.end is None:
            raise BackupError(f"{self.path}: cut short (no end line): nothing was restored")
        said = self.end["rows"]
        unknown = sorted(set(said) - set(self.counted))
        if unknown:
            raise BackupError(
                f"{self.path}: the end line counts rows of table {_show(unknown[0])}, which the "
                "file does not hold"
            )
        for name, counted in self.counted.items():
            if said.get(name) != counted:
                raise BackupError(
                    f"{self.path}: the end line counts {_show(said.get(name))} rows of table "
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
                values = ", ".join(f"{c}={_show(row[c])}" for c in named)
                return f"{values} breaks CHECK ({condition}) [{name}]"
    if error.startswith("UNIQUE constraint failed: ") and "index '" not in error:
        named = [
            c.split(".")[-1] for c in error.removeprefix("UNIQUE constraint failed: ").split(", ")
        ]
        values = ", ".join(f"{c}={_show(row.get(c))}" for c in named)
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
                    f"{key.parent.name}={_show(value)} refers to no {parent.table.name} row "
                    "on an earlier line"
                )
    return error


# -- one check per column, from its type and constraints --------------------------------


def _checker(column: Column, dialect: Dialect) -> Callable[[Any], Any]:
    """A function that returns ``value`` as the column binds it, or raises _Bad."""
    check = _type_checker(column, dialect)
    if _is_generated_uuid(column):
        check = _also_uuid(check)
    nullable = column.nullable

    def checked(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise _Bad("null, but the column must hold a value (NOT NULL)")
        return check(value)

    return checked


def _type_checker(column: Column, dialect: Dialect) -> Callable[[Any], Any]:
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


def _is_generated_uuid(column: Column) -> bool:
    """Keys the models make with new_id (a uuid4 string) must look like one."""
    model = Base.metadata.tables.get(column.table.name)
    mine = model.c.get(column.name) if model is not None else None
    default = getattr(getattr(mine, "default", None), "arg", None)
    return getattr(default, "__wrapped__", None) is new_id


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _Bad(f"{_show(value)} is not true or false")
    return value


def _integer(bits: int) -> Callable[[Any], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: Any) -> int:
        if type(value) is not int:  # not a bool, not 8.0, not "8"
            raise _Bad(f"{_show(value)} is not an integer")
        if not low <= value <= high:
            raise _Bad(f"{_show(value)} does not fit a {bits}-bit integer")
        return value

    return check


def _number(value: Any) -> float | int:
    if type(value) not in (int, float):
        raise _Bad(f"{_show(value)} is not a number")
    return value


def _string(length: int | None) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if type(value) is not str:
            raise _Bad(f"{_show(value)} is not a string")
        if length is not None and len(value) > length:
            raise _Bad(f"{_show(value)} is {len(value):,} characters, over the {length} allowed")
        if "\x00" in value:  # PostgreSQL's text cannot hold it
            raise _Bad(f"{_show(value)} holds a NUL character")
        return value

    return check


def _datetime(value: Any) -> datetime:
    if type(value) is not str:
        raise _Bad(f"{_show(value)} is not a datetime (an ISO 8601 string)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"{_show(value)} is not an ISO 8601 datetime") from None
    if parsed.tzinfo is None:
        raise _Bad(f"{_show(value)} has no time zone")
    try:
        return parsed.astimezone(UTC)  # as it is stored: UTC
    except OverflowError:
        raise _Bad(f"{_show(value)} is out of range in UTC") from None


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
            raise _Bad(f"{_show(value)} is not a UUID (like {new_id()})")
        return value

    return checked


def _kind(value: Any) -> str:
    names = {dict: "a JSON object", str: "a JSON string", bool: "true or false"}
    if value is None:
        return "null"
    return names.get(type(value), "a JSON number")


def _show(value: Any, limit: int = 60) -> str:
    """A value in a one-line message: its repr, shortened."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"
