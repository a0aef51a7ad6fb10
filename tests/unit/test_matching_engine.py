"""The matching engine against the seed's own label JSON and a brute-force reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.domain.errors import DomainError
from api.domain.matching.engine import match
from api.domain.matching.index import Candidate, CandidateIndex, Capacity, path_values
from api.domain.matching.profile import parse_labels
from api.domain.matching.request import normalise, resolve
from api.domain.vocabulary import Kind, Status
from tests.support.seed import SEED_CAPACITY_MAP, SEED_CONFIG


def device(
    hostname: str,
    *,
    vendor: str = "NVIDIA",
    model_no: str = "H100-SXM5-80GB",
    model: str = "DGX H100",
    gpus: int = 8,
    cpu: int = 224,
    memory: int = 2097152,
    storage: int = 30720,
    location: str = "india",
    site: str = "blr-1",
    fabrics: tuple[str, ...] = ("fabric-a",),
    status: str = "available",
    free: Capacity | None = None,
    kind: str = "baremetal",
) -> Candidate:
    document = {
        "hostname": hostname,
        "kind": kind,
        "status": status,
        "manufacturer": "NVIDIA",
        "model": model,
        "totalcpu": cpu,
        "totalmemoryMB": memory,
        "totalstorageGB": storage,
        "totalgpus": gpus,
        "gpus": [
            {"index": i, "vendorCode": vendor, "modelNo": model_no, "memoryMB": 81920}
            for i in range(gpus)
        ],
        "tags": {"gputype": model_no.split("-")[0], "location": location},
        "site": site,
    }
    total = Capacity(cpu, memory, storage, gpus)
    return Candidate(
        hostname,
        Kind(kind),
        hostname,
        Status(status),
        document,
        total,
        free or total,
        site,
        frozenset(fabrics),
    )


def labels(inventory_type: str, config: str) -> dict[str, str]:
    return {"paas.envmgmt.io/inventory": inventory_type, "paas.envmgmt.io/inventory.config": config}


FLEET = [
    device("server-40", vendor="AMD", model_no="MI300X", model="XE9680"),
    device("server-41", location="us", site="iad-1"),
    device("server-42"),
    device("server-43", gpus=4, cpu=64, memory=524288, model="R760xa", model_no="L40S"),
    device("server-44", status="maintenance"),
    device("server-45", gpus=8, cpu=192),
]


def test_the_seed_example_picks_the_smallest_fitting_nvidia_server_in_india() -> None:
    request = resolve(
        parse_labels(labels("baremetal", SEED_CONFIG)),
        {"gputype": "NVIDIA", "location": "india", "gpu": "8", "cpu": "100"},
    )
    outcome = match(request, CandidateIndex(FLEET))
    assert [c.hostname for c in outcome.chosen] == ["server-45"]  # 192 CPUs < 224
    steps = outcome.explanation.steps
    assert [(s.entered, s.left) for s in steps[:3]] == [(6, 5), (5, 4), (4, 3)]
    assert steps[1].filter == "gpus.vendorCode=NVIDIA" and steps[2].filter == "tags=india"
    assert steps[3].note == "variable 'input2' not given: filter skipped"


def test_the_seed_device_details_fields_are_in_the_chosen_document() -> None:
    request = resolve(parse_labels(labels("baremetal", SEED_CONFIG)), {"gpu": 8})
    chosen = match(request, CandidateIndex(FLEET)).chosen[0].document
    assert {"hostname", "manufacturer", "model", "totalcpu", "totalgpus", "tags"} <= set(chosen)
    assert chosen["tags"]["location"] in ("india", "us")


def test_the_seed_capacity_map_applies_the_named_preset() -> None:
    config = "[" + SEED_CAPACITY_MAP + "]"
    half = Capacity(cpu=100, memory_mb=100000, storage_gb=100, gpus=2)
    fleet = [device("a", free=half), device("b"), device("c", gpus=4)]
    request = resolve(parse_labels(labels("vcluster", config)), {"Namespace Quota Size": "medium"})
    outcome = match(request, CandidateIndex(fleet))
    assert [c.hostname for c in outcome.chosen] == ["a"]  # 2 free GPUs: the tightest fit
    assert "requiredGPU≥2" in outcome.explanation.steps[1].filter
    large = resolve(parse_labels(labels("vcluster", config)), {"Namespace Quota Size": "large"})
    assert [c.hostname for c in match(large, CandidateIndex(fleet)).chosen] == ["c"]
    with pytest.raises(DomainError) as unknown:
        resolve(parse_labels(labels("vcluster", config)), {"Namespace Quota Size": "huge"})
    assert unknown.value.code == "BAD_VARIABLE" and "small, medium, large" in str(unknown.value)


def test_no_match_explains_where_the_fleet_ran_out() -> None:
    request = resolve(parse_labels(labels("baremetal", SEED_CONFIG)), {"gpu": 16})
    outcome = match(request, CandidateIndex(FLEET))
    assert outcome.chosen == []
    gpu_step = next(s for s in outcome.explanation.steps if s.filter == "requiredGPU≥16")
    assert gpu_step.left == 0 and gpu_step.note == "largest free: GPUs 8"


def test_mks_prefers_one_fabric_over_packing() -> None:
    fleet = [
        device("a1", fabrics=("f1",), gpus=4),
        device("a2", fabrics=("f2",), gpus=4),
        device("b1", fabrics=("f3",)),
        device("b2", fabrics=("f3",)),
    ]
    request = resolve(parse_labels(labels("mks", SEED_CONFIG)), {"noofNodes": 2})
    outcome = match(request, CandidateIndex(fleet))
    assert sorted(c.hostname for c in outcome.chosen) == ["b1", "b2"]
    assert outcome.explanation.steps[-1].note == "2 on site blr-1, fabric f3"


def test_mks_falls_back_to_one_site_then_to_any() -> None:
    fleet = [
        device("a1", fabrics=("f1",)),
        device("a2", fabrics=("f2",)),
        device("c1", site="iad-1", fabrics=()),
    ]
    request = resolve(parse_labels(labels("mks", SEED_CONFIG)), {"noofNodes": 2})
    outcome = match(request, CandidateIndex(fleet))
    assert sorted(c.hostname for c in outcome.chosen) == ["a1", "a2"]
    three = resolve(parse_labels(labels("mks", SEED_CONFIG)), {"noofNodes": 3})
    outcome = match(three, CandidateIndex(fleet))
    assert len(outcome.chosen) == 3 and "spread across sites" in outcome.explanation.steps[-1].note


def test_a_device_holding_slices_is_not_offered_whole() -> None:
    sliced = device(
        "sliced", gpus=2, free=Capacity(cpu=224, memory_mb=2097152, storage_gb=30720, gpus=1)
    )
    whole = device("whole")
    exclusive = resolve(parse_labels(labels("baremetal", "[]")), {})
    assert [c.hostname for c in match(exclusive, CandidateIndex([sliced, whole])).chosen] == [
        "whole"
    ]
    shared = resolve(parse_labels(labels("vcluster", SEED_CONFIG)), {"gpu": 1})
    assert [c.hostname for c in match(shared, CandidateIndex([sliced, whole])).chosen] == ["sliced"]


def test_list_values_and_json_array_strings_mean_any_of() -> None:
    config = '[{"type":"match","keyInVariable":"zone","keyInDevice":"tags.location"}]'
    profile = parse_labels(labels("baremetal", config))
    for zones in (["us", "germany"], '["us", "germany"]'):
        outcome = match(resolve(profile, {"zone": zones}), CandidateIndex(FLEET))
        assert [c.hostname for c in outcome.chosen] == ["server-41"]


def test_unused_variables_are_reported() -> None:
    request = resolve(parse_labels(labels("baremetal", SEED_CONFIG)), {"gpus": 8, "gpu": 8})
    assert match(request, CandidateIndex(FLEET)).explanation.unused_variables == ["gpus"]


# --- a brute-force reference, written from DESIGN.md independently of the engine ---------


def reference(
    inventory_type: str,
    config: list[dict[str, Any]],
    variables: dict[str, Any],
    fleet: list[Candidate],
) -> list[str]:
    wanted = {"nodes": 1, "cpu": 0, "memory_mb": 0, "gpus": 0, "storage_gb": 0}
    names = {
        "requirednoofnodes": "nodes",
        "requiredcpu": "cpu",
        "requiredmemorymb": "memory_mb",
        "requiredgpu": "gpus",
        "requiredstoragegb": "storage_gb",
    }
    matches = []
    for f in config:
        value = variables.get(f["keyInVariable"])
        if value in (None, ""):
            continue
        if f["type"] == "match":
            values = value if isinstance(value, list) else [value]
            matches.append((f["keyInDevice"], {normalise(v) for v in values}))
        else:
            key = names[f["keyInCapacity"].lower()]
            wanted[key] = max(wanted[key], int(value))
    eligible = []
    for c in fleet:
        if c.status != "available" or c.kind != "baremetal":
            continue
        if inventory_type != "vcluster" and c.free != c.total:
            continue
        if any(
            not ({normalise(v) for v in path_values(c.document, p)} & values)
            for p, values in matches
        ):
            continue
        if all(getattr(c.free, k) >= wanted[k] for k in ("cpu", "memory_mb", "gpus", "storage_gb")):
            eligible.append(c)
    if len(eligible) < wanted["nodes"]:
        return []
    eligible.sort(key=lambda c: (c.free.gpus, c.free.cpu, c.free.memory_mb, c.hostname))
    return [c.hostname for c in eligible[: wanted["nodes"]]]


@st.composite
def fleets(draw: st.DrawFn) -> list[Candidate]:
    size = draw(st.integers(1, 25))
    out = []
    for n in range(size):
        gpus = draw(st.sampled_from([0, 1, 2, 4, 8]))
        cpu = draw(st.sampled_from([16, 64, 128, 224]))
        total = Capacity(cpu, cpu * 8192, 1000, gpus)
        used = draw(st.integers(0, gpus))
        free = Capacity(cpu, cpu * 8192, 1000, gpus - used)
        out.append(
            device(
                f"h{n:02d}",
                gpus=gpus,
                cpu=cpu,
                memory=cpu * 8192,
                storage=1000,
                vendor=draw(st.sampled_from(["NVIDIA", "AMD", "INTEL"])),
                location=draw(st.sampled_from(["india", "us"])),
                status=draw(st.sampled_from(["available"] * 4 + ["maintenance"])),
                free=free if total.gpus else total,
            )
        )
    return out


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    config = json.loads(SEED_CONFIG)
    variables = {
        "gputype": draw(st.sampled_from([None, "NVIDIA", "amd", ["INTEL", "AMD"]])),
        "zone": draw(st.sampled_from([None, "india", "us"])),
        "gpu": draw(st.sampled_from([None, 0, 1, "2", 4, 8])),
        "cpu": draw(st.sampled_from([None, 16, "64", 200])),
        "noofNodes": draw(st.sampled_from([None, 1, 2, 3])),
    }
    inventory_type = draw(st.sampled_from(["baremetal", "vcluster"]))
    return inventory_type, config, {k: v for k, v in variables.items() if v is not None}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets(), ask=requests())
def test_engine_agrees_with_the_brute_force_reference(fleet, ask) -> None:
    inventory_type, config, variables = ask
    request = resolve(parse_labels(labels(inventory_type, json.dumps(config))), variables)
    chosen = [c.hostname for c in match(request, CandidateIndex(fleet)).chosen]
    assert chosen == reference(inventory_type, config, variables, fleet)


@settings(max_examples=300, deadline=None)
@given(fleet=fleets(), ask=requests())
def test_no_chosen_device_fails_a_filter_and_none_larger_was_preferred(fleet, ask) -> None:
    inventory_type, config, variables = ask
    request = resolve(parse_labels(labels(inventory_type, json.dumps(config))), variables)
    outcome = match(request, CandidateIndex(fleet))
    need = request.requirements
    for chosen in outcome.chosen:
        assert chosen.status == "available"
        assert chosen.free.gpus >= need.gpus and chosen.free.cpu >= need.cpu
        for condition in request.conditions:
            found = {normalise(v) for v in path_values(chosen.document, condition.path)}
            assert found & set(condition.values)
    if outcome.chosen:  # packing: nothing eligible and smaller was left out
        largest = max(c.packing_key for c in outcome.chosen)
        eligible_ids = {c.id for c in fleet} - {c.id for c in outcome.chosen}
        index = CandidateIndex(fleet)
        for other_id in eligible_ids:
            other = index.items[other_id]
            relaxed = match(request, CandidateIndex([other]))
            if need.nodes == 1 and relaxed.chosen:
                assert other.packing_key > largest


def test_an_index_kept_up_to_date_answers_like_a_fresh_one() -> None:
    index = CandidateIndex(FLEET)
    request = resolve(parse_labels(labels("baremetal", SEED_CONFIG)), {"gputype": "nvidia"})
    assert [c.hostname for c in match(request, index).chosen] == ["server-43"]
    index.remove("server-43")
    index.upsert(device("server-46", gpus=1, cpu=8))
    fresh = CandidateIndex([*FLEET[:3], *FLEET[4:], device("server-46", gpus=1, cpu=8)])
    assert (
        [c.hostname for c in match(request, index).chosen]
        == [c.hostname for c in match(request, fresh).chosen]
        == ["server-46"]
    )


@pytest.mark.parametrize("empty", [[], "[]", " [ ] ", ""])
def test_an_empty_list_of_values_skips_the_filter_like_an_absent_variable(empty) -> None:
    """Terraform sends jsonencode([]) as the string "[]": skipped, not a crash."""
    request = resolve(parse_labels(labels("baremetal", SEED_CONFIG)), {"location": empty})
    assert request.steps[1].note == "variable 'location' not given: filter skipped"
