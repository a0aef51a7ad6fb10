"""The apply writes over what the diff saw: each change names the item's id and the
generation ``holdings`` read, so an item changed between the diff and the apply (by an
operator, a claim, a release) refuses the apply with CONCURRENT_UPDATE instead of being
overwritten, and nothing is applied. The items are read in bulk, not once per change.

NetBox's answers are plain records here (the shapes tests/unit/test_sync_translate.py
checks against NetBox 4.7); the whole sync against a real NetBox is in the other modules.
Both backends."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import allocation as allocation_db
from api.db import inventory
from api.db import release as release_db
from api.db.candidates import LiveIndex
from api.db.models import DeviceRow
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.vocabulary import Kind
from sync import reconcile
from sync.diff import Change, diff
from sync.mapping import Mapping
from sync.translate import Snapshot, translate
from tests.support.statements import statements_sent
from tests.support.sync import ONE_GPU_SERVER

SITES = [{"id": 1, "slug": "mumbai-1", "region": None}]


def _server(netbox_id: int, name: str, serial: str = "SN1", status: str = "active") -> dict:
    """A GPU server as NetBox 4.7's REST API lists it (the fields the mapping reads)."""
    return {
        "id": netbox_id,
        "url": f"http://netbox.example/api/dcim/devices/{netbox_id}/",
        "name": name,
        "serial": serial,
        "role": {"slug": "gpu-server"},
        "status": {"value": status},
        "site": {"id": 1, "slug": "mumbai-1"},
        "device_type": {"model": "XE9680", "manufacturer": {"name": "Dell"}},
        "custom_fields": {"cpu_cores": 96, "memory_mb": 1048576, "storage_gb": 7680},
        "tags": [],
    }


def _plan(db: sessionmaker[Session], *servers: dict[str, Any]) -> list[Change]:
    """What `gpuinv sync` plans when NetBox holds ``servers``: read, translate, diff."""
    desired = translate(Snapshot(devices=list(servers), sites=SITES), Mapping())
    with db() as session:
        current = reconcile.holdings(session)
    return diff(desired, current)


def _apply(db: sessionmaker[Session], changes: list[Change]) -> reconcile.Applied:
    with unit_of_work(db) as session:
        return reconcile.apply(session, changes)


def _device(db: sessionmaker[Session], hostname: str) -> DeviceRow:
    with db() as session:
        return session.scalars(select(DeviceRow).where(DeviceRow.hostname == hostname)).one()


def _operator_sets(db: sessionmaker[Session], hostname: str, **patch: Any) -> None:
    """An operator's edit through the API's own write path."""
    device_id = _device(db, hostname).id
    with unit_of_work(db) as session:
        inventory.update(session, cli_principal(), Kind.BAREMETAL, device_id, patch, None)


def _allocate(db: sessionmaker[Session], environment: str, hostname: str) -> None:
    allocation_db.match_device(
        db.kw["bind"],
        cli_principal(),
        LiveIndex(),
        allocation_db.MatchInput(environment, {"host": hostname}, labels=ONE_GPU_SERVER),
    )


def _refused(db: sessionmaker[Session], changes: list[Change]) -> str:
    with pytest.raises(reconcile.SyncError) as refused:
        _apply(db, changes)
    assert refused.value.code == "CONCURRENT_UPDATE"
    message = str(refused.value)
    assert "CONCURRENT_UPDATE" in message and "run the sync again" in message
    return message


def test_the_diff_carries_each_items_id_and_generation(db: sessionmaker[Session]) -> None:
    _apply(db, _plan(db, _server(1, "gpu-01")))
    _operator_sets(db, "gpu-01", rack="r7")  # generation 2
    device = _device(db, "gpu-01")
    [update] = _plan(db, _server(1, "gpu-01", serial="SN2"))
    assert (update.action, update.item_id, update.generation) == ("update", device.id, 2)
    assert device.generation == 2


def test_an_update_over_an_item_changed_since_the_diff_is_refused_not_overwritten(
    db: sessionmaker[Session],
) -> None:
    _apply(db, _plan(db, _server(1, "gpu-01")))
    changes = _plan(db, _server(1, "gpu-01", serial="SN2"))
    assert [(c.action, c.fields) for c in changes] == [("update", {"serial": ("SN1", "SN2")})]

    _operator_sets(db, "gpu-01", serial="SN-OPERATOR")  # between the diff and the apply
    message = _refused(db, changes)
    assert "baremetal 'gpu-01' (update)" in message and "(generation 1, now 2)" in message
    assert _device(db, "gpu-01").serial == "SN-OPERATOR"  # not overwritten

    _apply(db, _plan(db, _server(1, "gpu-01", serial="SN2")))  # the next sync sees it
    assert _device(db, "gpu-01").serial == "SN2"


def test_a_retire_of_an_item_changed_since_the_diff_is_refused(
    db: sessionmaker[Session],
) -> None:
    _apply(db, _plan(db, _server(1, "gpu-01"), _server(2, "gpu-02")))
    changes = _plan(db, _server(2, "gpu-02"))  # gpu-01 gone from NetBox
    assert [(c.action, c.key) for c in changes] == [("retire", "gpu-01")]

    _operator_sets(db, "gpu-01", serial="SN-OPERATOR")
    assert "baremetal 'gpu-01' (retire)" in _refused(db, changes)
    assert _device(db, "gpu-01").status == "available"


