"""Pass 1 of a restore: the whole file checked into a scratch database, the target untouched.

The scratch database is SQLite in a temporary directory, built by our own migrations at the
schema the file names (an older backup has older columns), so the file's rows meet the
constraints they were written under. It is then migrated to head, which runs an older
schema's data migrations on the rows too: a migration that fails on them fails here,
before the target is touched. Pass 2 copies the rows from it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from alembic import command
from sqlalchemy import DateTime, Dialect, Engine, MetaData, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from api.db.backup.contents import head_revision
from api.db.backup.errors import BackupError, first_line
from api.db.backup.fileformat import check_header, read_lines
from api.db.backup.loader import Loader, Plan
from api.db.base import Base, UTCDateTime
from api.db.session import alembic_config, make_engine, upgrade_to_head


def check_file(
    path: Path, dialect: Dialect, scratch: Engine, max_line: int, say: Callable[[str], None]
) -> Plan:
    """Read the whole file once into ``scratch``; raise BackupError at the first fault
    found (a value's type at its line; a constraint when its batch reaches the scratch
    database, which may be a few lines later). ``dialect`` is the target's: values are
    checked as it stores them."""
    with contextlib.closing(read_lines(path, max_line)) as lines:
        schema = check_header(path, next(lines, None), scratch)
        try:
            command.upgrade(alembic_config(scratch), schema)
            if schema == head_revision(scratch):  # a later migration may expect the triggers
                _drop_change_feed(scratch)
            with scratch.begin() as connection:
                loader = Loader(path, schema, _schema_at(scratch), dialect, connection, say)
                for number, size, value in lines:
                    loader.take(number, size, value)
                plan = loader.finish()
        except SQLAlchemyError as exc:
            raise BackupError(
                f"{path}: checking it in a scratch database failed ({first_line(exc)})"
            ) from None
    if schema != head_revision(scratch):
        _migrate_scratch(path, scratch, schema)
    return plan


def scratch_engine(path: Path) -> Engine:
    """The scratch database is thrown away after the restore: it need not survive a
    crash, so it is written without fsync."""
    engine = make_engine(f"sqlite:///{path}", pool_size=1)
    event.listen(engine, "connect", _without_fsync)
    return engine


def _without_fsync(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
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
            f"({first_line(exc)})"
        ) from None


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
