"""`gpuinv backup FILE` / `gpuinv restore FILE`: the whole inventory, profiles, allocations,
tokens and audit log in one file, restored into an empty database row for row.

The file is gzip'd JSON lines, so it streams both ways and any tool can read it:

    {"format": "gpuinv-backup", "version": 1, "schema": "0005", "created_at": ..., ...}
    {"table": "tenant", "columns": ["id", "slug", ...]}
    ["4f0c...", "acme", ...]                      one array per row, in column order
    ...
    {"end": true, "rows": {"tenant": 3, "device": 100000, ...}}

A restore reads the file through once before it writes anything: a file cut short (no
end line, or fewer rows than the end line counts), damaged, or written by a newer schema is
refused with the reason, and the database is left as it was. It then writes every table in
one transaction. An older schema's backup is restored at that schema and migrated to head.

The change feed (device_change) is not kept: it is derived, and the database's triggers
write it afresh as the devices are restored.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, func, select, text
from sqlalchemy.orm import Session

from api.db.base import Base, UTCDateTime, utcnow
from api.db.session import alembic_config, insert_rows, session_factory, unit_of_work

FORMAT = "gpuinv-backup"
VERSION = 1
SKIPPED = {"device_change"}  # derived: the triggers rebuild it
_BATCH = 5000


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


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass
class Written:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)

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
                out.write(json.dumps([_encode(v) for v in row], separators=(",", ":")) + "\n")
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
    """What a checked file holds: its schema and, per table, columns and row count."""

    schema: str
    columns: dict[str, list[str]]
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as source:
            for number, line in enumerate(source, start=1):
                if not line.endswith("\n"):  # every line is written whole, newline included
                    raise BackupError(
                        f"{path}: cut short (line {number} is incomplete): nothing was restored"
                    )
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise BackupError(f"{path}: line {number} is not JSON ({exc.msg})") from None
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        # gzip says "Compressed file ended before the end-of-stream marker" for a cut file
        raise BackupError(f"{path}: not a complete gpuinv backup ({exc})") from None


def check(path: Path, engine: Engine) -> Plan:
    """Read the whole file and say what is wrong with it, before anything is written."""
    lines = _lines(path)
    first = next(lines, None)
    if first is None or not isinstance(first[1], dict) or first[1].get("format") != FORMAT:
        raise BackupError(f"{path}: not a gpuinv backup (no gpuinv-backup header)")
    header = first[1]
    if header.get("version") != VERSION:
        raise BackupError(
            f"{path}: backup format version {header.get('version')!r}; this gpuinv reads "
            f"version {VERSION}"
        )
    schema = header.get("schema")
    known = {
        s.revision for s in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()
    }
    if schema not in known:
        raise BackupError(
            f"{path}: written by a newer gpuinv (schema {schema!r}; this one knows up to "
            f"{head_revision(engine)}): restore it with that version or a later one"
        )
    columns: dict[str, list[str]] = {}
    counted: dict[str, int] = {}
    table: str | None = None
    width = 0
    end: dict[str, Any] | None = None
    for number, value in lines:
        if end is not None:
            raise BackupError(f"{path}: line {number} follows the end line")
        if isinstance(value, list):
            if table is None or len(value) != width:
                raise BackupError(f"{path}: line {number} is not a row of the table before it")
            counted[table] += 1
        elif isinstance(value, dict) and "table" in value:
            table, width = value["table"], len(value.get("columns", []))
            columns[table], counted[table] = list(value["columns"]), 0
        elif isinstance(value, dict) and value.get("end") is True:
            end = value
        else:
            raise BackupError(f"{path}: line {number} is not part of a gpuinv backup")
    if end is None:
        raise BackupError(f"{path}: cut short (no end line): nothing was restored")
    if end.get("rows") != counted:
        raise BackupError(
            f"{path}: the end line counts {end.get('rows')} rows, the file holds {counted}"
        )
    return Plan(schema, columns, counted)


def _decoders(table: Table, names: list[str]) -> list[Callable[[Any], Any]]:
    decoders = []
    for name in names:
        column = table.c.get(name)
        if column is None:
            raise BackupError(f"table {table.name} has no column {name!r} at this schema")
        if isinstance(column.type, UTCDateTime):
            decoders.append(lambda v: None if v is None else datetime.fromisoformat(v))
        else:
            decoders.append(lambda v: v)
    return decoders


def _is_empty(session: Session) -> list[str]:
    """The tables that hold rows (the change feed aside)."""
    return [t.name for t in tables() if session.scalar(select(func.count()).select_from(t)) != 0]


def restore(engine: Engine, path: Path, progress: Callable[[str, int], None] | None = None) -> Plan:
    """Restore ``path`` into an empty database (created if need be) and migrate to head."""
    plan = check(path, engine)
    config = alembic_config(engine)
    revision = current_revision(engine)
    if revision is None:
        command.upgrade(config, plan.schema)
    with session_factory(engine)() as session:
        occupied = _is_empty(session)
    if occupied:
        raise BackupError(
            "the database is not empty (rows in " + ", ".join(occupied) + "): restore "
            "into a new database (set GPUINV_DATABASE_URL to one)"
        )
    if revision is not None and revision != plan.schema:
        # empty, at another schema: move it to the backup's, then on to head after
        if _is_newer(engine, revision, plan.schema):
            command.downgrade(config, plan.schema)
        else:
            command.upgrade(config, plan.schema)
    metadata = _metadata_at(engine)
    for name, columns in plan.columns.items():  # every table and column, before writing
        table = metadata.tables.get(name)
        if table is None:
            raise BackupError(f"{path}: table {name!r} does not exist at schema {plan.schema}")
        _decoders(table, columns)
    with unit_of_work(session_factory(engine)) as session:
        table, names, decoders, batch = None, [], [], []
        for _, value in _lines(path):
            if isinstance(value, list):
                batch.append({n: d(v) for n, d, v in zip(names, decoders, value, strict=True)})
                if len(batch) >= _BATCH:
                    insert_rows(session, table, batch)
                    batch = []
                    if progress:
                        progress(table.name, _BATCH)
            elif isinstance(value, dict) and "table" in value:
                if batch:
                    insert_rows(session, table, batch)
                    if progress:
                        progress(table.name, len(batch))
                    batch = []
                table = metadata.tables.get(value["table"])
                if table is None:
                    raise BackupError(f"this gpuinv has no table {value['table']!r}")
                names = value["columns"]
                decoders = _decoders(table, names)
        if batch:
            insert_rows(session, table, batch)
            if progress:
                progress(table.name, len(batch))
        _reset_sequences(session)
    command.upgrade(config, "head")
    return plan


def _is_newer(engine: Engine, revision: str, than: str) -> bool:
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    order = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    return order.index(revision) > order.index(than)


def _metadata_at(engine: Engine):
    """The tables as the database has them now (the backup's schema), not as the models
    say (head): an older backup has older columns."""
    from sqlalchemy import MetaData

    metadata = MetaData()
    metadata.reflect(engine)
    # Keep our types where the models define the column (UTC datetimes, JSON), so rows
    # are bound exactly as the application binds them.
    for table in metadata.tables.values():
        model = Base.metadata.tables.get(table.name)
        if model is None:
            continue
        for column in table.columns:
            if column.name in model.c:
                column.type = model.c[column.name].type
    return metadata


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
