"""Which database errors mean "unreachable right now" rather than "a bug".

A restart, a failover or ``pg_terminate_backend`` kills the connections a process holds;
the first statement on each then fails, SQLAlchemy invalidates the pool, and a retry on a
fresh connection succeeds. Those errors are answered with a retryable code (UNAVAILABLE)
and logged as an outage, without a traceback; every other database error stays a bug.
"""

from __future__ import annotations

import psycopg
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

MESSAGE = "the database connection was lost or refused: retry the request"

# SQLSTATE: class 08 is "connection exception"; 57P01 admin shutdown (what
# pg_terminate_backend sends), 57P02 crash shutdown, 57P03 cannot connect now (starting up
# or shutting down), 57P04 database dropped. Not 57014, a cancelled statement (a timeout).
_CONNECTION_STATES = ("08", "57P")


def database_unavailable(error: BaseException | None) -> bool:
    if isinstance(error, DisconnectionError):  # the pool gave up on a connection at checkout
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:  # SQLAlchemy's dialect recognised a disconnect
        return True
    if not isinstance(error, OperationalError) or not isinstance(error.orig, psycopg.Error):
        return False  # SQLite's OperationalErrors (a missing table, a locked file) are not this
    state = error.orig.sqlstate
    # No SQLSTATE: psycopg could not reach the server or lost it mid-statement.
    return state is None or state.startswith(_CONNECTION_STATES)


def first_line(error: BaseException) -> str:
    """A database error's first line, for a log line without a traceback."""
    text = str(getattr(error, "orig", None) or error)
    return text.splitlines()[0] if text else type(error).__name__
