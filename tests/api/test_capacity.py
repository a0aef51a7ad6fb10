"""Capacity views (seed 004) through the API: per node, per site, per tenant, in total;
numbers checked by hand on a small fleet, and against the allocations actually held after
a random stream of matchDevice / releaseAllocation calls."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token
from tests.support.fleet import fleet, labels, server

AMOUNTS = "{ capacity allocatable allocated available }"
RESOURCES = f"{{ cpu {AMOUNTS} memoryMB {AMOUNTS} storageGB {AMOUNTS} gpus {AMOUNTS} }}"
GROUP = f"""{{ key nodes nodesAllocatable wholeNodesFree utilizationPercent
  resources {RESOURCES} gpuModels {{ vendor model nodes gpus {AMOUNTS} }} }}"""
CAPACITY = f"""query($site: [String!], $tenant: String) {{
  capacity(site: $site, tenant: $tenant) {{ total {GROUP} sites {GROUP} tenants {GROUP} }} }}"""
NODE = f"""query($h: String!) {{ devices(filter: {{hostnamePrefix: $h}}) {{
  edges {{ node {{ hostname capacity {RESOURCES} }} }} }} }}"""
MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id } } }"""
RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { id } }"
SET_STATUS = """mutation($id: ID!, $s: Status!) { setStatus(id: $id, status: $s, force: true) {
  __typename } }"""
IDS = "{ devices(first: 500) { edges { node { id hostname } } } }"
HELD = """{ allocations(filter: {active: true}, first: 500) { edges { node {
  devices { hostname cpu memoryMB storageGB gpus } } } } }"""


def amounts(capacity: int, allocatable: int, allocated: int, available: int) -> dict[str, int]:
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "allocated": allocated,
        "available": available,
    }


def _ids(api: Api) -> dict[str, str]:
    return {e["node"]["hostname"]: e["node"]["id"] for e in api.ok(IDS)["devices"]["edges"]}


def _match(api: Api, env: str, kind: str, variables: dict[str, Any]) -> None:
    api.ok(MATCH, input={"environment": env, "labels": labels(kind), "variables": variables})


def test_the_four_amounts_per_node_site_tenant_and_gpu_model(
    api: Api, db: sessionmaker[Session]
) -> None:
    make_tenant(db, "acme")
    fleet(
        api,
        server("a-1", site="mumbai", tenant="acme"),
        server("a-2", site="mumbai", tenant="acme"),
        server("a-3", site="mumbai"),  # to be put in maintenance
        server("b-1", site="pune", vendor="AMD"),
        server("b-2", site="pune"),  # to be retired: out of every number
        {  # a mix: 2 H100 and 2 H200
            "hostname": "b-3",
            "site": "pune",
            "totalcpu": 64,
            "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 2
            + [{"vendorCode": "NVIDIA", "modelNo": "H200"}] * 2,
        },
    )
    ids = _ids(api)
    api.ok(SET_STATUS, id=ids["a-3"], s="MAINTENANCE")
    api.ok(SET_STATUS, id=ids["b-2"], s="RETIRED")
    _match(api, "whole", "baremetal", {"gputype": "NVIDIA", "gpu": "8", "zone": "india"})  # a-1
    _match(api, "slice", "vcluster", {"gputype": "NVIDIA", "gpu": "2", "cpu": "16"})
    view = api.ok(CAPACITY)["capacity"]

    total = view["total"]
    assert (total["nodes"], total["nodesAllocatable"], total["wholeNodesFree"]) == (5, 4, 2)
    # GPUs: 8+8+8 (mumbai) + 8 + 4 (pune, b-2 retired); a-3 (maintenance) not allocatable;
    # held: a-1 whole (8) and a 2-GPU slice (on the smallest fit: b-3, 4 GPUs)
    assert total["resources"]["gpus"] == amounts(36, 28, 10, 18)
    assert total["resources"]["cpu"] == amounts(128 * 4 + 64, 128 * 3 + 64, 128 + 16, 128 * 2 + 48)
    assert total["utilizationPercent"] == round(100 * 10 / 28, 2)
    models = {(m["vendor"], m["model"]): (m["nodes"], m["gpus"]) for m in total["gpuModels"]}
    assert models == {
        ("AMD", "H100"): (1, amounts(8, 8, 0, 8)),
        # a-1, a-2, a-3 and b-3's two H100s; b-3's slice counted on its first GPUs
        ("NVIDIA", "H100"): (4, amounts(26, 18, 10, 8)),
        ("NVIDIA", "H200"): (1, amounts(2, 2, 0, 2)),
    }
    sites = {g["key"]: g for g in view["sites"]}
    assert list(sites) == ["mumbai", "pune"]
    assert sites["mumbai"]["resources"]["gpus"] == amounts(24, 16, 8, 8)
    assert sites["pune"]["resources"]["gpus"] == amounts(12, 12, 2, 10)
    tenants = {g["key"]: g for g in view["tenants"]}
    assert list(tenants) == ["acme", None]  # unassigned nodes last
    assert tenants["acme"]["resources"]["gpus"] == amounts(16, 16, 8, 8)

    node = api.ok(NODE, h="b-3")["devices"]["edges"][0]["node"]["capacity"]
    assert node["gpus"] == amounts(4, 4, 2, 2) and node["cpu"] == amounts(64, 64, 16, 48)
    node = api.ok(NODE, h="a-3")["devices"]["edges"][0]["node"]["capacity"]
    assert node["gpus"] == amounts(8, 0, 0, 0)  # in maintenance: nothing allocatable

    # filters: one site; one tenant; an unknown site is empty; an unknown tenant NOT_FOUND
    pune = api.ok(CAPACITY, site=["pune"])["capacity"]["total"]
    assert pune["resources"]["gpus"] == sites["pune"]["resources"]["gpus"]
    acme = api.ok(CAPACITY, tenant="acme")["capacity"]
    assert acme["total"]["nodes"] == 2 and [g["key"] for g in acme["sites"]] == ["mumbai"]
    nowhere = api.ok(CAPACITY, site=["atlantis"])["capacity"]
    assert nowhere["total"]["nodes"] == 0 and nowhere["sites"] == []
    error = api.error(CAPACITY, tenant="nobody")
    assert error["extensions"]["code"] == "NOT_FOUND" and "nobody" in error["message"]


