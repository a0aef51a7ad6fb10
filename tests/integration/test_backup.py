"""`gpuinv backup` / `gpuinv restore` as an operator runs them (the real CLI), on both
backends: a restore into an empty database holds every row the original held, and the
service works on it; a bad file is refused before anything is written."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.backup import tables
from api.db.base import utcnow
from api.db.models import AuditEventRow
from api.db.session import make_engine
from tests.support.api import Api
from tests.support.backup import populate
from tests.support.database import fresh_postgres_database
from tests.support.processes import GPUINV


def gpuinv(database_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [GPUINV, *args],
        env={**os.environ, "GPUINV_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def empty_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A new database of the same backend as the session's, nothing in it."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    url, drop = fresh_postgres_database("gpuinv_restore")
    yield url
    drop()


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    with engine.connect() as connection:
        for table in tables():
            ordered = select(*table.columns).order_by(*table.primary_key.columns)
            found[table.name] = [tuple(row) for row in connection.execute(ordered)]
    return found


def test_restore_into_an_empty_database_holds_every_row_and_serves(
    api: Api, db: sessionmaker[Session], database_url: str, empty_database: str, tmp_path: Path
) -> None:
    populate(api, db)
    file = tmp_path / "inventory.backup"
    said = gpuinv(database_url, "backup", str(file)).stderr
    assert "rows of" in said and "rows/s" in said
    assert gpuinv(empty_database, "restore", str(file)).returncode == 0

    original, restored = make_engine(database_url), make_engine(empty_database)
    try:
        before, after = _rows(original), _rows(restored)
        assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}
        assert all(before[t] for t in ("device", "gpu", "allocation", "audit_event", "api_token"))
        for name in before:
            assert after[name] == before[name], name  # every row, every column
    finally:
        original.dispose()
        restored.dispose()

    # the restored database is a working inventory: migrated, matchable, writable
    assert "at the newest schema" in gpuinv(empty_database, "db", "upgrade").stderr
    token = gpuinv(empty_database, "token", "create", "--role", "platform-admin").stdout.strip()
    assert token.startswith("gpuinv_")  # a new audit event: the id sequence continued
    devices = json.loads(gpuinv(empty_database, "devices", "--json").stdout)
    assert {d["hostname"] for d in devices} == {"gpu-1", "gpu-2", "gpu-3"}
    assert "allocated" in {d["status"] for d in devices}
    gpuinv(empty_database, "release", "held")  # the restored allocation is released
    devices = json.loads(gpuinv(empty_database, "devices", "--json").stdout)
    assert {d["status"] for d in devices} == {"available"}


def _pack(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _cut(source: Path, target: Path, keep: float) -> None:
    data = gzip.decompress(source.read_bytes())
    target.write_bytes(gzip.compress(data[: int(len(data) * keep)]))


def test_a_bad_file_or_a_used_database_is_refused_and_nothing_is_written(
    api: Api, db: sessionmaker[Session], database_url: str, empty_database: str, tmp_path: Path
) -> None:
    populate(api, db)
    good = tmp_path / "good.backup"
    gpuinv(database_url, "backup", str(good))
    lines = gzip.decompress(good.read_bytes()).decode().splitlines()

    cut = tmp_path / "cut.backup"
    _cut(good, cut, 0.6)  # a complete gzip stream of the first 60%: no end line
    newer = tmp_path / "newer.backup"
    header = json.loads(lines[0]) | {"schema": "9999"}
    newer.write_bytes(_pack([json.dumps(header), *lines[1:]]))
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(_pack([*lines[:5], "{oops", *lines[5:]]))
    miscounted = tmp_path / "miscounted.backup"
    miscounted.write_bytes(_pack(lines[:3] + lines[4:]))
    torn = tmp_path / "torn.backup"
    torn.write_bytes(good.read_bytes()[:-40])  # a gzip stream cut mid-way
    not_ours = tmp_path / "not-ours.backup"
    not_ours.write_text("hostname,totalcpu\ngpu-1,8\n")

    for file, reason in (
        (cut, "cut short"),
        (newer, "newer gpuinv"),
        (damaged, "not JSON"),
        (miscounted, "the end line counts"),
        (torn, "not a complete gpuinv backup"),
        (not_ours, "not a complete gpuinv backup"),
    ):
        done = gpuinv(empty_database, "restore", str(file), check=False)
        assert done.returncode == 1 and reason in done.stderr, (file.name, done.stderr)
        assert _table_names(empty_database) == [], file.name  # no rows, and no schema

    # a database with rows in it is not restored into
    done = gpuinv(database_url, "restore", str(good), check=False)
    assert done.returncode == 1 and "not empty" in done.stderr


def test_a_backup_of_an_older_schema_is_restored_and_migrated(
    api: Api, db: sessionmaker[Session], database_url: str, empty_database: str, tmp_path: Path
) -> None:
    """A 0004 backup (before devices carried their GPU kind): restored at 0004, then 0005
    fills the GPU kind in from the restored GPU rows."""
    populate(api, db)
    good = tmp_path / "good.backup"
    gpuinv(database_url, "backup", str(good))
    old = []
    dropped: list[int] = []
    # What later migrations added: columns (0005, 0006, 0008, 0011) and tables (0008,
    # 0009, 0011).
    later_columns = {
        "device": ("gpu_vendor", "gpu_model", "health", "healthy"),
        "allocation": (
            "preemptible",
            "borrowed",
            "priority",
            "counted",
            "preempt_at",
            "preempted_for",
        ),
    }
    later_tables = {
        "quota",
        "event",
        "webhook",
        "webhook_delivery",
        "provision_request",
        "approval_policy",
    }
    skipping = False
    for line in gzip.decompress(good.read_bytes()).decode().splitlines():
        value = json.loads(line)
        if isinstance(value, dict) and value.get("format"):
            value["schema"] = "0004"
        elif isinstance(value, dict) and value.get("end"):
            skipping = False
            value["rows"] = {t: n for t, n in value["rows"].items() if t not in later_tables}
        elif isinstance(value, dict) and "table" in value:
            skipping = value["table"] in later_tables
            columns = value["columns"]
            later = later_columns.get(value["table"], ())
            dropped = [columns.index(c) for c in later if c in columns]
            value["columns"] = [c for i, c in enumerate(columns) if i not in dropped]
        elif isinstance(value, list):
            value = [v for i, v in enumerate(value) if i not in dropped]
        if not skipping:
            old.append(json.dumps(value))
    older = tmp_path / "older.backup"
    older.write_bytes(_pack(old))
    gpuinv(empty_database, "restore", str(older))
    engine = make_engine(empty_database)
    try:
        with engine.connect() as connection:
            kinds = dict(
                connection.exec_driver_sql(
                    "SELECT hostname, gpu_model FROM device WHERE kind = 'baremetal'"
                ).all()
            )
    finally:
        engine.dispose()
    assert kinds == {"gpu-1": "H100", "gpu-2": "H100", "gpu-3": None}


def test_a_line_over_the_restore_limit_is_warned_of_refused_and_restorable_when_raised(
    api: Api, db: sessionmaker[Session], database_url: str, empty_database: str, tmp_path: Path
) -> None:
    """Memory in a restore is bounded by its longest line (4 MiB unless --max-line-mib
    says otherwise): a backup with a longer one says so when written, and its restore
    is refused with the limit named until the limit is raised."""
    populate(api, db)
    big = {"notes": "x" * (5 * 2**20)}  # 5 MiB of audit detail, written past the API
    with db.begin() as session:
        session.execute(
            insert(AuditEventRow),
            {
                "actor": "test",
                "action": "note",
                "object_kind": "test",
                "after": big,
                "at": utcnow(),
            },
        )
    file = tmp_path / "wide.backup"
    assert "restore it with --max-line-mib 6" in gpuinv(database_url, "backup", str(file)).stderr

    done = gpuinv(empty_database, "restore", str(file), check=False)
    assert done.returncode == 1 and "longer than 4 MiB" in done.stderr, done.stderr
    assert _table_names(empty_database) == []

    gpuinv(empty_database, "restore", "--max-line-mib", "6", str(file))
    engine = make_engine(empty_database)
    try:
        with engine.connect() as connection:
            after = connection.scalar(
                select(AuditEventRow.after).where(AuditEventRow.action == "note")
            )
    finally:
        engine.dispose()
    assert after == big


def test_a_database_with_tables_of_its_own_is_not_restored_into(
    api: Api, db: sessionmaker[Session], database_url: str, empty_database: str, tmp_path: Path
) -> None:
    populate(api, db)
    file = tmp_path / "inventory.backup"
    gpuinv(database_url, "backup", str(file))
    engine = make_engine(empty_database)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE theirs (x integer)")
    finally:
        engine.dispose()
    done = gpuinv(empty_database, "restore", str(file), check=False)
    assert done.returncode == 1 and "holds tables (theirs) but no gpuinv schema" in done.stderr
    assert _table_names(empty_database) == ["theirs"]


def _table_names(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()
