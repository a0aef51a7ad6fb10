"""importInventory: JSON and CSV bulk upload, upsert by name, validated as a whole."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import DeviceRow
from api.db.session import unit_of_work
from tests.support.api import Api, make_tenant, make_token

IMPORT = """mutation($format: ImportFormat!, $data: String!) {
  importInventory(format: $format, data: $data) { created updated unchanged } }"""
ALL_DEVICES = """{ devices(filter: {kind: [BAREMETAL, VM]}, first: 500) { totalCount
  edges { node { id hostname kind generation rack tenant status freeGpus document } } } }"""
COUNTS = """{ devices(filter: {kind: [BAREMETAL, VM]}) { totalCount }
  switches { totalCount } infinibands { totalCount } }"""


def run_import(api: Api, data: Any, fmt: str = "JSON") -> dict[str, Any]:
    text = data if isinstance(data, str) else json.dumps(data)
    return api.run(IMPORT, format=fmt, data=text)


def imported(api: Api, data: Any, fmt: str = "JSON") -> dict[str, int]:
    body = run_import(api, data, fmt)
    assert not body.get("errors"), body["errors"]
    return body["data"]["importInventory"]


def refused(api: Api, data: Any, fmt: str = "JSON") -> dict[str, Any]:
    """The one BAD_INPUT of a failed import."""
    body = run_import(api, data, fmt)
    assert body["data"] is None, body
    assert len(body["errors"]) == 1
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"].endswith("nothing was written")
    return error


def counts(api: Api) -> tuple[int, int, int]:
    data = api.ok(COUNTS)
    return (
        data["devices"]["totalCount"],
        data["switches"]["totalCount"],
        data["infinibands"]["totalCount"],
    )


def devices_by_name(api: Api) -> dict[str, dict[str, Any]]:
    edges = api.ok(ALL_DEVICES)["devices"]["edges"]
    return {e["node"]["hostname"]: e["node"] for e in edges}


def server(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "hostname": name,
        "manufacturer": "Supermicro",
        "model": "AS-8125GS",
        "totalcpu": 128,
        "totalmemoryMB": 1048576,
        "totalstorageGB": 15360,
        "gpus": [{"vendorCode": "AMD", "modelNo": "MI300X", "memoryMB": 196608}] * 8,
        "tags": {"gputype": "MI300X", "location": "us"},
        "site": "dfw-1",
        **extra,
    }


FLEET = {
    "devices": [
        server(
            "gpu-01",
            infiniband=[{"name": "ib0", "rateGbps": 400, "fabric": "fab-a", "switch": "ib-leaf-1"}],
        ),
        server("gpu-02"),
        server("gpu-03", totalgpus=8),
    ],
    "vms": [{"hostname": "vm-01", "totalcpu": 16, "cluster": "k8s-a", "host": "gpu-02"}],
    "switches": [
        {"name": "ib-leaf-1", "role": "leaf", "fabric": "fab-a", "managementAddress": "10.0.0.1"}
    ],
    "infinibands": [{"device": "ib-leaf-1", "port": "p1", "rateGbps": 400, "fabric": "fab-a"}],
}


# --- JSON ---------------------------------------------------------------------------------


def test_json_import_creates_every_kind(api: Api) -> None:
    assert imported(api, FLEET) == {"created": 6, "updated": 0, "unchanged": 0}
    assert counts(api) == (4, 1, 2)  # gpu-01's ib0 is a port too
    devices = devices_by_name(api)
    assert devices["vm-01"]["kind"] == "VM"
    assert devices["vm-01"]["document"]["cluster"] == "k8s-a"
    gpu = devices["gpu-01"]["document"]
    assert gpu["totalgpus"] == 8 and {g["vendorCode"] for g in gpu["gpus"]} == {"AMD"}
    assert gpu["infiniband"] == [
        {"name": "ib0", "rateGbps": 400, "fabric": "fab-a", "switch": "ib-leaf-1"}
    ]


def test_reimporting_the_same_json_changes_nothing(api: Api) -> None:
    imported(api, FLEET)
    before = devices_by_name(api)
    assert imported(api, FLEET) == {"created": 0, "updated": 0, "unchanged": 6}
    assert devices_by_name(api) == before  # same generations, same documents


def test_reimport_counts_updates_and_creates(api: Api) -> None:
    imported(api, FLEET)
    changed = json.loads(json.dumps(FLEET))
    changed["devices"][1]["rack"] = "r12"
    changed["devices"].append(server("gpu-04"))
    changed["switches"][0]["role"] = "spine"
    assert imported(api, changed) == {"created": 1, "updated": 2, "unchanged": 4}
    devices = devices_by_name(api)
    assert devices["gpu-02"]["rack"] == "r12" and devices["gpu-02"]["generation"] == 2
    assert devices["gpu-01"]["generation"] == 1


def test_a_bare_list_is_a_list_of_devices(api: Api) -> None:
    assert imported(api, [server("gpu-01")]) == {"created": 1, "updated": 0, "unchanged": 0}
    assert devices_by_name(api)["gpu-01"]["kind"] == "BAREMETAL"


def test_an_imported_id_is_ignored(api: Api) -> None:
    given = "00000000-0000-4000-8000-000000000001"
    imported(api, [server("gpu-01", id=given)])
    assert devices_by_name(api)["gpu-01"]["id"] != given


# --- what goes in comes back out ----------------------------------------------------------

DOCUMENTED = """mutation($i: DeviceInput!) { createDevice(input: $i) { id document } }"""


def test_an_exported_device_document_reimports_unchanged(
    api: Api, db: sessionmaker[Session]
) -> None:
    make_tenant(db, "acme", "ml")
    created = api.ok(
        DOCUMENTED,
        i={
            "hostname": "dgx-01",
            "manufacturer": "NVIDIA",
            "model": "DGX H100",
            "serial": "S1",
            "totalCpu": 224,
            "totalMemoryMB": 2097152,
            "totalStorageGB": 30720,
            "gpus": [{"vendorCode": "nvidia", "modelNo": "H100-SXM5-80GB", "memoryMB": 81920}] * 8,
            "tags": {"gputype": "H100", "location": "india"},
            "site": "blr-1",
            "location": "hall-2",
            "rack": "r12",
            "tenant": "acme",
            "project": "ml",
            "infiniband": [
                {"name": "ib0", "rateGbps": 400, "fabric": "fabric-a", "switch": "ib-leaf-3"},
                {"name": "ib1", "rateGbps": 400, "fabric": "fabric-b"},
            ],
        },
    )["createDevice"]
    document = created["document"]
    assert imported(api, {"devices": [document]}) == {"created": 0, "updated": 0, "unchanged": 1}
    again = devices_by_name(api)["dgx-01"]
    assert again["document"] == document and again["generation"] == 1


def test_an_exported_vm_document_reimports_unchanged(api: Api) -> None:
    imported(api, FLEET)
    document = devices_by_name(api)["vm-01"]["document"]
    assert document["kind"] == "vm" and document["host"] == "gpu-02"
    assert imported(api, {"vms": [document]}) == {"created": 0, "updated": 0, "unchanged": 1}


def test_an_exported_document_recreates_the_device_after_a_delete(api: Api) -> None:
    imported(api, FLEET)
    old = devices_by_name(api)["gpu-01"]
    api.ok("mutation($id: ID!) { deleteDevice(id: $id) { id } }", id=old["id"])
    assert imported(api, [old["document"]]) == {"created": 1, "updated": 0, "unchanged": 0}
    new = devices_by_name(api)["gpu-01"]
    assert new["id"] != old["id"]
    assert {**new["document"], "id": old["id"]} == old["document"]


# --- CSV ----------------------------------------------------------------------------------

CSV = (
    (
        "hostname,kind,manufacturer,totalcpu,totalmemoryMB,gpuCount,gpuVendor,gpuModel,"
        "gpuMemoryMB,site,tags.location,cluster,host\n"
    )
    + """\
