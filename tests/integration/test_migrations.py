"""Alembic: an empty database upgrades to head, and head matches the models exactly."""

from __future__ import annotations

import pytest
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
    from tests.support.database import fresh_postgres_database

    url, drop = fresh_postgres_database("gpuinv_migrate")
    try:
        assert _upgrade_and_diff(url) == []
    finally:
        drop()


def test_0005_gives_existing_devices_the_gpu_kind_they_all_share(tmp_path) -> None:
    """Devices written before 0005 get gpu_vendor/gpu_model from their GPU rows: the pair
    when every GPU is alike, null for a mix or no GPUs."""
    from alembic import command
    from sqlalchemy import text

    from api.db.session import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        command.upgrade(alembic_config(engine), "0004")
        with engine.begin() as connection:
            for name in ("alike", "mixed", "none"):
                connection.execute(
                    text(
                        "INSERT INTO device (id, kind, hostname, status, tags, source_system, "
                        "generation, total_cpu, total_memory_mb, total_storage_gb, total_gpus, "
                        "free_cpu, free_memory_mb, free_storage_gb, free_gpus, created_at, "
                        "updated_at) VALUES (:n, 'baremetal', :n, 'available', '{}', 'manual', "
                        "1, 0, 0, 0, 2, 0, 0, 0, 2, '2026-01-01', '2026-01-01')"
                    ),
                    {"n": name},
                )
            gpus = [("alike", "NVIDIA", "H100"), ("alike", "NVIDIA", "H100")]
            gpus += [("mixed", "NVIDIA", "H100"), ("mixed", "NVIDIA", "H200")]
            for index, (device, vendor, model) in enumerate(gpus):
                connection.execute(
                    text(
                        'INSERT INTO gpu (device_id, "index", vendor_code, model_no) '
                        "VALUES (:d, :i, :v, :m)"
                    ),
                    {"d": device, "i": index, "v": vendor, "m": model},
                )
        upgrade_to_head(engine)
        with engine.connect() as connection:
            found = dict(
                (row[0], (row[1], row[2]))
                for row in connection.execute(
                    text("SELECT hostname, gpu_vendor, gpu_model FROM device")
                )
            )
        assert found == {
            "alike": ("NVIDIA", "H100"),
            "mixed": (None, None),
            "none": (None, None),
        }
    finally:
        engine.dispose()


def _feed_triggers(engine: Engine) -> int:
    """The change-feed triggers on device, gpu and infiniband (3 events each)."""
    from sqlalchemy import text

    sqlite = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE :like"
    postgresql = "SELECT count(*) FROM information_schema.triggers WHERE trigger_name LIKE :like"
    query = sqlite if engine.dialect.name == "sqlite" else postgresql
    with engine.connect() as connection:
        return connection.execute(text(query), {"like": "trg_%_log_change"}).scalar() or 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_change_feed_triggers_survive_every_migration_both_ways(backend: str, tmp_path) -> None:
    """A migration that copies the device table (alembic's batch mode on SQLite) would drop
    its triggers, and every replica's match index would stop following changes."""
    from alembic import command

    from api.db.session import alembic_config
    from tests.support.database import fresh_postgres_database

    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'triggers.db'}"
    else:
        url, drop = fresh_postgres_database("gpuinv_triggers")
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        at_head = _feed_triggers(engine)
        assert at_head == 9
        command.downgrade(alembic_config(engine), "0003")
        assert _feed_triggers(engine) == at_head
        upgrade_to_head(engine)
        assert _feed_triggers(engine) == at_head
    finally:
        engine.dispose()
        if drop:
            drop()


_DEVICE = (
    "INSERT INTO device (id, kind, hostname, status, tags, tenant_id, source_system, "
    "generation, total_cpu, total_memory_mb, total_storage_gb, total_gpus, free_cpu, "
    "free_memory_mb, free_storage_gb, free_gpus, created_at, updated_at) VALUES "
    "(:id, 'baremetal', :name, 'available', '{}', :tenant, 'manual', 1, 0, 0, 0, 1, 0, 0, "
    "0, 1, '2026-01-01', '2026-01-01')"
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_0007_makes_names_unique_per_namespace_both_ways_and_keeps_every_row(
    backend: str, tmp_path
) -> None:
    """0007 rebuilds the item tables on SQLite (a table constraint cannot be dropped in
    place) with foreign keys off: a GPU row or port of a device must survive it, where a
    DROP TABLE with foreign keys on would have cascaded into them."""
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from api.db.session import alembic_config
    from tests.support.database import fresh_postgres_database

    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'namespaces.db'}"
    else:
        url, drop = fresh_postgres_database("gpuinv_namespaces")
    engine = make_engine(url)

    def insert_device(id_: str, tenant: str | None) -> None:
        with engine.begin() as connection:
            connection.execute(text(_DEVICE), {"id": id_, "name": "gpu-01", "tenant": tenant})

    def count(table: str) -> int:
        with engine.connect() as connection:
            return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()

    try:
        command.upgrade(alembic_config(engine), "0006")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO tenant (id, slug, name, created_at) "
                    "VALUES ('t1', 'acme', 'A', '2026-01-01')"
                )
            )
        insert_device("d1", None)
        with engine.begin() as connection:
            connection.execute(
                text(
                    'INSERT INTO gpu (device_id, "index", vendor_code, model_no) '
                    "VALUES ('d1', 0, 'NVIDIA', 'H100')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO infiniband (id, name, device_id, device, port, status, tags, "
                    "source_system, generation, created_at, updated_at) VALUES ('p1', "
                    "'gpu-01:ib0', 'd1', 'gpu-01', 'ib0', 'available', '{}', 'manual', 1, "
                    "'2026-01-01', '2026-01-01')"
                )
            )
        with pytest.raises(IntegrityError):  # before 0007: one name fleet-wide
            insert_device("d2", "t1")

        upgrade_to_head(engine)
        assert (count("device"), count("gpu"), count("infiniband")) == (1, 1, 1)
        assert _feed_triggers(engine) == 9
        insert_device("d2", "t1")  # the same name in another namespace
        for tenant in (None, "t1"):  # but never twice in one
            with pytest.raises(IntegrityError):
                insert_device("d3", tenant)

        with pytest.raises(RuntimeError, match="names used in more than one namespace"):
            command.downgrade(alembic_config(engine), "0006")
        assert is_at_head(engine) and count("device") == 2
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM device WHERE id = 'd2'"))
        command.downgrade(alembic_config(engine), "0006")
        assert (count("device"), count("gpu"), count("infiniband")) == (1, 1, 1)
        assert _feed_triggers(engine) == 9
        with pytest.raises(IntegrityError):
            insert_device("d2", "t1")
        upgrade_to_head(engine)
        assert is_at_head(engine)
    finally:
        engine.dispose()
        if drop:
            drop()
