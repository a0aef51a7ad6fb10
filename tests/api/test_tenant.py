"""Tenant isolation: one tenant can neither see nor change another tenant's items."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token

# Every kind, created by a platform admin in a given tenant; returns {kind: id}.
CREATE = {
    "device": (
        "mutation($i: DeviceInput!) { createDevice(input: $i) { id } }",
        lambda t: {
            "hostname": f"{t}-gpu-01",
            "tenant": t,
            "totalCpu": 64,
            "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 2,
            "infiniband": [{"name": "ib0", "rateGbps": 400, "fabric": f"{t}-fabric"}],
        },
    ),
    "vm": (
        "mutation($i: VmInput!) { createVm(input: $i) { id } }",
        lambda t: {"name": f"{t}-vm-01", "tenant": t, "cluster": "c1", "host": f"{t}-gpu-01"},
    ),
    "switch": (
        "mutation($i: SwitchInput!) { createSwitch(input: $i) { id } }",
        lambda t: {"name": f"{t}-leaf-1", "tenant": t, "role": "leaf"},
    ),
    "infiniband": (
        "mutation($i: InfinibandInput!) { createInfiniband(input: $i) { id } }",
        lambda t: {"device": f"{t}-leaf-1", "port": "p1", "tenant": t, "rateGbps": 400},
    ),
}
LISTS = {
    "devices": "{ devices { totalCount edges { node { hostname tenant } } } }",
    "vms": "{ vms { totalCount edges { node { name tenant } } } }",
    "switches": "{ switches { totalCount edges { node { name tenant } } } }",
    "infinibands": "{ infinibands { totalCount edges { node { name tenant } } } }",
}
READ_BACK = """query($id: ID!) { node(id: $id) { id ... on Item { status generation tenant
  project } ... on Machine { document } ... on Switch { document }
  ... on Infiniband { document } } }"""
UPDATES = {
    "device": 'mutation($id: ID!) { updateDevice(id: $id, patch: {rack: "x"}) { id } }',
    "vm": 'mutation($id: ID!) { updateVm(id: $id, patch: {cluster: "x"}) { id } }',
    "switch": 'mutation($id: ID!) { updateSwitch(id: $id, patch: {role: "x"}) { id } }',
    "infiniband": "mutation($id: ID!) { updateInfiniband(id: $id, patch: {rateGbps: 1}) { id } }",
}
DELETES = {
    "device": "mutation($id: ID!) { deleteDevice(id: $id) { id } }",
    "vm": "mutation($id: ID!) { deleteVm(id: $id) { id } }",
    "switch": "mutation($id: ID!) { deleteSwitch(id: $id) { id } }",
    "infiniband": "mutation($id: ID!) { deleteInfiniband(id: $id) { id } }",
}
SET_STATUS = "mutation($id: ID!) { setStatus(id: $id, status: RETIRED) { id } }"


@dataclass
class Fleet:
    admin: Api
    acme: dict[str, str]  # kind -> id
    globex: dict[str, str]

    def snapshot(self, ids: dict[str, str]) -> dict[str, dict]:
        return {kind: self.admin.ok(READ_BACK, id=i)["node"] for kind, i in ids.items()}


@pytest.fixture
def fleet(api: Api, db: sessionmaker[Session]) -> Fleet:
    make_tenant(db, "acme", "ml")
    make_tenant(db, "globex", "web")
    ids: dict[str, dict[str, str]] = {"acme": {}, "globex": {}}
    for tenant in ids:
        for kind, (mutation, document) in CREATE.items():
            data = api.ok(mutation, i=document(tenant))
            ids[tenant][kind] = next(iter(data.values()))["id"]
    return Fleet(api, ids["acme"], ids["globex"])


@pytest.fixture(params=["partner-admin", "viewer"])
def globex(
    request: pytest.FixtureRequest, api: Api, db: sessionmaker[Session], fleet: Fleet
) -> Api:
    """A caller bound to tenant globex."""
    return api.as_(make_token(db, request.param, "globex"))


@pytest.fixture
def globex_admin(api: Api, db: sessionmaker[Session], fleet: Fleet) -> Api:
    return api.as_(make_token(db, "partner-admin", "globex"))


def _names(connection: dict) -> list[tuple[str, str]]:
    return [
        (e["node"].get("hostname") or e["node"]["name"], e["node"]["tenant"])
        for e in connection["edges"]
    ]


@pytest.mark.parametrize("query", sorted(LISTS))
def test_lists_show_only_the_callers_tenant(globex: Api, fleet: Fleet, query: str) -> None:
    mine = globex.ok(LISTS[query])[query]
    everything = fleet.admin.ok(LISTS[query])[query]
    assert {tenant for _, tenant in _names(everything)} == {"acme", "globex"}
    assert _names(mine) and all(tenant == "globex" for _, tenant in _names(mine))
    assert mine["totalCount"] == len(mine["edges"]) == everything["totalCount"] // 2


def test_devices_list_shows_only_own_ports_and_gpus(globex: Api, fleet: Fleet) -> None:
    ports = globex.ok("{ infinibands { edges { node { name device } } } }")["infinibands"]
    assert sorted(e["node"]["name"] for e in ports["edges"]) == [
        "globex-gpu-01:ib0",
        "globex-leaf-1:p1",
    ]
    documents = globex.ok(
        "{ devices(filter: {kind: [BAREMETAL, VM]}) { edges { node { document } } } }"
    )["devices"]["edges"]
    assert {d["node"]["document"]["hostname"] for d in documents} == {
        "globex-gpu-01",
        "globex-vm-01",
    }


def test_filtering_on_another_tenant_reads_like_an_unknown_tenant(globex: Api) -> None:
    other = globex.error('{ devices(filter: {tenant: "acme"}) { totalCount } }')
    unknown = globex.error('{ devices(filter: {tenant: "initech"}) { totalCount } }')
    assert other["extensions"]["code"] == unknown["extensions"]["code"] == "NOT_FOUND"
    assert other["message"] == "tenant 'acme' not found"
    assert unknown["message"] == "tenant 'initech' not found"
    own = globex.ok('{ devices(filter: {tenant: "globex"}) { totalCount } }')
    assert own["devices"]["totalCount"] == 1


@pytest.mark.parametrize("kind", sorted(CREATE))
def test_node_of_another_tenant_is_not_found_like_a_random_id(
    globex: Api, fleet: Fleet, kind: str
) -> None:
    item_id = fleet.acme[kind]
    random_id = str(uuid.uuid4())
    hidden = globex.run(READ_BACK, id=item_id)
    missing = globex.run(READ_BACK, id=random_id)
    assert hidden["data"] == missing["data"] == {"node": None}
    assert (
        hidden["errors"][0]["extensions"]
        == missing["errors"][0]["extensions"]
        == {"code": "NOT_FOUND"}
    )
    assert hidden["errors"][0]["message"] == f"item {item_id!r} not found"
    assert missing["errors"][0]["message"] == f"item {random_id!r} not found"
    own = globex.ok(READ_BACK, id=fleet.globex[kind])["node"]
    assert own["id"] == fleet.globex[kind] and own["tenant"] == "globex"


@pytest.mark.parametrize("kind", sorted(CREATE))
@pytest.mark.parametrize("operation", ["update", "delete", "setStatus"])
def test_another_tenants_item_cannot_be_changed_and_stays_as_it_was(
    globex_admin: Api, fleet: Fleet, kind: str, operation: str
) -> None:
    before = fleet.snapshot(fleet.acme)
    item_id = fleet.acme[kind]
    mutation = {"update": UPDATES[kind], "delete": DELETES[kind], "setStatus": SET_STATUS}[
        operation
    ]
    hidden = globex_admin.error(mutation, id=item_id)
    missing_id = str(uuid.uuid4())
    missing = globex_admin.error(mutation, id=missing_id)
    assert hidden["extensions"] == missing["extensions"] == {"code": "NOT_FOUND"}
    assert hidden["message"] == missing["message"].replace(missing_id, item_id)
    assert fleet.snapshot(fleet.acme) == before


@pytest.mark.parametrize("kind", sorted(CREATE))
def test_own_items_can_be_changed(globex_admin: Api, fleet: Fleet, kind: str) -> None:
    item_id = fleet.globex[kind]
    globex_admin.ok(UPDATES[kind], id=item_id)
    changed = globex_admin.ok(SET_STATUS, id=item_id)["setStatus"]
    assert changed == {"id": item_id}
    assert globex_admin.ok(READ_BACK, id=item_id)["node"]["status"] == "RETIRED"
    globex_admin.ok(DELETES[kind], id=item_id)
    assert globex_admin.error(READ_BACK, id=item_id)["extensions"]["code"] == "NOT_FOUND"


# Names are unique per namespace (a tenant, or the platform): another tenant's names are
# free to use, and using one neither shows nor touches that tenant's items.


def test_a_vm_named_like_another_tenants_device_neither_shows_nor_deletes_its_ports(
    globex_admin: Api, fleet: Fleet
) -> None:
    before = fleet.snapshot(fleet.acme)
    vm = globex_admin.ok(
        'mutation { createVm(input: {name: "acme-gpu-01"}) '
        "{ id tenant infiniband { name } document } }"
    )["createVm"]
    assert vm["tenant"] == "globex"
    assert vm["infiniband"] == [] and vm["document"]["infiniband"] == []
    listed = globex_admin.ok(
        '{ vms(filter: {hostnamePrefix: "acme"}) { edges { node { infiniband { name } } } } }'
    )["vms"]["edges"]
    assert listed == [{"node": {"infiniband": []}}]
    globex_admin.ok("mutation($id: ID!) { deleteVm(id: $id) { id } }", id=vm["id"])
    assert fleet.snapshot(fleet.acme) == before
    assert before["device"]["document"]["infiniband"][0]["name"] == "ib0"


def test_a_device_named_like_another_tenants_switch_shows_none_of_its_ports(
    globex_admin: Api, fleet: Fleet
) -> None:
    device = globex_admin.ok(
        'mutation { createDevice(input: {hostname: "acme-leaf-1"}) { document } }'
    )["createDevice"]
    assert device["document"]["infiniband"] == []


def test_a_port_named_like_another_tenants_port_is_the_callers_own(
    globex_admin: Api, fleet: Fleet
) -> None:
    before = fleet.snapshot(fleet.acme)
    vm = globex_admin.ok(
        'mutation { createVm(input: {name: "acme-gpu-01", infiniband: [{name: "ib0"}]}) '
        "{ tenant infiniband { name } } }"
    )["createVm"]
    assert vm == {"tenant": "globex", "infiniband": [{"name": "ib0"}]}
    assert globex_admin.ok(LISTS["vms"])["vms"]["totalCount"] == 2
    assert fleet.snapshot(fleet.acme) == before


def test_a_port_on_another_tenants_device_is_not_found_like_an_unknown_device(
    globex_admin: Api, fleet: Fleet
) -> None:
    before = fleet.snapshot(fleet.acme)
    create = 'mutation($d: String!) { createInfiniband(input: {device: $d, port: "ib9"}) { id } }'
    theirs = globex_admin.error(create, d="acme-gpu-01")
    unknown = globex_admin.error(create, d="no-such-gpu-01")
    assert theirs["extensions"] == unknown["extensions"] == {"code": "NOT_FOUND"}
    assert theirs["message"] == "device 'acme-gpu-01' not found"
    assert unknown["message"] == "device 'no-such-gpu-01' not found"
    assert fleet.snapshot(fleet.acme) == before


def test_moving_a_device_to_another_tenant_moves_its_ports(api: Api, fleet: Fleet) -> None:
    moved = api.ok(
        'mutation($id: ID!) { updateDevice(id: $id, patch: {tenant: "globex"}) '
        "{ tenant infiniband { name } } }",
        id=fleet.acme["device"],
    )["updateDevice"]
    assert moved == {"tenant": "globex", "infiniband": [{"name": "ib0"}]}
    port = api.ok('{ infinibands(filter: {device: "acme-gpu-01"}) { edges { node { tenant } } } }')[
        "infinibands"
    ]["edges"]
    assert port == [{"node": {"tenant": "globex"}}]


def test_an_allocated_device_keeps_its_tenant_until_released(
    api: Api, db: sessionmaker[Session], fleet: Fleet
) -> None:
    labels = {"paas.envmgmt.io/inventory": "baremetal", "paas.envmgmt.io/inventory.config": "[]"}
    api.ok(
        "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }",
        i={"environment": "held", "labels": labels, "variables": {}, "tenant": "acme"},
    )
    move = 'mutation($id: ID!) { updateDevice(id: $id, patch: {tenant: "globex"}) { tenant } }'
    error = api.error(move, id=fleet.acme["device"])
    assert error["extensions"]["code"] == "DEVICE_ALLOCATED"
    assert "release its allocation before moving it" in error["message"]
    acme = api.as_(make_token(db, "provisioner", "acme"))  # environments are per tenant
    acme.ok('mutation { releaseAllocation(environment: "held") { id } }')
    assert api.ok(move, id=fleet.acme["device"])["updateDevice"] == {"tenant": "globex"}


def test_tenants_lists_only_the_callers_tenant(api: Api, globex: Api, fleet: Fleet) -> None:
    assert [t["slug"] for t in api.ok("{ tenants { slug } }")["tenants"]] == ["acme", "globex"]
    assert globex.ok("{ tenants { slug name } }")["tenants"] == [
        {"slug": "globex", "name": "globex"}
    ]


def test_a_platform_wide_viewer_sees_every_tenant(
    api: Api, db: sessionmaker[Session], fleet: Fleet
) -> None:
    viewer = api.as_(make_token(db, "viewer"))
    assert [t["slug"] for t in viewer.ok("{ tenants { slug } }")["tenants"]] == ["acme", "globex"]
    assert viewer.ok(LISTS["devices"])["devices"]["totalCount"] == 2


def test_projects_of_another_tenant_are_not_found(globex: Api) -> None:
    mine = globex.ok('{ projects(tenant: "globex") { slug tenant } }')["projects"]
    assert mine == [{"slug": "web", "tenant": "globex"}]
    error = globex.error('{ projects(tenant: "acme") { slug } }')
    assert error["extensions"] == {"code": "NOT_FOUND"}
    assert error["message"] == "tenant 'acme' not found"


def test_partner_admin_creates_projects_in_its_own_tenant_only(api: Api, globex_admin: Api) -> None:
    created = globex_admin.ok(
        'mutation { createProject(tenant: "globex", slug: "batch", '
        'name: "Batch jobs") { slug name tenant } }'
    )["createProject"]
    assert created == {"slug": "batch", "name": "Batch jobs", "tenant": "globex"}
    error = globex_admin.error('mutation { createProject(tenant: "acme", slug: "batch") { slug } }')
    assert error["extensions"] == {"code": "NOT_FOUND"}
    assert error["message"] == "tenant 'acme' not found"
    acme = api.ok('{ projects(tenant: "acme") { slug } }')["projects"]
    assert acme == [{"slug": "ml"}]


def test_create_project_refuses_duplicates_and_bad_slugs(api: Api, fleet: Fleet) -> None:
    duplicate = api.error('mutation { createProject(tenant: "acme", slug: "ml") { slug } }')
    assert duplicate["extensions"] == {"code": "BAD_INPUT", "field": "slug"}
    assert duplicate["message"] == "slug: project 'ml' already exists in tenant 'acme'"
    bad = api.error('mutation { createProject(tenant: "acme", slug: "Not A Slug") { slug } }')
    assert bad["extensions"] == {"code": "BAD_INPUT", "field": "slug"}
    assert "'Not A Slug' is not a valid slug" in bad["message"]
    same_slug_elsewhere = api.ok(
        'mutation { createProject(tenant: "globex", slug: "ml") { slug tenant } }'
    )["createProject"]
    assert same_slug_elsewhere == {"slug": "ml", "tenant": "globex"}


def test_items_may_be_assigned_to_a_project_of_their_own_tenant_only(globex_admin: Api) -> None:
    create = "mutation($i: DeviceInput!) { createDevice(input: $i) { tenant project } }"
    ok = globex_admin.ok(create, i={"hostname": "g-02", "project": "web"})["createDevice"]
    assert ok == {"tenant": "globex", "project": "web"}
    error = globex_admin.error(create, i={"hostname": "g-03", "project": "ml"})
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"] == "project: project 'ml' not found in tenant 'globex'"


def test_a_tenant_reads_the_syncs_health_but_not_its_error_text(
    api: Api, db: sessionmaker[Session]
) -> None:
    """The sync's error and summary name whichever item failed, of any tenant."""
    from api.db.base import utcnow
    from api.db.models import SyncStateRow
    from api.db.session import unit_of_work

    make_tenant(db, "acme")
    with unit_of_work(db) as session:
        session.add(
            SyncStateRow(
                source="netbox",
                leader="worker-1:42",
                last_error="baremetal 'beta-gpu-02' (update): NetBox answered 502",
                last_error_at=utcnow(),
                last_summary={"update": 1, "notes": ["beta-gpu-03: no GPUs"]},
            )
        )
    query = "{ syncState { leader lastError lastErrorAt lastSummary } }"
    staff = api.ok(query)["syncState"]
    assert staff["leader"] == "worker-1:42" and "beta-gpu-02" in staff["lastError"]
    tenant = api.as_(make_token(db, "viewer", "acme")).ok(query)["syncState"]
    assert tenant["lastError"] == "the last sync failed; platform staff can see why"
    assert tenant["leader"] is None and tenant["lastSummary"] is None
    assert tenant["lastErrorAt"] == staff["lastErrorAt"]
