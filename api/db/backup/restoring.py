"""`gpuinv restore FILE`: the target database refused unless new or empty, the file checked
whole (pass 1, check.py), and only then the target written (pass 2, here).

Pass 2 creates the target's schema (or migrates an empty one) and copies every checked row
from the scratch database in one transaction, so a bad file leaves the target as it was: no
rows and, if it had none, no schema. Should the write itself fail (the database gone, its
disk full), its rows are rolled back and the empty schema stays, which a new restore
accepts."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from alembic.util import CommandError
from sqlalchemy import Connection, Engine, Table, inspect, literal_column, select, text
from sqlalchemy import table as table_named
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.db.backup.check import check_file, scratch_engine
from api.db.backup.contents import (
    BATCH_BYTES,
    BATCH_ROWS,
    NOT_DATA,
    current_revision,
    known_revisions,
    tables,
)
from api.db.backup.errors import BackupError, first_line
from api.db.backup.fileformat import MAX_LINE
from api.db.backup.loader import Plan
from api.db.session import insert_rows, session_factory, upgrade_to_head


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
        scratch = scratch_engine(Path(workdir.name) / "check.db")
        try:
            plan = check_file(path, engine.dialect, scratch, max_line, say)
            _write(engine, scratch, plan, say)
        finally:
            scratch.dispose()
    return plan


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
        raise BackupError(f"cannot read the database: {first_line(exc)}") from None
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
            f"writing to the database failed ({first_line(exc)}): no row was restored; the "
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
    """One table from the scratch database into PostgreSQL, in batches sized by the
    table's longest line so that a batch of big rows costs no more than one of small."""
    longest = plan.longest.get(table.name) or max(plan.longest.values(), default=1)
    per_batch = max(1, min(BATCH_ROWS, BATCH_BYTES // max(longest, 1)))
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
