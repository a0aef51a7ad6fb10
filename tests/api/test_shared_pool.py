"""The platform's shared pool (DESIGN.md "The pool"): machines without a tenant are matched
by every tenant's provisioner, besides its own; a tenant reads their documents and free
amounts, never who holds them, and only platform staff change them. Two tenants share one
pool server here, each holding a slice of it, through the real server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import AllocationRow, DeviceRow
from tests.support.api import Api, make_tenant, make_token

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
  allocation { environment devices { hostname gpus } } deviceDetails } }"""
DEVICES = "{ devices { edges { node { id hostname tenant freeGpus status document } } } }"
ALLOCATIONS = "{ allocations { edges { node { environment tenant devices { hostname } } } } }"
# A slice of GPUs of any server on the site: the pool's, or the tenant's own.
LABELS = {
    "paas.envmgmt.io/inventory": "vcluster",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "site", "keyInDevice": "site"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}


def _server(hostname: str, gpus: int, **extra: Any) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "totalcpu": 64,
        "totalmemoryMB": 262144,
        "site": "pool-site",
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * gpus,
        **extra,
    }


@pytest.fixture
def tenants(api: Api, db: sessionmaker[Session]) -> dict[str, Api]:
    """The platform's pool server (8 GPUs), tenant A's own 2-GPU server, tenant B with none."""
    make_tenant(db, "pool-a")
    make_tenant(db, "pool-b")
    api.ok(IMPORT, d=json.dumps({"devices": [_server("pool-gpu", 8)]}))
    api.ok(IMPORT, d=json.dumps({"devices": [_server("a-own-gpu", 2, tenant="pool-a")]}))
    return {
        "a": api.as_(make_token(db, "provisioner", "pool-a")),
        "b": api.as_(make_token(db, "provisioner", "pool-b")),
        "a-admin": api.as_(make_token(db, "partner-admin", "pool-a")),
        "b-admin": api.as_(make_token(db, "partner-admin", "pool-b")),
    }


def _match(caller: Api, environment: str, gpus: int) -> dict[str, Any]:
    variables = {"site": "pool-site", "gpu": str(gpus)}
    return caller.ok(
        MATCH, i={"environment": environment, "labels": LABELS, "variables": variables}
    )["matchDevice"]


def test_every_tenant_matches_the_pool_and_usage_is_its_own(
    tenants: dict[str, Api], db: sessionmaker[Session]
) -> None:
    a_slice = _match(tenants["a"], "a-pool-env", 4)  # more than A's own server has
    b_slice = _match(tenants["b"], "b-pool-env", 3)  # B has no server of its own
    assert a_slice["allocation"]["devices"] == [{"hostname": "pool-gpu", "gpus": 4}]
    assert b_slice["allocation"]["devices"] == [{"hostname": "pool-gpu", "gpus": 3}]
    assert b_slice["deviceDetails"]["tenant"] is None  # the pool's, not B's
    with db() as session:
        query = select(AllocationRow.environment, AllocationRow.tenant_id)
        held = {environment: tenant for environment, tenant in session.execute(query)}
        owner = session.scalar(select(DeviceRow.tenant_id).where(DeviceRow.hostname == "pool-gpu"))
    assert owner is None  # the claim leaves the server in the pool
    assert held["a-pool-env"] is not None and held["b-pool-env"] is not None
    assert held["a-pool-env"] != held["b-pool-env"]  # each tenant's own allocation
    # One GPU is left in the pool; A's own server still fits 2, B nothing more.
    assert _match(tenants["a"], "a-own-env", 2)["allocation"]["devices"] == [
        {"hostname": "a-own-gpu", "gpus": 2}
    ]
    error = tenants["b"].error(
        MATCH,
        i={
            "environment": "b-more",
            "labels": LABELS,
            "variables": {"site": "pool-site", "gpu": "2"},
        },
    )
    assert error["extensions"]["code"] == "NO_MATCH"


def test_a_tenant_reads_the_pool_but_never_who_holds_it(tenants: dict[str, Api]) -> None:
    _match(tenants["a"], "a-secret-env", 4)
    _match(tenants["b"], "b-pool-env", 3)
    b_view = tenants["b"].run(DEVICES)
    text = json.dumps(b_view)
    assert "a-secret-env" not in text and "pool-a" not in text and "a-own-gpu" not in text
    [node] = [e["node"] for e in b_view["data"]["devices"]["edges"]]
    assert (node["hostname"], node["tenant"], node["freeGpus"]) == ("pool-gpu", None, 1)
    b_node = tenants["b"].ok(
        "query($id: ID!) { node(id: $id) { ... on Device { hostname freeGpus } } }", id=node["id"]
    )
    assert b_node["node"] == {"hostname": "pool-gpu", "freeGpus": 1}
    # Allocations, the audit log and capacity by tenant show B its own, never A's.
    b_allocations = tenants["b"].ok(ALLOCATIONS)["allocations"]["edges"]
    assert [e["node"]["environment"] for e in b_allocations] == ["b-pool-env"]
    b_audit = json.dumps(tenants["b"].run("{ auditLog { edges { node { objectName } } } }"))
    assert "a-secret-env" not in b_audit
    b_capacity = json.dumps(tenants["b"].run("{ capacity { tenants { tenant gpus } } }"))
    assert "pool-a" not in b_capacity


@pytest.mark.parametrize(
    "mutation",
    [
        'mutation($id: ID!) { updateDevice(id: $id, patch: {rack: "r9"}) { rack } }',
        "mutation($id: ID!) { deleteDevice(id: $id) { id } }",
        "mutation($id: ID!) { setStatus(id: $id, status: MAINTENANCE) { status } }",
        'mutation($id: ID!) { reportHealth(id: $id, code: OTHER, message: "x") { healthy } }',
    ],
)
def test_only_the_platform_changes_the_pool(
    tenants: dict[str, Api], api: Api, mutation: str
) -> None:
    [pool_id] = [
        e["node"]["id"]
        for e in api.ok(DEVICES)["devices"]["edges"]
        if e["node"]["hostname"] == "pool-gpu"
    ]
    before = api.ok(DEVICES)
    error = tenants["a-admin"].error(mutation, id=pool_id)
    assert error["extensions"]["code"] == "FORBIDDEN", error
    assert "pool-gpu" in error["message"] and "shared pool" in error["message"]
    assert api.ok(DEVICES) == before  # nothing changed
