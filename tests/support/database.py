"""The databases tests run on: the PostgreSQL to use (``GPUINV_TEST_POSTGRES_URL``),
throw-away databases on it, and emptying a database between tests."""

from __future__ import annotations

import os
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from api.db.base import Base
from tests.support.ci import IN_CI

POSTGRES_URL = os.environ.get(
    "GPUINV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_or_fail() -> str:
    """The admin URL of a reachable PostgreSQL; fail under CI, skip (loudly) elsewhere."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return POSTGRES_URL
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is required but unreachable at {POSTGRES_URL}: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    raise AssertionError("unreachable")


def fresh_postgres_database(prefix: str) -> tuple[str, Any]:
    """Create a throw-away database; returns its URL and a function that drops it."""
    admin = postgres_or_fail()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def wipe(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))