def test_a_tenant_sees_its_own_capacity_and_the_pools_never_another_tenants(
    api: Api, db: sessionmaker[Session]
) -> None:
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    fleet(api, server("a-1", tenant="acme"), server("g-1", tenant="globex"), server("free"))
    acme = api.as_(make_token(db, "viewer", "acme"))
    view = acme.ok(CAPACITY)["capacity"]
    assert view["total"]["nodes"] == 2  # its own, and the shared pool's "free"
    assert [g["key"] for g in view["tenants"]] == ["acme", None]
    assert acme.error(CAPACITY, tenant="globex")["extensions"]["code"] == "NOT_FOUND"


def test_the_numbers_agree_with_the_allocations_held_after_a_random_stream(api: Api) -> None:
    rng = random.Random(7)
    sites = ["mumbai", "pune", "delhi"]
    devices = [
        server(f"n-{i:02d}", gpus=rng.choice([4, 8]), site=rng.choice(sites)) for i in range(24)
    ]
    fleet(api, *devices)
    active: list[str] = []
    for step in range(120):
        if active and rng.random() < 0.4:
            environment = active.pop(rng.randrange(len(active)))
            api.ok(RELEASE, e=environment)
            continue
        environment = f"env-{step}"
        if rng.random() < 0.5:
            kind, variables = "baremetal", {"gputype": "NVIDIA", "gpu": str(rng.choice([4, 8]))}
        else:
            gpus = rng.choice([1, 2, 4])
            kind, variables = "vcluster", {"gputype": "NVIDIA", "gpu": str(gpus), "cpu": "8"}
        request = {"environment": environment, "labels": labels(kind), "variables": variables}
        body = api.run(MATCH, input=request)
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "NO_MATCH", body
            continue
        active.append(environment)

    # What the allocations hold, per site, from the allocations themselves
    site_of = {d["hostname"]: d["site"] for d in devices}
    held: dict[str, Counter[str]] = defaultdict(Counter)
    for edge in api.ok(HELD)["allocations"]["edges"]:
        for device in edge["node"]["devices"]:
            for resource in ("cpu", "memoryMB", "storageGB", "gpus"):
                held[site_of[device["hostname"]]][resource] += device[resource]
    assert held, "the stream allocated nothing: the test would prove nothing"
    view = api.ok(CAPACITY)["capacity"]
    for group in view["sites"]:
        for resource in ("cpu", "memoryMB", "storageGB", "gpus"):
            numbers = group["resources"][resource]
            assert numbers["allocated"] == held[group["key"]][resource], (group["key"], resource)
            # every node is available or allocated here: free is capacity minus held
            assert numbers["available"] == numbers["capacity"] - numbers["allocated"]
    total_gpus = sum(held[s]["gpus"] for s in held)
    assert view["total"]["resources"]["gpus"]["allocated"] == total_gpus
    assert sum(m["gpus"]["allocated"] for m in view["total"]["gpuModels"]) == total_gpus
    whole_free = sum(
        1
        for e in api.ok(
            "{ devices(first: 500) { edges { node { status freeGpus totalGpus freeCpu totalCpu"
            " } } } }"
        )["devices"]["edges"]
        if e["node"]["status"] == "AVAILABLE"
        and e["node"]["freeGpus"] == e["node"]["totalGpus"]
        and e["node"]["freeCpu"] == e["node"]["totalCpu"]
    )
    assert view["total"]["wholeNodesFree"] == whole_free


def test_capacity_needs_a_token(api: Api) -> None:
    error = api.as_(None).error(CAPACITY)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


def test_capacity_of_an_empty_inventory_is_zeros(api: Api) -> None:
    view = api.ok(CAPACITY)["capacity"]
    assert view["total"]["resources"]["gpus"] == amounts(0, 0, 0, 0)
    assert view["sites"] == [] and view["tenants"] == []
    assert view["total"]["utilizationPercent"] == 0
    assert json.dumps(view)  # plain JSON numbers throughout


TOTALS = "{ allocationTotals { tenant allocations devices gpus } }"


def test_allocation_totals_per_tenant(api: Api, db: sessionmaker[Session]) -> None:
    make_tenant(db, "acme")
    fleet(api, *(server(f"n-{i}", tenant="acme") for i in range(3)), server("shared"))
    variables = {"gputype": "NVIDIA", "gpu": "8"}
    for environment in ("a", "b"):
        request = {"environment": environment, "labels": labels(), "variables": variables}
        api.ok(MATCH, input=request | {"tenant": "acme"})
    _match(api, "slice", "vcluster", {"gputype": "NVIDIA", "gpu": "2", "cpu": "8"})
    assert api.ok(TOTALS)["allocationTotals"] == [
        {"tenant": "acme", "allocations": 2, "devices": 2, "gpus": 16},
        {"tenant": None, "allocations": 1, "devices": 1, "gpus": 2},
    ]
    api.ok('mutation { releaseAllocation(environment: "a", tenant: "acme") { id } }')
    acme = api.as_(make_token(db, "viewer", "acme"))
    assert acme.ok(TOTALS)["allocationTotals"] == [
        {"tenant": "acme", "allocations": 1, "devices": 1, "gpus": 8}
    ]
