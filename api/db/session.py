"""Engines, sessions and migrations.

Repositories take a session and never commit; the caller (a GraphQL mutation, a CLI
command, the sync worker) owns the unit of work and commits or rolls back once.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Connection,
    CursorResult,
    Engine,
    Result,
    Table,
    create_engine,
    event,
    insert,
)
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from api.domain.errors import CONCURRENT_UPDATE, DomainError

MIGRATIONS = Path(__file__).with_name("migrations")


def normalise_url(url: str) -> str:
    """Accept what users type (``postgresql://…``, ``sqlite:///…``) and pick our driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise ValueError(
            f"GPUINV_DATABASE_URL: unsupported database {parsed.drivername!r} "
            "(use sqlite:///path.db or postgresql://user@host/db)"
        )
    return parsed.render_as_string(hide_password=False)


_PASSWORD = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@?#]*):.*@(?=[^@]*$)")


def redact_url(url: str) -> str:
    """``url`` as given, its password (if any) shown as ``***``: for messages and logs. Works
    on text that does not parse as a URL too (it is cut at the last ``@``, as a user with an
    unquoted ``@`` in the password meant it)."""
    return _PASSWORD.sub(r"\1:***@", url.strip())


# A PostgreSQL host that drops packets would otherwise keep a command waiting for minutes
# (libpq has no default); ?connect_timeout=N in the URL overrides it.
CONNECT_TIMEOUT = 10


def to_json(value: Any) -> str:
    """JSON text for a JSON column. orjson: a claim writes whole device documents (its
    answer, the allocation's ``device_details``), and json.dumps cost several times more.
    orjson refuses integers beyond 64 bits and keys that are not strings, which the
    standard library writes (a client's ``variables`` may hold any JSON number): those
    fall back to it. Reading stays with the standard library: orjson reads such an
    integer as a float, silently."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
            json_serializer=to_json,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves, so that a
        # unit of work can ask for BEGIN IMMEDIATE (see begin_writing) and take the write
        # lock up front: a deferred transaction that reads first and writes later fails
        # at once with "database is locked" when another connection committed meanwhile.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=connect_args,
        json_serializer=to_json,
    )
    _ping_when_idle(engine)
    return engine


# A connection used this recently is trusted without a ping. pool_pre_ping would ping on
# every checkout, and a session checks a connection out again after each commit: three
# extra round trips per matchDevice. A connection that dies within this window fails one
# statement, and SQLAlchemy then invalidates the pool's older connections.
PING_AFTER_IDLE = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, for connections idle a while (SQLAlchemy's
    "disconnect handling" recipe: a DisconnectionError in checkout makes the pool retry
    with a fresh connection)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(
        dbapi_connection: DBAPIConnection,
        record: ConnectionPoolEntry,
        _proxy: PoolProxiedConnection,
    ) -> None:
        last = record.info.get("checked_in_at")
        if last is None or time.monotonic() - last < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("connection failed its ping after idling") from exc


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "")
    connection.exec_driver_sql(f"BEGIN {mode}".strip())


_BEGIN_OPTION = "gpuinv_sqlite_begin"


def begin_writing(session: Session) -> None:
    """Start the session's transaction as a writer: BEGIN IMMEDIATE on SQLite (waits for
    the write lock under busy_timeout instead of failing later), a plain BEGIN elsewhere.
    Call it before the unit of work's first statement."""
    if session.in_transaction():
        session.rollback()
    session.connection(execution_options={_BEGIN_OPTION: "IMMEDIATE"})


def begin(connection: Connection, writing: bool) -> None:
    """Start a transaction on a plain connection, as a writer when it will write (BEGIN
    IMMEDIATE on SQLite: see begin_writing), as a reader otherwise."""
    connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE" if writing else ""})
    connection.begin()


def session_on(connection: Connection) -> Session:
    """An ORM session inside ``connection``'s transaction, for the occasional ORM read of a
    function that works on a plain connection: closing it never ends that transaction."""
    return Session(bind=connection, join_transaction_mode="rollback_only", expire_on_commit=False)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN in the "begin" event
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


@contextmanager
def lost_races_as_domain_errors() -> Iterator[None]:
    """Turn the ways a write can lose a race into CONCURRENT_UPDATE, a clean retry signal.

    - StaleDataError: our ``UPDATE … WHERE generation = :seen`` matched no row.
    - IntegrityError: a concurrent writer created the same unique name first (or a CHECK
      on capacity refused an over-allocation).
    - SQLite "database is locked": our read snapshot went stale before we could write.
    - PostgreSQL deadlock_detected: two writers waited on each other and this one was
      chosen to give way; nothing of it was written.
    """
    try:
        yield
    except StaleDataError:
        raise DomainError(
            CONCURRENT_UPDATE,
            "the item was changed by someone else at the same time: re-read and retry",
        ) from None
    except IntegrityError as exc:
        raise DomainError(
            CONCURRENT_UPDATE,
            "a concurrent write created or changed the same item: retry the request",
            {"detail": str(exc.orig).splitlines()[0]},
        ) from None
    except OperationalError as exc:
        if "database is locked" in str(exc.orig):
            raise DomainError(
                CONCURRENT_UPDATE, "another writer held the database: retry the request"
            ) from None
        if getattr(exc.orig, "sqlstate", None) == DEADLOCK_DETECTED:
            raise DomainError(
                CONCURRENT_UPDATE,
                "the write waited on another that waited on it; nothing was written: retry",
            ) from None
        raise


def engine_of(sessions: sessionmaker[Session]) -> Engine:
    """The pool a sessionmaker's sessions use, for work that needs connections of its own."""
    engine: Engine = sessions.kw["bind"]
    return engine


@contextmanager
def unit_of_work(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    with lost_races_as_domain_errors(), sessions() as session:
        begin_writing(session)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Create or migrate the database; safe to call on every start."""
    command.upgrade(alembic_config(engine), "head")


def is_at_head(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(alembic_config(engine)).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current == heads


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE run by ``Session.execute`` matched: the result is a
    CursorResult, which that method's signature does not say."""
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows fast: COPY on PostgreSQL (a bulk import writes ~15 rows per
    device), Core executemany in chunks elsewhere. Multi-row VALUES statements were tried
    and were 5x slower on both backends: compiling them costs more than it saves."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        for start in range(0, len(rows), 2000):
            session.execute(insert(table), list(rows[start : start + 2000]))
        return
    columns = list(rows[0])
    as_json = {c for c in columns if isinstance(table.c[c].type, JSON)}
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    driver = session.connection().connection.driver_connection
    assert driver is not None  # psycopg's, of the connection checked out above
    cursor = driver.cursor()
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(
                [
                    to_json(row[c]) if c in as_json and row[c] is not None else row[c]
                    for c in columns
                ]
            )
