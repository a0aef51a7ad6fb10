"""Every change lands in the audit log, in the same transaction: who, what, before, after."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import AuditEvent
from tests.conftest import Api

CREATE = """mutation($input: DeviceInput!) { createDevice(input: $input) { id } }"""


def events(db: sessionmaker[Session]) -> list[AuditEvent]:
    with db() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_create_update_status_delete_are_audited_with_before_and_after(
    api: Api, db: sessionmaker[Session]
) -> None:
    device_id = api.ok(CREATE, input={"hostname": "gpu-1", "totalCpu": 64})["createDevice"]["id"]
    api.ok('mutation($id: ID!) { updateDevice(id: $id, patch: {rack: "r9"}) { id } }', id=device_id)
    api.ok(
        'mutation($id: ID!) { setStatus(id: $id, status: MAINTENANCE, reason: "fan") { id } }',
        id=device_id,
    )
    api.ok("mutation($id: ID!) { deleteDevice(id: $id) { id } }", id=device_id)
    trail = [e for e in events(db) if e.object_id == device_id]
    assert [e.action for e in trail] == ["create", "update", "set-status", "delete"]
    assert {e.actor for e in trail} == {"token:platform-admin"}
    create, update, status, delete = trail
    assert create.before is None and create.after["hostname"] == "gpu-1"
    assert update.before["rack"] is None and update.after["rack"] == "r9"
    assert status.before == {"status": "available"}
    assert status.after == {"status": "maintenance", "reason": "fan"}
    assert delete.before["hostname"] == "gpu-1" and delete.after is None
    assert all(e.at is not None and e.request_id for e in trail)


def test_an_unchanged_update_and_a_refused_write_leave_no_audit_event(
    api: Api, db: sessionmaker[Session]
) -> None:
    device_id = api.ok(CREATE, input={"hostname": "gpu-1"})["createDevice"]["id"]
    before = len(events(db))
    api.ok("mutation($id: ID!) { updateDevice(id: $id, patch: {}) { id } }", id=device_id)
    refused = api.error(
        "mutation($id: ID!) { updateDevice(id: $id, patch: {totalCpu: -4}) { id } }", id=device_id
    )
    assert refused["extensions"]["code"] == "BAD_INPUT"
    assert len(events(db)) == before


def test_import_audits_each_created_item(api: Api, db: sessionmaker[Session]) -> None:
    data = json.dumps(
        {
            "devices": [{"hostname": f"gpu-{n}"} for n in range(3)],
            "switches": [{"name": "leaf-1", "role": "ib-leaf"}],
        }
    )
    api.ok("mutation($d: String!) { importInventory(data: $d) { created } }", d=data)
    created = {
        (e.object_kind, e.object_name)
        for e in events(db)
        if e.action == "create" and e.object_kind != "token"
    }
    assert created == {
        ("baremetal", "gpu-0"),
        ("baremetal", "gpu-1"),
        ("baremetal", "gpu-2"),
        ("switch", "leaf-1"),
    }
