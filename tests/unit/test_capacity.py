"""api/domain/capacity.py on plain data: one device's four numbers per resource, groups added
up into the views, and another inventory's answer read and refused. The same numbers through
the API and a real database are in tests/api/test_capacity.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api.domain.capacity import (
    Amounts,
    CapacityGroup,
    GpuKind,
    MixedGpus,
    Resources,
    Tally,
    group_from_json,
    merged,
    node_resources,
    summarise,
)

H100, MI300X, L40S = GpuKind("NVIDIA", "H100"), GpuKind("AMD", "MI300X"), GpuKind("NVIDIA", "L40S")


@pytest.mark.parametrize(
    ("allocated", "allocatable", "percent"),
    [
        (0, 0, 0.0),  # nothing allocatable: 0, not a division by zero
        (5, 0, 0.0),  # held on devices that can take nothing now
        (0, 8, 0.0),
        (8, 8, 100.0),
        (16, 40, 40.0),
        (1, 3, 33.33),  # rounded to two places
        (2, 3, 66.67),
        (1, 7, 14.29),
        (12, 8, 150.0),  # allocated over allocatable, as it is: not capped
    ],
)
def test_utilization_is_allocated_over_allocatable_in_percent(
    allocated: int, allocatable: int, percent: float
) -> None:
    assert Amounts(allocatable=allocatable, allocated=allocated).utilization_percent == percent


def test_amounts_and_resources_add_field_by_field() -> None:
    assert Amounts(1, 2, 3, 4) + Amounts(10, 20, 30, 40) == Amounts(11, 22, 33, 44)
    assert Amounts() + Amounts() == Amounts(0, 0, 0, 0)
    one = Resources(Amounts(1, 1, 1, 1), Amounts(2, 2, 2, 2), Amounts(3, 3, 3, 3), Amounts(4))
    other = Resources(gpus=Amounts(4, 4, 0, 4))
    assert one + other == Resources(
        Amounts(1, 1, 1, 1), Amounts(2, 2, 2, 2), Amounts(3, 3, 3, 3), Amounts(8, 4, 0, 4)
    )


TOTAL, FREE = (64, 1024, 500, 8), (16, 256, 500, 2)  # cpu, memory_mb, storage_gb, gpus


@pytest.mark.parametrize(
    ("status", "healthy", "allocatable"),
    [
        ("available", True, True),
        ("allocated", True, True),  # may hold slices and take more
        ("available", False, False),  # a health condition: counted, not allocatable
        ("allocated", False, False),
        ("reserved", True, False),
        ("maintenance", True, False),
        ("offline", True, False),
        ("offline", False, False),
    ],
)
def test_a_device_counts_in_capacity_and_is_allocatable_only_when_usable_and_healthy(
    status: str, healthy: bool, allocatable: bool
) -> None:
    resources, flag = node_resources(status, healthy, TOTAL, FREE)
    assert flag is allocatable
    names = ("cpu", "memory_mb", "storage_gb", "gpus")
    for name, total, free in zip(names, TOTAL, FREE, strict=True):
        assert getattr(resources, name) == Amounts(
            capacity=total,
            allocatable=total if allocatable else 0,
            allocated=total - free,  # wherever it sits
            available=free if allocatable else 0,
        ), name


@pytest.mark.parametrize("healthy", [True, False])
def test_a_retired_device_has_left_the_fleet(healthy: bool) -> None:
    assert node_resources("retired", healthy, TOTAL, FREE) == (Resources(), False)


def test_totals_and_frees_must_pair_up() -> None:
    with pytest.raises(ValueError):
        node_resources("available", True, TOTAL, FREE[:3])


def tally(
    site: str | None,
    tenant_id: str | None,
    kind: GpuKind | None,
    nodes: int,
    gpus: Amounts,
    allocatable: int = 0,
    whole: int = 0,
    cpu: Amounts = Amounts(),
) -> Tally:
    return Tally(site, tenant_id, kind, nodes, allocatable, whole, Resources(cpu=cpu, gpus=gpus))


SLUGS = {"t-1": "acme", "t-2": "beta", "t-3": "acme-old", None: None}
TALLIES = [
    tally("mumbai", "t-1", H100, 2, Amounts(16, 16, 8, 8), allocatable=2, whole=1),
    tally("pune", None, MI300X, 1, Amounts(8, 0, 0, 0), cpu=Amounts(64, 0, 0, 0)),
    tally(None, "t-2", None, 3, Amounts(0, 0, 0, 0), allocatable=3, whole=3),  # no GPUs
    tally("mumbai", "t-2", H100, 1, Amounts(8, 8, 8, 0), allocatable=1),
]
MIXED = [  # a device of 4 H100 and 4 L40S in pune, tenant t-1
    MixedGpus("pune", "t-1", H100, 1, Amounts(4, 4, 0, 4)),
    MixedGpus("pune", "t-1", L40S, 1, Amounts(4, 4, 4, 0)),
]


def _row(group: CapacityGroup) -> tuple[Any, ...]:
    models = [(m.kind.vendor, m.kind.model, m.nodes, m.gpus) for m in group.models]
    return (group.key, group.nodes, group.nodes_allocatable, group.whole_nodes_free, models)


def test_the_views_add_the_groups_up_per_site_and_per_tenant() -> None:
    view = summarise(TALLIES, MIXED, SLUGS.get)
    h100 = ("NVIDIA", "H100")
    assert _row(view.total) == (
        None,
        7,  # the mixed rows' node is already in a tally: GPU models only
        6,
        4,
        [
            ("AMD", "MI300X", 1, Amounts(8, 0, 0, 0)),
            (*h100, 4, Amounts(28, 28, 16, 12)),
            ("NVIDIA", "L40S", 1, Amounts(4, 4, 4, 0)),
        ],
    )
    assert view.total.resources.gpus == Amounts(32, 24, 16, 8)  # the tallies' GPUs
    assert view.total.resources.cpu == Amounts(64, 0, 0, 0)
    assert [_row(g) for g in view.sites] == [
        ("mumbai", 3, 3, 1, [(*h100, 3, Amounts(24, 24, 16, 8))]),
        (
            "pune",
            1,
            0,
            0,
            [
                ("AMD", "MI300X", 1, Amounts(8, 0, 0, 0)),
                (*h100, 1, Amounts(4, 4, 0, 4)),
                ("NVIDIA", "L40S", 1, Amounts(4, 4, 4, 0)),
            ],
        ),
        (None, 3, 3, 3, []),  # no site: last
    ]
    assert [_row(g) for g in view.tenants] == [
        (
            "acme",
            2,
            2,
            1,
            [(*h100, 3, Amounts(20, 20, 8, 12)), ("NVIDIA", "L40S", 1, Amounts(4, 4, 4, 0))],
        ),
        ("beta", 4, 4, 3, [(*h100, 1, Amounts(8, 8, 8, 0))]),
        (None, 1, 0, 0, [("AMD", "MI300X", 1, Amounts(8, 0, 0, 0))]),  # the platform: last
    ]


def test_tenants_are_grouped_by_slug() -> None:
    tallies = [
        tally("a", "t-1", H100, 1, Amounts(8, 8, 0, 8)),
        tally("a", "t-3", H100, 1, Amounts(8, 8, 8, 0)),
    ]
    view = summarise(tallies, [], lambda _tenant: "acme")  # two ids, one slug
    assert [(g.key, g.nodes, g.resources.gpus) for g in view.tenants] == [
        ("acme", 2, Amounts(16, 16, 8, 8))
    ]


@pytest.mark.parametrize(
    ("keys", "ordered"),
    [
        (["pune", None, "mumbai", "blr"], ["blr", "mumbai", "pune", None]),
        ([None], [None]),
        (["b", "B", "a"], ["B", "a", "b"]),  # as the keys compare: no case folding
        (["", None, "a"], ["", "a", None]),  # an empty key is a key, not the unset one
    ],
)
def test_groups_are_ordered_by_key_the_unset_key_last(
    keys: list[str | None], ordered: list[str | None]
) -> None:
    view = summarise([tally(k, None, None, 1, Amounts()) for k in keys], [], SLUGS.get)
    assert [g.key for g in view.sites] == ordered


def test_an_empty_fleet_is_an_empty_view() -> None:
    view = summarise([], [], SLUGS.get)
    assert _row(view.total) == (None, 0, 0, 0, [])
    assert view.total.resources == Resources()
    assert (view.sites, view.tenants, view.total.utilization_percent) == ([], [], 0.0)


def test_a_view_s_utilization_is_of_its_gpus() -> None:
    group = CapacityGroup("x", resources=Resources(cpu=Amounts(10, 10, 10, 0)))
    assert group.utilization_percent == 0.0  # CPUs fully allocated, no GPUs
    group.add(tally("x", None, H100, 1, Amounts(8, 8, 2, 6)))
    assert group.utilization_percent == 25.0


@pytest.mark.parametrize(
    "models",
    [
        [GpuKind("NVIDIA", "H100"), GpuKind("AMD", "MI300X"), GpuKind("NVIDIA", "A100")],
        [GpuKind("NVIDIA", "A100"), GpuKind("NVIDIA", "H100"), GpuKind("AMD", "MI300X")],
    ],
)
def test_gpu_models_are_listed_by_vendor_then_model(models: list[GpuKind]) -> None:
    group = CapacityGroup(None)
    for kind in models:
        group.add_mixed(MixedGpus(None, None, kind, 1, Amounts(1)))
    assert [(m.kind.vendor, m.kind.model) for m in group.models] == [
        ("AMD", "MI300X"),
        ("NVIDIA", "A100"),
        ("NVIDIA", "H100"),
    ]


def test_merged_groups_sum_and_merge_gpu_models_by_kind() -> None:
    view = summarise(TALLIES, MIXED, SLUGS.get)
    whole = merged(view.sites, key="everything")
    assert _row(whole) == ("everything", *_row(view.total)[1:])
    assert whole.resources == view.total.resources
    assert merged([]) == CapacityGroup(None)
    before = copy.deepcopy(view.sites)
    merged(view.sites)
    assert view.sites == before  # the groups merged are left as they were


# -- another inventory's `capacity.total`, as JSON -------------------------------------------


def _amounts(capacity: int, allocatable: int, allocated: int, available: int) -> dict:
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "allocated": allocated,
        "available": available,
    }


def _answer() -> dict[str, Any]:
    return {
        "key": "fra-1",
        "nodes": 3,
        "nodesAllocatable": 2,
        "wholeNodesFree": 1,
        "resources": {
            "cpu": _amounts(384, 256, 64, 192),
            "memoryMB": _amounts(3000, 2000, 500, 1500),
            "storageGB": _amounts(30, 20, 5, 15),
            "gpus": _amounts(24, 16, 8, 8),
        },
        "gpuModels": [
            {"vendor": "NVIDIA", "model": "H100", "nodes": 2, "gpus": _amounts(16, 16, 8, 8)},
            {"vendor": "AMD", "model": "MI300X", "nodes": 1, "gpus": _amounts(8, 0, 0, 0)},
        ],
    }


def test_another_inventory_s_answer_reads_into_a_group() -> None:
    group = group_from_json(_answer())
    assert _row(group) == (
        "fra-1",
        3,
        2,
        1,
        [("AMD", "MI300X", 1, Amounts(8, 0, 0, 0)), ("NVIDIA", "H100", 2, Amounts(16, 16, 8, 8))],
    )
    assert group.resources == Resources(
        Amounts(384, 256, 64, 192),
        Amounts(3000, 2000, 500, 1500),
        Amounts(30, 20, 5, 15),
        Amounts(24, 16, 8, 8),
    )


@pytest.mark.parametrize(("key", "read"), [(None, None), ("", ""), ("sjc-1", "sjc-1")])
def test_the_key_may_be_null_or_absent(key: str | None, read: str | None) -> None:
    answer = _answer() | {"key": key}
    assert group_from_json(answer).key == read
    del answer["key"]
    assert group_from_json(answer).key is None


def test_one_model_listed_twice_is_added_up() -> None:
    answer = _answer()
    answer["gpuModels"].append(answer["gpuModels"][0])
    [_, h100] = group_from_json(answer).models
    assert (h100.nodes, h100.gpus) == (4, Amounts(32, 32, 16, 16))


def _set(path: str, value: Any) -> dict[str, Any]:
    """The good answer with one value (by a dotted path; a missing value deletes it)."""
    answer = _answer()
    *parents, last = path.split(".")
    here: Any = answer
    for step in parents:
        here = here[int(step)] if isinstance(here, list) else here[step]
    if value is MISSING:
        del here[last]
    else:
        here[last] = value
    return answer


MISSING = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("key", 5, "key: expected str, got 5"),
        ("nodes", MISSING, "nodes: expected int, got nothing"),
        ("nodes", None, "nodes: expected int, got None"),
        ("nodes", "3", "nodes: expected int, got '3'"),
        ("nodes", 3.0, "nodes: expected int, got 3.0"),
        ("nodes", -1, "nodes: expected a count, got -1"),
        ("nodes", True, "nodes: expected a count, got True"),  # a bool is not a count
        ("nodesAllocatable", -2, "nodesAllocatable: expected a count, got -2"),
        ("wholeNodesFree", MISSING, "wholeNodesFree: expected int, got nothing"),
        ("resources", [], "resources: expected dict, got []"),
        ("resources.gpus", MISSING, "gpus: expected dict, got nothing"),
        ("resources.memoryMB", 5, "memoryMB: expected dict, got 5"),
        ("resources.cpu.available", -1, "available: expected a count, got -1"),
        ("resources.storageGB.capacity", MISSING, "capacity: expected int, got nothing"),
        ("gpuModels", MISSING, "gpuModels: expected list, got nothing"),
        ("gpuModels", {}, "gpuModels: expected list, got {}"),
        ("gpuModels.0.vendor", None, "vendor: expected str, got None"),
        ("gpuModels.1.model", 300, "model: expected str, got 300"),
        ("gpuModels.0.nodes", -1, "nodes: expected a count, got -1"),
        ("gpuModels.1.gpus.allocated", "8", "allocated: expected int, got '8'"),
        ("nodes", "x" * 100, "nodes: expected int, got '" + "x" * 59),  # shown cut at 60
    ],
)
def test_a_bad_answer_is_refused_saying_what_is_wrong(path: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        group_from_json(_set(path, value))
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "key: expected str, got NoneType"),
        ([], "key: expected str, got list"),
        ("capacity", "key: expected str, got str"),
        ({}, "nodes: expected int, got nothing"),
    ],
)
def test_an_answer_that_is_not_a_capacity_object_is_refused(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        group_from_json(data)
    assert str(refused.value) == message


def test_a_model_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        group_from_json(_answer() | {"gpuModels": ["H100"]})
    assert str(refused.value) == "vendor: expected str, got str"
