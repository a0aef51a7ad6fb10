"""Shared fixtures and the test tiers.

Tiers. Each test gets its tier as a mark from ``pytest_collection_modifyitems`` below, so
nobody marks a test by hand: a tier mark the test carries itself (for what no fixture
shows), else the system a fixture of it boots (``netbox``, ``clean_netbox``, ``browser``),
else its directory (tests/unit is ``unit``, tests/iac ``terraform``), else ``integration``.
Select with ``-m``:

    ./dev test -m unit              pure code (tests/unit): data in, value out; seconds
    ./dev test -m integration       the service on SQLite and PostgreSQL: the app served in
                                    process, the ``gpuinv`` CLI, ``gpuinv serve`` processes
    ./dev test -m netbox            against a real NetBox 4.7.3 (installed on first use)
    ./dev test -m terraform         the provider under real Terraform (tests/iac, the docs)
    ./dev test -m browser           the dashboard and GraphiQL in Debian's Chromium
    ./dev test -m "not slow"        all but the three above (``slow``: they boot a system)
    ./dev test                      everything

(``./dev test`` lints first; ``.venv/bin/pytest -m unit`` runs the tests alone.) A unit test
may use no database, server or system fixture: collection stops, naming it, if one does.
``postgres_only`` marks behaviour that exists only on PostgreSQL: such a test runs once, on
PostgreSQL (its SQLite run is deselected).

Backends. API tests run once per backend: the ``database_url`` fixture is parametrised, so
every test that touches the database runs on SQLite and again on PostgreSQL. PostgreSQL is
required under ``CI=true``: when it is missing there the run fails loudly instead of
skipping. What tests share besides fixtures is in tests/support.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.db.session import make_engine, session_factory, upgrade_to_head
from api.settings import Settings
from tests.support.api import TOKEN_CACHE_SECONDS, Api, make_token
from tests.support.database import fresh_postgres_database, wipe
from tests.support.server import ServerThread

# NetBox; `demo` (serve --demo); `browser` (Debian's Chromium)
pytest_plugins = ["tests.netbox.plugin", "tests.support.demo", "tests.support.browser"]

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "netbox", "terraform", "browser")
SLOW = frozenset({"netbox", "terraform", "browser"})  # they boot a system: also marked slow
# A test that uses one of these fixtures is in the tier of the system it boots.
SYSTEM_FIXTURES = {"netbox": "netbox", "clean_netbox": "netbox", "browser": "browser"}
# The tier of a directory's tests (under tests/), when no mark or fixture says otherwise.
DIRECTORY_TIERS = {"unit": "unit", "iac": "terraform"}
# What a unit test may not use: a database, a server, a system.
NOT_UNIT = frozenset({"database_url", "engine", "sessions", "db", "server", "api", "demo"})


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks given here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, deselected = [], []
    for item in items:
        marked = {mark.name for mark in item.iter_markers()}
        tiers = _tiers(item)
        for tier in sorted((tiers | ({"slow"} if tiers & SLOW else set())) - marked):
            item.add_marker(tier)
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("database_url") == "sqlite"
        (deselected if on_sqlite and item.get_closest_marker("postgres_only") else kept).append(
            item
        )
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _tiers(item: pytest.Item) -> set[str]:
    used = _fixtures(item)
    directory = DIRECTORY_TIERS.get(Path(item.path).relative_to(TESTS).parts[0])
    marked = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
    forbidden = used & (NOT_UNIT | SYSTEM_FIXTURES.keys())
    if forbidden and "unit" in (marked or {directory}):
        raise pytest.UsageError(
            f"{item.nodeid} is a unit test but uses {', '.join(sorted(forbidden))}: a unit "
            "test touches no database, server or system (move it to another tier)"
        )
    if marked:
        return marked
    tiers = {SYSTEM_FIXTURES[name] for name in used & SYSTEM_FIXTURES.keys()}
    if directory in SLOW:
        tiers.add(directory)
    return tiers or {directory or "integration"}


def _fixtures(item: pytest.Item) -> set[str]:
    """The fixtures a test uses: its fixture closure, less the names its own parametrize
    marks give values to (a parameter may share a fixture's name)."""
    parameters: set[str] = set()
    for mark in item.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        indirect = mark.kwargs.get("indirect", False)
        parameters |= {
            name
            for name in names
            if not (indirect is True or (isinstance(indirect, list | tuple) and name in indirect))
        }
    return set(getattr(item, "fixturenames", ())) - parameters


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


@pytest.fixture
def db(engine: Engine, sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """An empty, migrated database for one test."""
    wipe(engine)
    return sessions


@pytest.fixture(scope="session")
def server(database_url: str, engine: Engine) -> Iterator[ServerThread]:
    with ServerThread(
        Settings(
            database_url=database_url,
            cors_origins=("https://portal.example",),
            # No background lease sweeps here: their transactions would race the tests'
            # TRUNCATE (test_lease_sweeper runs a server of its own to test them).
            lease_sweep_seconds=3600,
            # Nor queue rounds: the queue's tests run them (request_queue.serve) at the
            # times they choose.
            queue_poll_seconds=3600,
            token_cache_seconds=TOKEN_CACHE_SECONDS,
        )
    ) as running:
        yield running


@pytest.fixture
def api(server: ServerThread, db: sessionmaker[Session]) -> Api:
    """A platform-admin client against an empty inventory."""
    server.app.state.live_index.reset()  # the wipe bypassed the change feed
    return Api(server.url, make_token(db, "platform-admin"))
