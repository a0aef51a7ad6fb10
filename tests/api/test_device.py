"""Devices through the GraphQL API: create, read, update, delete, documents."""

from __future__ import annotations

from tests.support.api import Api

CREATE = """
mutation($input: DeviceInput!) {
  createDevice(input: $input) { id hostname status totalGpus freeGpus generation
    gpus { index vendorCode modelNo memoryMB } tags document }
}"""

H100 = {
    "hostname": "server-42",
    "manufacturer": "NVIDIA",
    "model": "DGX H100",
    "totalCpu": 224,
    "totalMemoryMB": 2097152,
    "totalStorageGB": 30720,
    "gpus": [{"vendorCode": "nvidia", "modelNo": "H100-SXM5-80GB", "memoryMB": 81920}] * 8,
    "tags": {"gputype": "H100", "location": "india"},
    "site": "blr-1",
    "infiniband": [{"name": "ib0", "rateGbps": 400, "fabric": "fabric-a", "switch": "leaf-1"}],
}


def test_create_device_renders_the_device_document(api: Api) -> None:
    device = api.ok(CREATE, input=H100)["createDevice"]
    assert device["status"] == "AVAILABLE"
    assert device["totalGpus"] == 8 and device["freeGpus"] == 8
    assert [g["index"] for g in device["gpus"]] == list(range(8))
    assert {g["vendorCode"] for g in device["gpus"]} == {"NVIDIA"}
    document = device["document"]
    assert document["id"] == device["id"]
    assert document["hostname"] == "server-42" and document["kind"] == "baremetal"
    assert document["totalcpu"] == 224 and document["totalgpus"] == 8
    assert document["tags"] == {"gputype": "H100", "location": "india"}
    assert document["infiniband"] == [
        {"name": "ib0", "rateGbps": 400, "fabric": "fabric-a", "switch": "leaf-1"}
    ]
    assert document["source"] == {"system": "manual"}


def test_update_bumps_generation_and_refuses_a_stale_one(api: Api) -> None:
    device = api.ok(CREATE, input=H100)["createDevice"]
    update = """mutation($id: ID!, $g: Int) { updateDevice(id: $id, patch: {rack: "r7"},
                expectedGeneration: $g) { rack generation } }"""
    updated = api.ok(update, id=device["id"], g=device["generation"])["updateDevice"]
    assert updated == {"rack": "r7", "generation": device["generation"] + 1}
    stale = api.error(update, id=device["id"], g=device["generation"])
    assert stale["extensions"]["code"] == "CONCURRENT_UPDATE"


def test_delete_removes_the_device_and_its_ports(api: Api) -> None:
    device = api.ok(CREATE, input=H100)["createDevice"]
    api.ok("mutation($id: ID!) { deleteDevice(id: $id) { id } }", id=device["id"])
    missing = api.error("query($id: ID!) { node(id: $id) { id } }", id=device["id"])
    assert missing["extensions"]["code"] == "NOT_FOUND"
    ports = api.ok("{ infinibands { edges { node { name } } } }")["infinibands"]["edges"]
    assert ports == []


def test_a_vm_named_like_a_device_does_not_share_its_ports(api: Api) -> None:
    device = api.ok(CREATE, input=H100)["createDevice"]
    vm = api.ok(
        'mutation { createVm(input: {name: "server-42", infiniband: [{name: "ib9"}]}) '
        "{ id document } }"
    )["createVm"]
    assert [p["name"] for p in vm["document"]["infiniband"]] == ["ib9"]
    read = api.ok(
        "query($id: ID!) { node(id: $id) { ... on Device { infiniband { name } } } }",
        id=device["id"],
    )["node"]
    assert [p["name"] for p in read["infiniband"]] == ["ib0"]
    api.ok("mutation($id: ID!) { deleteVm(id: $id) { id } }", id=vm["id"])
    read = api.ok(
        "query($id: ID!) { node(id: $id) { ... on Device { infiniband { name } } } }",
        id=device["id"],
    )["node"]
    assert [p["name"] for p in read["infiniband"]] == ["ib0"]
