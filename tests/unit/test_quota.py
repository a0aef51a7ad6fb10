"""The quota rules, pure (api/domain/quota.py): what a claim counts, which counters it
adds to, and which limit it passes first."""

from __future__ import annotations

from typing import Any

import pytest

from api.domain.quota import (
    GPUS,
    NODES,
    NONE_KEY,
    Limit,
    Usage,
    counter_keys,
    first_exceeded,
    model_key,
    usage_of_device,
)

pytestmark = pytest.mark.unit


def _server(*models: str, kind: str = "baremetal") -> dict[str, Any]:
    gpus = [{"index": i, "vendorCode": "NVIDIA", "modelNo": m} for i, m in enumerate(models)]
    return {"kind": kind, "gpus": gpus, "totalgpus": len(gpus)}


def _limit(project: str = NONE_KEY, model: str = NONE_KEY, **given: Any) -> Limit:
    defaults: dict[str, Any] = {"gpus": None, "nodes": None}
    return Limit("acme", project or None, project, model, model or None, **(defaults | given))


@pytest.mark.parametrize(
    ("document", "whole", "slice_gpus", "free", "expected"),
    [
        (_server("H100", "H100"), True, 0, 2, Usage(2, 1, {"h100": 2}, {"h100": 1})),
        (_server("H100", "H100", kind="vm"), True, 0, 2, Usage(2, 0, {"h100": 2}, {"h100": 0})),
        (_server(*["H100"] * 8), False, 3, 8, Usage(3, 0, {"h100": 3})),
        # a mixed host's slice takes the lowest free indexes: 2 are held already
        (_server("A", "A", "B", "B"), False, 1, 2, Usage(1, 0, {"b": 1})),
        (_server("A", "B"), True, 0, 2, Usage(2, 1, {"a": 1, "b": 1}, {"a": 1, "b": 1})),
    ],
)
def test_what_holding_a_device_counts(
    document: dict[str, Any], whole: bool, slice_gpus: int, free: int, expected: Usage
) -> None:
    got = usage_of_device(document, whole=whole, slice_gpus=slice_gpus, free_gpus=free)
    assert got == expected


def test_a_claim_adds_to_the_tenants_and_its_projects_counters_per_model() -> None:
    usage = Usage(8, 1, {"h100": 8}, {"h100": 1})
    assert counter_keys(None, usage) == [("", ""), ("", "h100")]
    assert counter_keys("p1", usage) == [("", ""), ("", "h100"), ("p1", ""), ("p1", "h100")]


def test_models_compare_trimmed_and_case_blind() -> None:
    assert model_key(" H100-SXM5 ") == model_key("h100-sxm5") == "h100-sxm5"


@pytest.mark.parametrize(
    ("limits", "borrowing", "reported"),
    [
        ([_limit(gpus=16, used_gpus=8)], False, None),  # 8 more fit exactly
        ([_limit(gpus=15, used_gpus=8)], False, (NONE_KEY, NONE_KEY, GPUS)),
        ([_limit(gpus=15, used_gpus=8)], True, None),  # borrowing passes a GPU limit
        ([_limit(nodes=1, used_nodes=1)], True, (NONE_KEY, NONE_KEY, NODES)),  # never nodes
        # the reporting order: tenant, tenant and model, project, project and model
        ([_limit("p1", gpus=1), _limit(model="h100", gpus=1)], False, (NONE_KEY, "h100", GPUS)),
        ([_limit(gpus=1, nodes=0)], False, (NONE_KEY, NONE_KEY, GPUS)),  # GPUs before nodes
        ([_limit(model="a100", gpus=0)], False, None),  # another model's limit
    ],
)
def test_the_first_limit_passed(
    limits: list[Limit], borrowing: bool, reported: tuple[str, str, str] | None
) -> None:
    usage = Usage(8, 1, {"h100": 8}, {"h100": 1})
    found = first_exceeded(limits, usage, borrowing=borrowing)
    got = (
        None if found is None else (found.limit.project_key, found.limit.model_key, found.resource)
    )
    assert got == reported