gpu-01,baremetal,Dell,112,1048576,8,nvidia,H200,143360,blr-1,india,,
gpu-02,,Dell,112,1048576,4,amd,MI300X,196608,blr-1,india,,
vm-01,vm,,8,65536,,,,,blr-1,,k8s-a,gpu-01
"""
)


def test_csv_import_creates_devices_and_vms(api: Api) -> None:
    assert imported(api, CSV, "CSV") == {"created": 3, "updated": 0, "unchanged": 0}
    devices = devices_by_name(api)
    gpu = devices["gpu-01"]["document"]
    assert gpu["totalgpus"] == 8 and gpu["totalcpu"] == 112
    assert gpu["gpus"][0] == {
        "index": 0,
        "vendorCode": "NVIDIA",
        "modelNo": "H200",
        "memoryMB": 143360,
    }
    assert gpu["tags"] == {"location": "india"}
    assert devices["gpu-02"]["kind"] == "BAREMETAL"  # an empty kind means baremetal
    vm = devices["vm-01"]["document"]
    assert (vm["kind"], vm["cluster"], vm["host"], vm["gpus"]) == ("vm", "k8s-a", "gpu-01", [])


def test_reimporting_the_same_csv_changes_nothing(api: Api) -> None:
    imported(api, CSV, "CSV")
    before = devices_by_name(api)
    assert imported(api, CSV, "CSV") == {"created": 0, "updated": 0, "unchanged": 3}
    assert devices_by_name(api) == before


def test_csv_and_json_describe_the_same_device_alike(api: Api) -> None:
    imported(api, CSV, "CSV")
    document = devices_by_name(api)["gpu-01"]["document"]
    assert imported(api, [document]) == {"created": 0, "updated": 0, "unchanged": 1}


def test_a_bad_csv_row_fails_the_whole_import_naming_row_and_field(api: Api) -> None:
    bad = CSV.replace("gpu-02,,Dell,112", "gpu-02,,Dell,lots")
    error = refused(api, bad, "CSV")
    assert error["extensions"]["errors"] == [
        {"row": 3, "field": "totalcpu", "message": "must be a whole number, got 'lots'"}
    ]
    assert error["message"].startswith("row 3, field 'totalcpu'")
    assert counts(api) == (0, 0, 0)


def test_an_unknown_csv_column_is_refused(api: Api) -> None:
    error = refused(api, "hostname,gpus\ngpu-01,8\n", "CSV")
    assert error["extensions"]["errors"] == [
        {"row": 1, "field": "gpus", "message": "unknown column 'gpus'"}
    ]
    assert counts(api) == (0, 0, 0)


# --- all or nothing -----------------------------------------------------------------------


def test_a_bad_row_anywhere_writes_nothing(api: Api) -> None:
    rows = [server(f"gpu-{i:02d}") for i in range(1, 8)]
    rows[5]["totalcpu"] = -4
    error = refused(api, {"devices": rows})
    assert error["extensions"]["errors"] == [
        {
            "row": 6,
            "field": "totalcpu",
            "message": "must not be negative, got -4",
            "section": "devices",
        }
    ]
    assert error["extensions"]["errorCount"] == 1
    assert "devices row 6, field 'totalcpu'" in error["message"]
    assert counts(api) == (0, 0, 0)


def test_a_failed_import_leaves_earlier_updates_and_creates_undone(
    api: Api, db: sessionmaker[Session]
) -> None:
    imported(api, FLEET)
    before = devices_by_name(api)
    changed = json.loads(json.dumps(FLEET))
    changed["devices"][0]["rack"] = "moved"  # an update, applied before the bad row
    changed["devices"].append(server("gpu-09"))  # a create
    changed["vms"].append({"hostname": "vm-02", "tenant": "initech"})  # fails last
    error = refused(api, changed)
    assert error["extensions"]["errors"] == [
        {"row": 2, "field": "tenant", "message": "tenant 'initech' not found", "section": "vms"}
    ]
    assert devices_by_name(api) == before
    assert counts(api) == (4, 1, 2)


def test_every_bad_field_of_every_row_is_listed(api: Api) -> None:
    rows = [
        server("gpu-01", totalcpu="many"),
        server("gpu-02"),
        server("gpu-03", status="broken", site=7.5),
    ]
    error = refused(api, {"devices": rows})
    listed = {(e["row"], e["field"]) for e in error["extensions"]["errors"]}
    assert listed == {(1, "totalcpu"), (3, "status"), (3, "site")}
    assert error["extensions"]["errorCount"] == 3
    assert "(and 2 more)" in error["message"]


def test_unknown_tenant_in_a_row_is_bad_input(api: Api, db: sessionmaker[Session]) -> None:
    make_tenant(db, "acme")
    rows = [server("gpu-01", tenant="acme"), server("gpu-02", tenant="initech")]
    error = refused(api, {"devices": rows})
    assert error["extensions"]["errors"] == [
        {"row": 2, "field": "tenant", "message": "tenant 'initech' not found", "section": "devices"}
    ]
    assert counts(api) == (0, 0, 0)


def test_status_allocated_is_refused(api: Api) -> None:
    error = refused(api, {"devices": [server("gpu-01"), server("gpu-02", status="allocated")]})
    assert error["extensions"]["errors"] == [
        {
            "row": 2,
            "field": "status",
            "section": "devices",
            "message": "'allocated' is set by matchDevice, not by an import or edit",
        }
    ]
    assert counts(api) == (0, 0, 0)


def test_a_kind_contradicting_the_section_is_refused(api: Api) -> None:
    error = refused(api, {"devices": [server("gpu-01", kind="vm")]})
    assert error["extensions"]["errors"] == [
        {
            "row": 1,
            "field": "kind",
            "section": "devices",
            "message": "is 'vm' but the item is listed as 'baremetal'",
        }
    ]
    switch = refused(api, {"switches": [{"name": "leaf-1", "kind": "baremetal"}]})
    assert switch["extensions"]["errors"][0]["field"] == "kind"
    assert counts(api) == (0, 0, 0)


def test_totalgpus_must_match_the_listed_gpus(api: Api) -> None:
    error = refused(api, {"devices": [server("gpu-01", totalgpus=4)]})
    assert error["extensions"]["errors"] == [
        {
            "row": 1,
            "field": "totalgpus",
            "section": "devices",
            "message": "is 4 but 8 gpus are listed",
        }
    ]
    assert counts(api) == (0, 0, 0)


def test_a_hostname_listed_twice_is_refused(api: Api) -> None:
    error = refused(api, {"devices": [server("gpu-01"), server("gpu-02"), server("gpu-01")]})
    assert error["extensions"]["errors"] == [
        {
            "row": 3,
            "field": "hostname",
            "section": "devices",
            "message": "'gpu-01' is listed twice (also devices row 1)",
        }
    ]
    assert counts(api) == (0, 0, 0)


def test_a_hostname_listed_twice_in_csv_is_refused(api: Api) -> None:
    error = refused(api, "hostname,totalcpu\ngpu-01,8\ngpu-01,16\n", "CSV")
    assert error["extensions"]["errors"] == [
        {"row": 3, "field": "hostname", "message": "'gpu-01' is listed twice (also row 2)"}
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{", "data: not valid JSON"),
        ('"devices"', "data: must be a JSON object"),
        ('{"servers": []}', "data: unknown section(s) 'servers'"),
        ('{"devices": {"hostname": "x"}}', "data.devices: must be a list, got dict"),
    ],
)
def test_malformed_json_data_is_bad_input(api: Api, data: str, message: str) -> None:
    body = run_import(api, data)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"].startswith(message)


def test_import_never_touches_allocation_state(api: Api, db: sessionmaker[Session]) -> None:
    imported(api, [server("gpu-01")])
    with unit_of_work(db) as session:  # as matchDevice would leave it
        session.execute(
            update(DeviceRow)
            .where(DeviceRow.hostname == "gpu-01")
            .values(status="allocated", free_gpus=0)
        )
    assert imported(api, [server("gpu-01", status="maintenance", rack="r1")]) == {
        "created": 0,
        "updated": 1,
        "unchanged": 0,
    }
    device = devices_by_name(api)["gpu-01"]
    assert (device["status"], device["freeGpus"], device["rack"]) == ("ALLOCATED", 0, "r1")
    shrink = refused(api, [server("gpu-01", gpus=[], totalgpus=4)])
    assert shrink["extensions"]["errors"] == [
        {
            "row": 1,
            "field": "totalgpus",
            "section": "devices",
            "message": "cannot shrink to 4: 8 are allocated",
        }
    ]


def test_an_import_naming_another_tenant_upserts_in_that_namespace(
    api: Api, db: sessionmaker[Session]
) -> None:
    """Import upserts by (namespace, name): the platform's gpu-01 and acme's gpu-01 are
    two devices. Moving a device between tenants is updateDevice's job."""
    make_tenant(db, "acme")
    imported(api, FLEET)
    copy = {key: value for key, value in FLEET["devices"][0].items() if key != "infiniband"}
    assert imported(api, [{**copy, "tenant": "acme"}]) == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
    }
    found = api.ok(
        '{ devices(filter: {hostnamePrefix: "gpu-01"}) '
        "{ edges { node { tenant infiniband { name } } } } }"
    )["devices"]["edges"]
    assert sorted(found, key=lambda e: e["node"]["tenant"] or "~") == [
        {"node": {"tenant": "acme", "infiniband": []}},
        {"node": {"tenant": None, "infiniband": [{"name": "ib0"}]}},
    ]


