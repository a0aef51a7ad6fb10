"""The outbox (DESIGN.md "Events"): every change a webhook may want writes its event in
the change's own transaction, a refused claim in one of its own; without a webhook of
the tenant or the platform, nothing is written. Both backends, through the real server.
(The webhooks are written straight to the database here: this is about the writing side;
tests/api/test_webhooks.py covers creating them and delivering.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import EventRow, TenantRow, WebhookRow
from api.db.session import unit_of_work
from tests.support.api import Api, make_tenant, make_token

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
  allocation { id } } }"""
RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { id } }"
LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}]
    ),
}


def _webhook(db: sessionmaker[Session], tenant: str | None) -> None:
    with unit_of_work(db) as session:
        tenant_id = session.scalar(select(TenantRow.id).where(TenantRow.slug == tenant))
        session.add(
            WebhookRow(
                url="https://example.test/hook",
                secret="x",
                events=[],
                tenant_id=tenant_id,
                created_by="test",
            )
        )


def _events(db: sessionmaker[Session]) -> list[tuple[str, str | None, Any]]:
    with db() as session:
        rows = session.scalars(select(EventRow).order_by(EventRow.seq))
        return [(e.type, e.tenant_id, e.data) for e in rows]


def _match(caller: Api, environment: str, **extra: Any) -> dict[str, Any]:
    given = {"environment": environment, "labels": LABELS, "variables": {"gpu": "8"}}
    return caller.run(MATCH, i=given | extra)


@pytest.fixture
def acme(api: Api, db: sessionmaker[Session]) -> Api:
    make_tenant(db, "acme")
    make_tenant(db, "other")
    gpus = [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8
    devices = [{"hostname": f"gpu-{n}", "totalcpu": 64, "gpus": gpus} for n in range(3)]
    api.ok(IMPORT, d=json.dumps({"devices": devices}))
    return api.as_(make_token(db, "provisioner", "acme"))


def test_without_a_webhook_nothing_is_written(acme: Api, db: sessionmaker[Session]) -> None:
    _webhook(db, "other")  # another tenant's webhook does not want acme's events
    assert not _match(acme, "env-1").get("errors")
    acme.ok(RELEASE, e="env-1")
    assert _events(db) == []


def test_a_tenants_changes_write_their_events(
    acme: Api, api: Api, db: sessionmaker[Session]
) -> None:
    _webhook(db, "acme")
    api.ok('mutation { setQuota(input: {tenant: "acme", gpus: 8}) { gpus } }')
    created = _match(acme, "env-1")["data"]["matchDevice"]["allocation"]["id"]
    refused = _match(acme, "env-2")
    assert refused["errors"][0]["extensions"]["code"] == "QUOTA_EXCEEDED"
    assert _match(acme, "env-3", dryRun=True)["errors"]  # a dry run writes no event
    acme.ok(RELEASE, e="env-1")
    found = _events(db)
    assert [kind for kind, _, _ in found] == [
        "io.gpuinv.allocation.created",
        "io.gpuinv.quota.exceeded",
        "io.gpuinv.allocation.released",
    ]
    with db() as session:
        acme_id = session.scalar(select(TenantRow.id).where(TenantRow.slug == "acme"))
    assert {tenant for _, tenant, _ in found} == {acme_id}
    allocation = found[0][2]
    assert allocation["id"] == created and allocation["environment"] == "env-1"
    assert allocation["tenant"] == "acme" and allocation["inventoryType"] == "BAREMETAL"
    assert allocation["devices"][0]["gpus"] == 8 and allocation["releasedAt"] is None
    assert found[1][2]["quota"]["limit"] == 8 and found[1][2]["environment"] == "env-2"
    assert found[2][2]["releasedAt"] is not None


def test_a_platform_webhook_hears_every_tenant(
    acme: Api, api: Api, db: sessionmaker[Session]
) -> None:
    _webhook(db, None)
    assert not _match(acme, "env-1").get("errors")
    assert not api.run(MATCH, i={"environment": "platform-env", "labels": LABELS,
                                 "variables": {"gpu": "8"}}).get("errors")  # fmt: skip
    tenants = [tenant for _, tenant, _ in _events(db)]
    assert len(tenants) == 2 and None in tenants


def test_a_health_alert_tells_each_holders_tenant_of_its_own_allocations(
    acme: Api, api: Api, db: sessionmaker[Session]
) -> None:
    _webhook(db, "acme")
    slice_labels = dict(LABELS, **{"paas.envmgmt.io/inventory": "vcluster"})
    mine = {"environment": "acme-slice", "labels": slice_labels, "variables": {"gpu": "2"}}
    assert not acme.run(MATCH, i=mine).get("errors")
    theirs = dict(mine, environment="platform-slice")
    device = api.ok(MATCH, i=theirs)["matchDevice"]["allocation"]["id"]
    assert device
    listed = api.ok('{ devices(filter: {hostnamePrefix: "gpu-0"}) { edges { node { id } } } }')
    [held] = listed["devices"]["edges"]
    report = 'mutation($id: ID!) { reportHealth(id: $id, code: XID, message: "79") { healthy } }'
    api.ok(report, id=held["node"]["id"])
    alerts = [data for kind, _, data in _events(db) if kind == "io.gpuinv.device.health_alert"]
    assert [a["allocations"] for a in alerts] == [["acme-slice"]]  # not the platform's
