"""Shared fixtures: real databases (SQLite and PostgreSQL) and a real HTTP server.

API tests run once per backend: the ``backend`` fixture is parametrised, so every test that
touches the database runs on SQLite and again on PostgreSQL. PostgreSQL is required under
``CI=true``: when it is missing there the run fails loudly instead of skipping.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.db import tenant as tenant_db
from api.db import token as token_db
from api.db.base import Base
from api.db.session import make_engine, session_factory, unit_of_work, upgrade_to_head
from api.domain.access import cli_principal
from api.settings import Settings

pytest_plugins = ["tests.netbox.plugin", "tests.docs.demo"]  # NetBox; `demo` (serve --demo)

POSTGRES_URL = os.environ.get(
    "GPUINV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'gpuinv.db'}"
        return
    url, drop = fresh_postgres_database("gpuinv_test")
    yield url
    drop()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def wipe(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def db(engine: Engine, sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """An empty, migrated database for one test."""
    wipe(engine)
    return sessions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving the real app on a loopback port, in this process."""

    def __init__(self, settings: Settings):
        self.port = free_port()
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        # The match index loads in the background at start-up; let it finish so that it
        # does not race the tests' TRUNCATE for table locks.
        self.app.state.index_ready.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# The test servers trust a token they have read for this long: a token revoked or expired
# out of band (the CLI, another replica) is refused within it (see refused_once_cache_ends).
TOKEN_CACHE_SECONDS = 1.0


@pytest.fixture(scope="session")
def server(database_url: str, engine: Engine) -> Iterator[ServerThread]:
    with ServerThread(
        Settings(
            database_url=database_url,
            cors_origins=("https://portal.example",),
            # No background lease sweeps here: their transactions would race the tests'
            # TRUNCATE (test_lease_sweeper runs a server of its own to test them).
            lease_sweep_seconds=3600,
            token_cache_seconds=TOKEN_CACHE_SECONDS,
        )
    ) as running:
        yield running


@dataclass
class Api:
    """A small GraphQL-over-HTTP client for tests: real requests to the real server."""

    url: str
    token: str | None = None

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        sent |= headers or {}
        return httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=sent,
            timeout=60,
        )

    def run(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.post(query, variables)
        assert response.status_code == 200, response.text
        return response.json()

    def refused_once_cache_ends(self, query: str) -> dict[str, Any]:
        """The first error for ``query``, which must come within the server's token cache
        bound (plus a second for the requests themselves): a token revoked or expired out
        of band may be trusted that long, never longer."""
        deadline = time.monotonic() + TOKEN_CACHE_SECONDS + 1.0
        while True:
            body = self.run(query)
            if body.get("errors"):
                return body["errors"][0]
            assert time.monotonic() < deadline, "still accepted after the token cache's bound"
            time.sleep(0.05)

    def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.run(query, **variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def error(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.run(query, **variables)
        assert body.get("errors"), f"expected an error, got {body}"
        return body["errors"][0]

    def as_(self, token: str | None) -> Api:
        return Api(self.url, token)


def make_token(sessions: sessionmaker[Session], role: str, tenant: str | None = None) -> str:
    with unit_of_work(sessions) as session:
        _, secret = token_db.create_token(session, cli_principal(), role, tenant, None, None)
    return secret


def make_tenant(sessions: sessionmaker[Session], slug: str, *projects: str) -> None:
    who = cli_principal()
    with unit_of_work(sessions) as session:
        tenant_db.create_tenant(session, who, slug, None)
        for project in projects:
            tenant_db.create_project(session, who, slug, project, None)


@pytest.fixture
def api(server: ServerThread, db: sessionmaker[Session]) -> Api:
    """A platform-admin client against an empty inventory."""
    server.app.state.live_index.reset()  # the wipe bypassed the change feed
    return Api(server.url, make_token(db, "platform-admin"))