def test_a_new_device_whose_port_name_is_held_in_its_namespace_is_refused(
    api: Api, db: sessionmaker[Session]
) -> None:
    make_tenant(db, "acme")
    imported(api, {"switches": [{"name": "gpu-01", "role": "leaf"}]})
    api.ok('mutation { createInfiniband(input: {device: "gpu-01", port: "ib0"}) { id } }')
    error = refused(api, [server("gpu-02"), server("gpu-01", infiniband=[{"name": "ib0"}])])
    assert error["extensions"]["errors"] == [
        {
            "row": 2,
            "field": "infiniband",
            "message": "port 'gpu-01:ib0' is taken",
            "section": "devices",
        }
    ]
    assert counts(api) == (0, 1, 1)
    # In another namespace the same port name is free: acme's own gpu-01:ib0.
    owned = [server("gpu-01", tenant="acme", infiniband=[{"name": "ib0"}])]
    assert imported(api, owned) == {"created": 1, "updated": 0, "unchanged": 0}


# --- tenants ------------------------------------------------------------------------------


@pytest.fixture
def partner(api: Api, db: sessionmaker[Session]) -> Api:
    """A partner admin of globex; acme owns gpu-01."""
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    imported(api, [server("gpu-01", tenant="acme")])
    return api.as_(make_token(db, "partner-admin", "globex"))