def test_a_flag_decided_before_a_release_is_refused_and_the_next_sync_retires(
    db: sessionmaker[Session],
) -> None:
    """The diff saw an allocated server gone from NetBox (flag it, keep it); it was
    released before the apply: the flag would be stale, and the next diff retires it."""
    _apply(db, _plan(db, _server(1, "gpu-01"), _server(2, "gpu-02")))
    _allocate(db, "env-1", "gpu-01")
    changes = _plan(db, _server(2, "gpu-02"))
    assert [(c.action, c.code) for c in changes] == [("flag", "NETBOX_DELETED")]

    with db() as session, session.begin():
        release_db.release(session, cli_principal(), "env-1")
    assert "baremetal 'gpu-01' (flag)" in _refused(db, changes)
    assert _device(db, "gpu-01").attention is None

    changes = _plan(db, _server(2, "gpu-02"))
    assert [(c.action, c.key) for c in changes] == [("retire", "gpu-01")]
    _apply(db, changes)
    assert _device(db, "gpu-01").status == "retired"


def test_an_update_over_a_claim_made_since_the_diff_is_refused(
    db: sessionmaker[Session],
) -> None:
    """A claim changes the item (its generation): the diff's decision (take NetBox's
    status, as for a free server) no longer holds; the next diff flags it instead."""
    _apply(db, _plan(db, _server(1, "gpu-01")))
    changes = _plan(db, _server(1, "gpu-01", status="failed"))
    assert [(c.action, c.fields) for c in changes] == [
        ("update", {"status": ("available", "maintenance")})
    ]
    _allocate(db, "env-1", "gpu-01")
    _refused(db, changes)
    changes = _plan(db, _server(1, "gpu-01", status="failed"))
    assert [(c.action, c.code) for c in changes] == [("flag", "NETBOX_DEGRADED")]


def test_a_create_whose_name_was_taken_since_the_diff_is_refused(
    db: sessionmaker[Session],
) -> None:
    changes = _plan(db, _server(1, "gpu-01"))
    assert [(c.action, c.key) for c in changes] == [("create", "gpu-01")]
    with unit_of_work(db) as session:  # an operator adds a machine of that name meanwhile
        inventory.create(session, cli_principal(), Kind.BAREMETAL, {"hostname": "gpu-01"})
    assert "were taken in the inventory" in _refused(db, changes)
    device = _device(db, "gpu-01")
    assert (device.source_system, device.serial) == ("manual", None)


def test_an_item_deleted_since_the_diff_stops_the_apply(db: sessionmaker[Session]) -> None:
    _apply(db, _plan(db, _server(1, "gpu-01")))
    changes = _plan(db, _server(1, "gpu-01", serial="SN2"))
    device_id = _device(db, "gpu-01").id
    with unit_of_work(db) as session:
        inventory.delete(session, cli_principal(), Kind.BAREMETAL, device_id)
    with pytest.raises(reconcile.SyncError, match=f"item {device_id} is gone"):
        _apply(db, changes)


def test_the_apply_reads_the_items_once_for_all_its_changes(
    db: sessionmaker[Session],
) -> None:
    servers = [_server(n, f"gpu-{n:02d}") for n in range(1, 9)]
    _apply(db, _plan(db, *servers))
    _allocate(db, "env-1", "gpu-08")
    changes = _plan(db)  # all gone from NetBox: seven retires and a flag
    assert sorted(c.action for c in changes) == ["flag"] + ["retire"] * 7
    with statements_sent(db.kw["bind"]) as sent:
        _apply(db, changes)
    reads = [s for s in sent if re.match(r"SELECT\b.*\bFROM device\b(?!_)", s.statement, re.S)]
    assert len(reads) == 1, [s.statement for s in reads]
    assert {_device(db, s["name"]).status for s in servers[:7]} == {"retired"}


def test_updates_read_neither_their_items_nor_the_tenants_again(
    db: sessionmaker[Session],
) -> None:
    """Eight servers changed in NetBox: the apply reads the devices once, and the tenant
    directory once, not once per update (inventory.update_item takes both)."""
    servers = [_server(n, f"gpu-{n:02d}") for n in range(1, 9)]
    _apply(db, _plan(db, *servers))
    changed = [_server(n, f"gpu-{n:02d}", serial="SN2") for n in range(1, 9)]
    changes = _plan(db, *changed)
    assert [c.action for c in changes] == ["update"] * 8
    with statements_sent(db.kw["bind"]) as sent:
        _apply(db, changes)
    device_reads = [
        s for s in sent if re.match(r"SELECT\b.*\bFROM device\b(?!_)", s.statement, re.S)
    ]
    tenant_reads = [s for s in sent if re.match(r"SELECT\b.*\bFROM tenant\b", s.statement, re.S)]
    assert len(device_reads) == 1, [s.statement for s in device_reads]
    assert len(tenant_reads) == 1, [s.statement for s in tenant_reads]
    assert {_device(db, s["name"]).serial for s in servers} == {"SN2"}
