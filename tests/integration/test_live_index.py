"""The per-process match index follows every writer through the database's change feed.

Each change here is made the way another replica, the sync worker or a DBA would make it,
behind the index's back (plain SQL in its own transaction); the index must see it on its
next poll. Claims and releases (status and free amounts only) are applied in place, any
other change re-reads the device: both kinds are covered, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import candidates, inventory
from api.db.candidates import LiveIndex
from api.db.models import DeviceChangeRow, DeviceRow, GpuRow
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.matching.profile import InventoryType
from api.domain.matching.request import normalise
from api.domain.vocabulary import Kind
from tests.support.statements import statements_sent


def _server(db: sessionmaker[Session], hostname: str, tags: dict[str, str] | None = None) -> str:
    with unit_of_work(db) as session:
        return inventory.create(
            session,
            cli_principal(),
            Kind.BAREMETAL,
            {
                "hostname": hostname,
                "totalcpu": 64,
                "totalmemoryMB": 1024,
                "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
                "tags": tags or {},
            },
        ).id


def _write(db: sessionmaker[Session], statement) -> None:
    with unit_of_work(db) as session:
        session.execute(statement.execution_options(synchronize_session=False))


def _current(db: sessionmaker[Session], live: LiveIndex):
    with db() as session:
        return live.current(session.connection())


def test_a_claim_and_a_release_by_another_writer_are_seen(db: sessionmaker[Session]) -> None:
    device_id = _server(db, "gpu-1")
    live = LiveIndex()
    assert _current(db, live).items[device_id].free.gpus == 8
    _write(
        db,
        update(DeviceRow)
        .where(DeviceRow.id == device_id)
        .values(
            status="allocated",
            free_gpus=0,
            free_cpu=0,
            free_memory_mb=0,
            generation=DeviceRow.generation + 1,
        ),
    )
    index = _current(db, live)
    claimed = index.items[device_id]
    assert (claimed.status, claimed.free.gpus, claimed.free.cpu) == ("allocated", 0, 0)
    assert claimed.document["status"] == "allocated"
    assert not index.eligible(InventoryType.BAREMETAL).any()
    _write(
        db,
        update(DeviceRow)
        .where(DeviceRow.id == device_id)
        .values(status="available", free_gpus=8, free_cpu=64, free_memory_mb=1024),
    )
    index = _current(db, live)
    released = index.items[device_id]
    assert (released.status, released.free.gpus, released.document["status"]) == (
        "available",
        8,
        "available",
    )
    assert index.smallest(index.eligible(InventoryType.BAREMETAL), 1)[0].id == device_id


def test_a_change_of_the_device_itself_is_re_read(db: sessionmaker[Session]) -> None:
    device_id = _server(db, "gpu-1")
    live = LiveIndex()
    _current(db, live)
    # A hostname and a tag change in the same statement as a status change: not a claim.
    _write(
        db,
        update(DeviceRow)
        .where(DeviceRow.id == device_id)
        .values(hostname="gpu-renamed", tags={"shareable": "false"}, status="maintenance"),
    )
    index = _current(db, live)
    changed = index.items[device_id]
    assert changed.hostname == changed.document["hostname"] == "gpu-renamed"
    assert changed.document["tags"] == {"shareable": "false"}
    assert not changed.shareable
    assert index.matching("hostname", [normalise("gpu-renamed")]).sum() == 1
    assert index.matching("hostname", [normalise("gpu-1")]).sum() == 0


def test_a_gpu_change_is_re_read(db: sessionmaker[Session]) -> None:
    device_id = _server(db, "gpu-1")
    live = LiveIndex()
    assert _current(db, live).matching("gpus.modelNo", [normalise("h100")]).sum() == 1
    _write(db, update(GpuRow).where(GpuRow.device_id == device_id).values(model_no="H200"))
    index = _current(db, live)
    assert {g["modelNo"] for g in index.items[device_id].document["gpus"]} == {"H200"}
    assert index.matching("gpus.modelNo", [normalise("h100")]).sum() == 0
    assert index.matching("gpus.modelNo", [normalise("h200")]).sum() == 1


def test_new_and_deleted_devices_are_seen(db: sessionmaker[Session]) -> None:
    first = _server(db, "gpu-1")
    live = LiveIndex()
    assert set(_current(db, live).items) == {first}
    second = _server(db, "gpu-2")
    assert set(_current(db, live).items) == {first, second}
    _write(db, delete(DeviceRow).where(DeviceRow.id == first))
    index = _current(db, live)
    assert set(index.items) == {second}
    assert index.eligible(InventoryType.BAREMETAL).sum() == 1


def test_following_a_claim_costs_one_query(db: sessionmaker[Session]) -> None:
    """Claims and releases are most of the feed: the poll that reads them must not
    re-read GPUs, ports and the tenant directory (one statement, not six)."""
    device_id = _server(db, "gpu-1")
    live = LiveIndex()
    _current(db, live)
    _write(db, update(DeviceRow).where(DeviceRow.id == device_id).values(free_gpus=4))
    with db() as session, statements_sent(session.get_bind()) as sent:
        index = live.current(session.connection())
    statements = [s.statement for s in sent if not s.is_begin]
    assert index.items[device_id].free.gpus == 4
    assert len(statements) == 1, statements


def test_a_bulk_change_is_read_as_the_feed_then_re_read(
    db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past _JOINED_POLL changes (an import) the poll reads the feed alone, then the
    devices; made small here so that three new devices are a bulk change."""
    monkeypatch.setattr(candidates, "_JOINED_POLL", 2)
    first = _server(db, "gpu-1")
    live = LiveIndex()
    _current(db, live)
    added = [_server(db, f"gpu-{n}") for n in range(2, 5)]
    _write(db, update(DeviceRow).where(DeviceRow.id == first).values(free_gpus=2))
    index = _current(db, live)
    assert set(index.items) == {first, *added}
    assert index.items[first].free.gpus == 2
    assert index.matching("hostname", [normalise("gpu-4")]).sum() == 1


def test_thousands_of_holes_are_one_parameter_and_still_fill(db: sessionmaker[Session]) -> None:
    """Rolled-back writes leave gaps in the feed's numbers, remembered as holes for a
    while in case a slow transaction fills them. A burst leaves thousands; the poll sends
    them as one parameter (an IN list of 5,000 parameters cost ~100 ms a poll), and a
    late change in a hole is still seen."""
    device_id = _server(db, "gpu-1")
    live = LiveIndex()
    _current(db, live)
    with unit_of_work(db) as session:
        high = session.scalar(select(func.max(DeviceChangeRow.seq)))
        # A change numbered 5,000 past the last: the numbers between are holes (made
        # here by hand: a rolled-back transaction's numbers are what leaves them).
        session.add(DeviceChangeRow(seq=high + 5000, device_id=device_id, origin="device"))
    _current(db, live)
    # A late transaction fills a hole: on PostgreSQL the trigger's next number is one
    # of them; on SQLite (which never leaves holes) it comes after the last.
    _write(db, update(DeviceRow).where(DeviceRow.id == device_id).values(free_gpus=4))
    with db() as session, statements_sent(session.get_bind()) as sent:
        index = live.current(session.connection())
    polls = [(s.statement, s.parameters) for s in sent if not s.is_begin]
    assert index.items[device_id].free.gpus == 4
    [(_statement, parameters)] = polls
    # the last number seen, the holes, the limit (and SQLite's offset)
    assert len(parameters) <= 4, parameters
