"""The invariants are the database's, not only Python's: direct writes that would break
them are refused by constraints; leases expire; held devices cannot be deleted."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.db import allocation as allocation_db
from api.db import inventory
from api.db import release as release_db
from api.db.candidates import LiveIndex
from api.db.models import AllocationDeviceRow, AllocationRow, DeviceRow
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import DEVICE_ALLOCATED, DomainError
from api.domain.vocabulary import Kind
from tests.support.fleet import h100_servers

LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}]
    ),
}


def _fleet(db: sessionmaker[Session], count: int = 2) -> list[str]:
    return h100_servers(db, count)


def _match(
    db: sessionmaker[Session],
    env: str,
    kind: str = "baremetal",
    ttl: int | None = None,
    **variables: object,
) -> allocation_db.MatchResult:
    labels = dict(LABELS, **{"paas.envmgmt.io/inventory": kind})
    return allocation_db.match_device(
        db.kw["bind"],  # the engine the fixture's sessions use
        cli_principal(),
        LiveIndex(),
        allocation_db.MatchInput(env, dict(variables), labels=labels, ttl_seconds=ttl),
    )


def test_the_database_refuses_a_second_active_exclusive_claim(db: sessionmaker[Session]) -> None:
    _fleet(db, 1)
    first = _match(db, "one")
    assert first.allocation is not None
    with pytest.raises(IntegrityError), db.begin() as session:
        second = AllocationRow(
            environment="two",
            scope="*",
            inventory_type="baremetal",
            request={},
            request_hash="x",
            variables={},
            device_details={},
            explanation={},
            actor="test",
        )
        session.add(second)
        session.flush()
        held = session.scalars(select(AllocationDeviceRow)).one()
        session.add(
            AllocationDeviceRow(
                allocation_id=second.id,
                device_id=held.device_id,
                hostname="gpu-0",
                position=0,
                exclusive=True,
                active=True,
            )
        )


def test_the_database_refuses_free_capacity_below_zero_or_over_the_total(
    db: sessionmaker[Session],
) -> None:
    (device_id,) = _fleet(db, 1)
    for values in ({"free_gpus": -1}, {"free_gpus": 9}, {"free_cpu": 65}):
        with pytest.raises(IntegrityError), db.begin() as session:
            session.execute(
                update(DeviceRow)
                .where(DeviceRow.id == device_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )


def test_the_database_refuses_two_active_allocations_of_one_environment(
    db: sessionmaker[Session],
) -> None:
    with pytest.raises(IntegrityError), db.begin() as session:
        for _ in range(2):
            session.add(
                AllocationRow(
                    environment="same",
                    scope="*",
                    inventory_type="vm",
                    request={},
                    request_hash="x",
                    variables={},
                    device_details={},
                    explanation={},
                    actor="test",
                )
            )
            session.flush()


def test_an_expired_lease_is_released_and_its_devices_freed(db: sessionmaker[Session]) -> None:
    _fleet(db, 1)
    held = _match(db, "leased", ttl=60).allocation
    assert held is not None and held.expires_at is not None
    with unit_of_work(db) as session:
        assert release_db.expire_leases(session) == 0  # not yet due
    with unit_of_work(db) as session:
        later = held.expires_at + timedelta(seconds=1)
        assert release_db.expire_leases(session, now=later) == 1
    with db() as session:
        allocation = session.get(AllocationRow, held.id)
        device = session.scalars(select(DeviceRow)).one()
        assert allocation is not None and allocation.released_by == "system:lease-expiry"
        assert (device.status, device.free_gpus) == ("available", 8)


def test_a_device_holding_a_slice_cannot_be_deleted(db: sessionmaker[Session]) -> None:
    (device_id,) = _fleet(db, 1)
    _match(db, "slice", kind="vcluster", gpu=2)
    with pytest.raises(DomainError) as refused, unit_of_work(db) as session:
        inventory.delete(session, cli_principal(), Kind.BAREMETAL, device_id)
    assert refused.value.code == DEVICE_ALLOCATED
    with unit_of_work(db) as session:
        release_db.release(session, cli_principal(), "slice")
    with unit_of_work(db) as session:
        inventory.delete(session, cli_principal(), Kind.BAREMETAL, device_id)


def test_an_import_never_touches_allocation_state(db: sessionmaker[Session]) -> None:
    from api.db.inventory_import import import_batch
    from api.domain.inventory_import import parse_json_import

    _fleet(db, 1)
    _match(db, "held")
    again = {
        "devices": [
            {
                "hostname": "gpu-0",
                "totalcpu": 64,
                "status": "maintenance",
                "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
            }
        ]
    }
    with unit_of_work(db) as session:
        import_batch(session, cli_principal(), parse_json_import(json.dumps(again)))
    with db() as session:
        device = session.scalars(select(DeviceRow)).one()
        assert (device.status, device.free_gpus) == ("allocated", 0)
