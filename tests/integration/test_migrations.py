"""Alembic: an empty database upgrades to head, and head matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from api.db.base import Base
from api.db.session import is_at_head, make_engine, upgrade_to_head


def _upgrade_and_diff(url: str) -> list:
    engine: Engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        assert is_at_head(engine)
        upgrade_to_head(engine)  # a second run is a no-op, as `gpuinv serve` relies on
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        return diff
    finally:
        engine.dispose()


def test_sqlite_upgrades_to_head_with_no_autogenerate_difference(tmp_path) -> None:
    assert _upgrade_and_diff(f"sqlite:///{tmp_path / 'fresh.db'}") == []


def test_postgresql_upgrades_to_head_with_no_autogenerate_difference() -> None:
    from tests.conftest import fresh_postgres_database

    url, drop = fresh_postgres_database("gpuinv_migrate")
    try:
        assert _upgrade_and_diff(url) == []
    finally:
        drop()
