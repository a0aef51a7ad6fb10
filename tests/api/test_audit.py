"""Every change lands in the audit log, in the same transaction: who, what, before, after."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import AuditEventRow
from tests.support.api import Api

CREATE = """mutation($input: DeviceInput!) { createDevice(input: $input) { id } }"""


def events(db: sessionmaker[Session]) -> list[AuditEventRow]:
    with db() as session:
        return list(session.scalars(select(AuditEventRow).order_by(AuditEventRow.id)))


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


EVENTS = """query($f: AuditEventFilter, $first: Int! = 50, $after: String) {
  auditEvents(filter: $f, first: $first, after: $after) {
    edges { node { id at actor action objectKind objectId objectName tenant before after
                   requestId } }
    pageInfo { hasNextPage endCursor } } }"""


def _events(api: Api, **variables: object) -> list[dict]:
    return [e["node"] for e in api.ok(EVENTS, **variables)["auditEvents"]["edges"]]


def test_audit_events_query_newest_first_filtered_and_paged(api: Api) -> None:
    created = api.post(CREATE, {"input": {"hostname": "gpu-1"}}, headers={"X-Request-Id": "r-1"})
    device_id = created.json()["data"]["createDevice"]["id"]
    api.ok('mutation($id: ID!) { updateDevice(id: $id, patch: {rack: "r9"}) { id } }', id=device_id)
    api.ok(CREATE, input={"hostname": "gpu-2"})
    devices = {"objectKind": "baremetal"}  # (the test's token was created, and audited, too)
    newest = _events(api, f=devices)
    assert [(e["action"], e["objectName"]) for e in newest] == [
        ("create", "gpu-2"),
        ("update", "gpu-1"),
        ("create", "gpu-1"),
    ]
    assert newest[1]["before"]["rack"] is None and newest[1]["after"]["rack"] == "r9"
    assert _events(api, f={"objectId": device_id, "action": "update"}) == [newest[1]]
    assert [e["objectName"] for e in _events(api, f={"requestId": "r-1"})] == ["gpu-1"]
    assert _events(api, f=devices | {"actor": "token:platform-admin"}) == newest
    assert _events(api, f={"actor": "someone-else"}) == []
    # time window: since is inclusive, until exclusive
    at = newest[1]["at"]
    assert [e["action"] for e in _events(api, f={"since": at, "until": newest[0]["at"]})] == [
        "update"
    ]
    # pages of one, following endCursor, give the same order
    seen, after = [], None
    while True:
        page = api.ok(EVENTS, f=devices, first=1, after=after)["auditEvents"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [e["id"] for e in newest]


def test_audit_events_refuse_bad_input_by_name(api: Api) -> None:
    error = api.error(EVENTS, f={"since": "2026-11-23T10:00:00"})
    assert error["extensions"]["code"] == "BAD_INPUT" and "filter.since" in error["message"]
    error = api.error(EVENTS, after="not-a-cursor")
    assert error["extensions"]["code"] == "BAD_INPUT" and "after" in error["message"]
    error = api.error(EVENTS, first=0)
    assert error["extensions"]["code"] == "BAD_INPUT" and "first" in error["message"]
    error = api.error(EVENTS, f={"tenant": "nobody"})
    assert error["extensions"]["code"] == "NOT_FOUND"


def test_a_tenant_sees_only_its_tenants_audit_events(api: Api, db: sessionmaker[Session]) -> None:
    from tests.support.api import make_tenant, make_token

    make_tenant(db, "acme")
    make_tenant(db, "globex")
    api.ok(CREATE, input={"hostname": "a-1", "tenant": "acme"})
    api.ok(CREATE, input={"hostname": "g-1", "tenant": "globex"})
    acme = api.as_(make_token(db, "viewer", "acme"))
    seen = _events(acme, f={"objectKind": "baremetal"})
    assert [(e["objectName"], e["tenant"]) for e in seen] == [("a-1", "acme")]
    assert {e["tenant"] for e in _events(acme)} == {"acme"}
    assert acme.error(EVENTS, f={"tenant": "globex"})["extensions"]["code"] == "NOT_FOUND"
