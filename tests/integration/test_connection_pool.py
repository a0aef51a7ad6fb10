"""Pooled PostgreSQL connections that died while idle are replaced, not handed out.

The pool pings a connection only after it idled PING_AFTER_IDLE seconds (see
api/db/session.py). Here a real backend is killed with pg_terminate_backend, as a
PostgreSQL restart or a proxy timeout would, and the next checkout must still work.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from api.db import session as session_module
from api.db.session import make_engine
from tests.support.database import fresh_postgres_database


@pytest.fixture
def postgres_url():
    url, drop = fresh_postgres_database("gpuinv_pool")
    yield url
    drop()


def test_a_connection_killed_while_idle_is_replaced_on_checkout(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_url, pool_size=1)
    with engine.connect() as connection:
        victim = connection.scalar(text("SELECT pg_backend_pid()"))
    with engine.connect() as other:  # the same pooled connection: kill it from outside
        assert other.scalar(text("SELECT pg_backend_pid()")) == victim
    admin = make_engine(postgres_url, pool_size=1)
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
    admin.dispose()
    monkeypatch.setattr(session_module, "PING_AFTER_IDLE", 0.0)  # it has "idled" long enough
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT pg_backend_pid()")) != victim
    engine.dispose()