def test_partner_admin_imports_into_its_own_tenant(api: Api, partner: Api) -> None:
    assert imported(partner, [server("g-01")]) == {"created": 1, "updated": 0, "unchanged": 0}
    assert devices_by_name(api)["g-01"]["tenant"] == "globex"
    assert [n for n in devices_by_name(partner)] == ["g-01"]


def test_partner_admin_import_of_another_tenants_hostname_creates_its_own(
    api: Api, partner: Api
) -> None:
    before = devices_by_name(api)
    result = imported(partner, [server("g-01"), server("gpu-01", rack="own")])
    assert result == {"created": 2, "updated": 0, "unchanged": 0}
    own = devices_by_name(partner)
    assert sorted(own) == ["g-01", "gpu-01"] and own["gpu-01"]["tenant"] == "globex"
    acme = [d for d in api.ok(ALL_DEVICES)["devices"]["edges"] if d["node"]["tenant"] == "acme"]
    assert [d["node"] for d in acme] == [before["gpu-01"]]


def test_partner_admin_import_naming_another_tenant_reads_like_an_unknown_one(partner: Api) -> None:
    other = refused(partner, [server("g-01", tenant="acme")])
    unknown = refused(partner, [server("g-01", tenant="initech")])
    assert other["extensions"]["errors"] == [
        {"row": 1, "field": "tenant", "message": "tenant 'acme' not found", "section": "devices"}
    ]
    assert unknown["extensions"]["errors"][0]["message"] == "tenant 'initech' not found"


def test_partner_admin_import_of_another_tenants_switch_name_creates_its_own(
    api: Api, partner: Api
) -> None:
    imported(api, {"switches": [{"name": "leaf-1", "tenant": "acme", "role": "leaf"}]})
    result = imported(partner, {"switches": [{"name": "leaf-1", "role": "spine"}]})
    assert result == {"created": 1, "updated": 0, "unchanged": 0}
    roles = api.ok("{ switches { edges { node { tenant role } } } }")["switches"]["edges"]
    assert sorted((e["node"]["tenant"], e["node"]["role"]) for e in roles) == [
        ("acme", "leaf"),
        ("globex", "spine"),
    ]


def test_one_import_may_hold_a_name_for_two_namespaces(api: Api, db: sessionmaker[Session]) -> None:
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    rows = [server("gpu-01", tenant="acme"), server("gpu-01", tenant="globex"), server("gpu-01")]
    assert imported(api, rows) == {"created": 3, "updated": 0, "unchanged": 0}
    error = refused(api, [server("gpu-02", tenant="acme"), server("gpu-02", tenant="acme")])
    assert (
        error["extensions"]["errors"][0]["message"]
        == "'gpu-02' is listed twice (also devices row 1)"
    )
