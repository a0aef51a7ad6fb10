"""Lists: cursor pagination, ordering and filters over devices, VMs, switches, InfiniBand."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token

# 30 devices with lower-case, zero-padded hostnames (they sort alike on every collation).
# Device i has i % 9 GPUs: NVIDIA H100 for even i, AMD MI300X for odd i.
SITES = ("blr-1", "dfw-1", "fra-1")


def _device(i: int) -> dict[str, Any]:
    vendor, model = ("NVIDIA", "H100-SXM5-80GB") if i % 2 == 0 else ("amd", "MI300X")
    return {
        "hostname": f"gpu-{i:03d}",
        "totalcpu": 8 * i,
        "gpus": [{"vendorCode": vendor, "modelNo": model}] * (i % 9),
        "site": SITES[i % 3],
        "tenant": "acme" if i < 20 else "globex",
        "tags": {"location": "india" if i % 5 == 0 else "us", "rack": f"r{i % 4}"},
        "status": "maintenance" if i % 7 == 0 else "available",
    }


DEVICES = [_device(i) for i in range(1, 31)]
VMS = [
    {
        "hostname": f"vm-{i:02d}",
        "totalcpu": 4,
        "cluster": f"k8s-{'ab'[i % 2]}",
        "host": f"gpu-{i:03d}",
        "tenant": "acme",
    }
    for i in range(1, 5)
]
SWITCHES = [
    {
        "name": f"leaf-{i}",
        "role": "leaf" if i < 4 else "spine",
        "site": SITES[i % 3],
        "fabric": f"fab-{'ab'[i % 2]}",
        "status": "offline" if i == 5 else "available",
    }
    for i in range(1, 6)
]
INFINIBANDS = [
    {
        "device": f"leaf-{1 + i % 2}",
        "port": f"p{i}",
        "rateGbps": 400,
        "fabric": f"fab-{'ab'[i % 2]}",
        "switch": f"leaf-{1 + i % 2}",
    }
    for i in range(1, 7)
]

PAGE = """query($first: Int!, $after: String, $filter: DeviceFilter, $order: DeviceOrder) {
  devices(first: $first, after: $after, filter: $filter, orderBy: $order) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { hostname freeGpus totalGpus site status tenant kind } } } }"""


@pytest.fixture
def fleet(api: Api, db: sessionmaker[Session]) -> Api:
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    data = {"devices": DEVICES, "vms": VMS, "switches": SWITCHES, "infinibands": INFINIBANDS}
    result = api.ok(
        "mutation($d: String!) { importInventory(data: $d) { created } }", d=json.dumps(data)
    )
    assert result["importInventory"]["created"] == 45
    return api


def walk(api: Api, first: int, **args: Any) -> tuple[list[dict[str, Any]], int]:
    """Every node of a filtered, ordered list, page by page; and how many pages."""
    nodes: list[dict[str, Any]] = []
    after, pages = None, 0
    while True:
        page = api.ok(PAGE, first=first, after=after, **args)["devices"]
        pages += 1
        nodes += [e["node"] for e in page["edges"]]
        assert page["pageInfo"]["endCursor"] == (
            page["edges"][-1]["cursor"] if page["edges"] else None
        )
        if not page["pageInfo"]["hasNextPage"]:
            return nodes, pages
        after = page["pageInfo"]["endCursor"]
        assert pages <= 100, "pagination does not end"


def hostnames(nodes: list[dict[str, Any]]) -> list[str]:
    return [n["hostname"] for n in nodes]


def expected(predicate: Any) -> list[str]:
    return sorted(d["hostname"] for d in DEVICES if predicate(d))


# --- pages --------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [1, 7, 10, 29, 30, 500])
def test_walking_pages_yields_every_device_once_in_hostname_order(fleet: Api, first: int) -> None:
    nodes, pages = walk(fleet, first)
    assert hostnames(nodes) == [d["hostname"] for d in DEVICES]
    assert pages == -(-30 // first)


def test_the_last_page_says_there_is_no_next_one(fleet: Api) -> None:
    page = fleet.ok(PAGE, first=30)["devices"]
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["totalCount"] == 30
    empty = fleet.ok(PAGE, first=5, after=page["pageInfo"]["endCursor"])["devices"]
    assert empty["edges"] == [] and empty["pageInfo"] == {"hasNextPage": False, "endCursor": None}


def test_a_page_starts_right_after_its_cursor(fleet: Api) -> None:
    first = fleet.ok(PAGE, first=10)["devices"]["edges"]
    after_third = fleet.ok(PAGE, first=3, after=first[2]["cursor"])["devices"]["edges"]
    assert [e["node"]["hostname"] for e in after_third] == ["gpu-004", "gpu-005", "gpu-006"]


def test_total_count_is_the_whole_list_not_the_page(fleet: Api) -> None:
    page = fleet.ok(PAGE, first=4)["devices"]
    assert len(page["edges"]) == 4 and page["totalCount"] == 30


def test_ordering_by_free_gpus_descending_visits_each_device_once(fleet: Api) -> None:
    nodes, _ = walk(fleet, 4, order={"field": "FREE_GPUS", "direction": "DESC"})
    assert sorted(hostnames(nodes)) == [d["hostname"] for d in DEVICES]
    free = [n["freeGpus"] for n in nodes]
    assert free == sorted(free, reverse=True)
    assert free[0] == 8 and free[-1] == 0


def test_ordering_by_total_gpus_ascending_visits_each_device_once(fleet: Api) -> None:
    nodes, _ = walk(fleet, 6, order={"field": "TOTAL_GPUS", "direction": "ASC"})
    assert sorted(hostnames(nodes)) == [d["hostname"] for d in DEVICES]
    total = [n["totalGpus"] for n in nodes]
    assert total == sorted(total)


@pytest.mark.parametrize("field", ["CREATED_AT", "UPDATED_AT"])
def test_ordering_by_time_visits_each_device_once(fleet: Api, field: str) -> None:
    # One import creates all 30 in the same instant: the id breaks every tie.
    for direction in ("ASC", "DESC"):
        nodes, _ = walk(fleet, 7, order={"field": field, "direction": direction})
        assert sorted(hostnames(nodes)) == [d["hostname"] for d in DEVICES]


def test_hostname_descending_is_the_reverse_order(fleet: Api) -> None:
    nodes, _ = walk(fleet, 8, order={"field": "HOSTNAME", "direction": "DESC"})
    assert hostnames(nodes) == [d["hostname"] for d in reversed(DEVICES)]


# --- filters ------------------------------------------------------------------------------

FILTERS = [
    ({"status": ["MAINTENANCE"]}, lambda d: d["status"] == "maintenance"),
    ({"status": ["AVAILABLE", "MAINTENANCE"]}, lambda d: True),
    ({"site": ["blr-1"]}, lambda d: d["site"] == "blr-1"),
    ({"site": ["blr-1", "fra-1"]}, lambda d: d["site"] in ("blr-1", "fra-1")),
    ({"tags": [{"key": "location", "value": "india"}]}, lambda d: d["tags"]["location"] == "india"),
    (
        {"tags": [{"key": "location", "value": "us"}, {"key": "rack", "value": "r1"}]},
        lambda d: d["tags"]["location"] == "us" and d["tags"]["rack"] == "r1",
    ),
    ({"tags": [{"key": "location", "value": "India"}]}, lambda d: False),  # tags are exact
    ({"gpuVendor": "nvidia"}, lambda d: d["gpus"] and d["gpus"][0]["vendorCode"] == "NVIDIA"),
    ({"gpuVendor": " AMD "}, lambda d: d["gpus"] and d["gpus"][0]["vendorCode"] == "amd"),
    ({"gpuVendor": "intel"}, lambda d: False),
    ({"gpuModel": "mi300x"}, lambda d: d["gpus"] and d["gpus"][0]["modelNo"] == "MI300X"),
    ({"gpuVendor": "NVIDIA", "gpuModel": "MI300X"}, lambda d: False),
    ({"minFreeGpus": 7}, lambda d: len(d["gpus"]) >= 7),
    ({"minFreeGpus": 0}, lambda d: True),
    ({"minFreeCpu": 200}, lambda d: d["totalcpu"] >= 200),
    ({"tenant": "globex"}, lambda d: d["tenant"] == "globex"),
    ({"hostnamePrefix": "gpu-02"}, lambda d: d["hostname"].startswith("gpu-02")),
    (
        {"site": ["dfw-1"], "minFreeGpus": 4, "status": ["AVAILABLE"]},
        lambda d: d["site"] == "dfw-1" and len(d["gpus"]) >= 4 and d["status"] == "available",
    ),
]


@pytest.mark.parametrize(("flt", "predicate"), FILTERS, ids=[json.dumps(f) for f, _ in FILTERS])
def test_filters_select_exactly_the_matching_devices(
    fleet: Api, flt: dict[str, Any], predicate: Any
) -> None:
    nodes, _ = walk(fleet, 4, filter=flt)
    assert hostnames(nodes) == expected(predicate)
    total = fleet.ok(PAGE, first=1, filter=flt)["devices"]["totalCount"]
    assert total == len(nodes)


def test_filters_carry_over_to_later_pages(fleet: Api) -> None:
    flt = {"gpuVendor": "NVIDIA"}
    page = fleet.ok(PAGE, first=3, filter=flt)["devices"]
    rest, _ = walk(fleet, 50, filter=flt)
    after = fleet.ok(PAGE, first=50, filter=flt, after=page["pageInfo"]["endCursor"])
    assert hostnames([e["node"] for e in after["devices"]["edges"]]) == hostnames(rest)[3:]


def test_devices_lists_baremetal_only_unless_kind_says_otherwise(fleet: Api) -> None:
    default, _ = walk(fleet, 50)
    assert {n["kind"] for n in default} == {"BAREMETAL"}
    both, _ = walk(fleet, 9, filter={"kind": ["BAREMETAL", "VM"]})
    assert hostnames(both) == [d["hostname"] for d in DEVICES] + [v["hostname"] for v in VMS]
    assert {n["kind"] for n in both[30:]} == {"VM"}
    vms_only, _ = walk(fleet, 50, filter={"kind": ["VM"]})
    assert hostnames(vms_only) == [v["hostname"] for v in VMS]
    total = fleet.ok(PAGE, first=1, filter={"kind": ["BAREMETAL", "VM"]})["devices"]
    assert total["totalCount"] == 34


def test_a_tenant_bound_caller_pages_over_its_own_devices_only(
    fleet: Api, db: sessionmaker[Session]
) -> None:
    viewer = fleet.as_(make_token(db, "viewer", "globex"))
    nodes, _ = walk(viewer, 3)
    assert hostnames(nodes) == expected(lambda d: d["tenant"] == "globex")
    assert viewer.ok(PAGE, first=1)["devices"]["totalCount"] == 11


# --- the other lists ----------------------------------------------------------------------


def test_vms_lists_vms_with_name_cluster_and_host(fleet: Api) -> None:
    data = fleet.ok("""{ vms(first: 3) { totalCount pageInfo { hasNextPage endCursor }
      edges { node { name cluster host kind tenant totalCpu } } } }""")["vms"]
    assert data["totalCount"] == 4 and data["pageInfo"]["hasNextPage"] is True
    assert [e["node"] for e in data["edges"]] == [
        {
            "name": f"vm-{i:02d}",
            "cluster": f"k8s-{'ab'[i % 2]}",
            "host": f"gpu-{i:03d}",
            "kind": "VM",
            "tenant": "acme",
            "totalCpu": 4,
        }
        for i in range(1, 4)
    ]
    rest = fleet.ok(
        "query($a: String) { vms(first: 3, after: $a) { edges { node { name } } "
        "pageInfo { hasNextPage } } }",
        a=data["pageInfo"]["endCursor"],
    )["vms"]
    assert rest == {"edges": [{"node": {"name": "vm-04"}}], "pageInfo": {"hasNextPage": False}}


def test_vms_filters_apply(fleet: Api) -> None:
    data = fleet.ok(
        '{ vms(filter: {hostnamePrefix: "vm-0", minFreeCpu: 4}) { totalCount } '
        "none: vms(filter: {minFreeCpu: 5}) { totalCount } }"
    )
    assert data == {"vms": {"totalCount": 4}, "none": {"totalCount": 0}}


SWITCHES_QUERY = """query($filter: SwitchFilter, $first: Int!, $after: String) {
  switches(filter: $filter, first: $first, after: $after) { totalCount
    pageInfo { hasNextPage endCursor } edges { node { name role site fabric status } } } }"""


@pytest.mark.parametrize(
    ("flt", "names"),
    [
        ({}, ["leaf-1", "leaf-2", "leaf-3", "leaf-4", "leaf-5"]),
        ({"role": "spine"}, ["leaf-4", "leaf-5"]),
        ({"site": ["dfw-1"]}, ["leaf-1", "leaf-4"]),
        ({"fabric": "fab-a"}, ["leaf-2", "leaf-4"]),
        ({"status": ["OFFLINE"]}, ["leaf-5"]),
        ({"role": "leaf", "fabric": "fab-b"}, ["leaf-1", "leaf-3"]),
    ],
)
def test_switch_filters_select_exactly_the_matching_switches(
    fleet: Api, flt: dict[str, Any], names: list[str]
) -> None:
    data = fleet.ok(SWITCHES_QUERY, filter=flt, first=50)["switches"]
    assert [e["node"]["name"] for e in data["edges"]] == names
    assert data["totalCount"] == len(names)


def test_switches_page_by_name(fleet: Api) -> None:
    seen, after = [], None
    while True:
        data = fleet.ok(SWITCHES_QUERY, first=2, after=after)["switches"]
        seen += [e["node"]["name"] for e in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == [s["name"] for s in SWITCHES]


INFINIBANDS_QUERY = """query($filter: InfinibandFilter, $first: Int!, $after: String) {
  infinibands(filter: $filter, first: $first, after: $after) { totalCount
    pageInfo { hasNextPage endCursor } edges { node { name device port fabric switch } } } }"""


@pytest.mark.parametrize(
    ("flt", "names"),
    [
        ({}, ["leaf-1:p2", "leaf-1:p4", "leaf-1:p6", "leaf-2:p1", "leaf-2:p3", "leaf-2:p5"]),
        ({"device": "leaf-2"}, ["leaf-2:p1", "leaf-2:p3", "leaf-2:p5"]),
        ({"fabric": "fab-a"}, ["leaf-1:p2", "leaf-1:p4", "leaf-1:p6"]),
        ({"switch": "leaf-2", "fabric": "fab-a"}, []),
        (
            {"status": ["AVAILABLE"]},
            ["leaf-1:p2", "leaf-1:p4", "leaf-1:p6", "leaf-2:p1", "leaf-2:p3", "leaf-2:p5"],
        ),
    ],
)
def test_infiniband_filters_select_exactly_the_matching_ports(
    fleet: Api, flt: dict[str, Any], names: list[str]
) -> None:
    data = fleet.ok(INFINIBANDS_QUERY, filter=flt, first=50)["infinibands"]
    assert [e["node"]["name"] for e in data["edges"]] == names
    assert data["totalCount"] == len(names)


def test_infinibands_page_by_name(fleet: Api) -> None:
    first = fleet.ok(INFINIBANDS_QUERY, first=4)["infinibands"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = fleet.ok(INFINIBANDS_QUERY, first=4, after=first["pageInfo"]["endCursor"])
    names = [e["node"]["name"] for e in first["edges"] + rest["infinibands"]["edges"]]
    assert names == sorted(f"{p['device']}:{p['port']}" for p in INFINIBANDS)
    assert rest["infinibands"]["pageInfo"]["hasNextPage"] is False
