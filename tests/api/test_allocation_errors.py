"""Every bad matchDevice input has its code, and nothing is allocated (DESIGN.md order)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.api import Api
from tests.support.fleet import MATCH, fleet, labels, server

ACTIVE = "{ allocations(filter: {active: true}) { edges { node { id } } } }"


def config(*filters: dict[str, Any]) -> str:
    return json.dumps(list(filters))


CASES = [
    (
        "malformed config JSON",
        {
            "labels": {
                "paas.envmgmt.io/inventory": "baremetal",
                "paas.envmgmt.io/inventory.config": "[{",
            }
        },
        "BAD_PROFILE",
        "not valid JSON",
    ),
    (
        "unknown inventory type",
        {"labels": {"paas.envmgmt.io/inventory": "mainframe"}},
        "BAD_PROFILE",
        "unknown inventory type 'mainframe'",
    ),
    (
        "unknown filter type",
        {
            "labels": {
                "paas.envmgmt.io/inventory": "baremetal",
                "paas.envmgmt.io/inventory.config": config({"type": "fuzzy", "keyInVariable": "x"}),
            }
        },
        "BAD_PROFILE",
        "filter 0, field 'type'",
    ),
    (
        "unknown capacity key",
        {
            "labels": {
                "paas.envmgmt.io/inventory": "baremetal",
                "paas.envmgmt.io/inventory.config": config(
                    {"type": "capacity", "keyInVariable": "g", "keyInCapacity": "requiredTPU"}
                ),
            }
        },
        "BAD_PROFILE",
        "unknown capacity 'requiredTPU'",
    ),
    (
        "preset without numbers",
        {
            "labels": {
                "paas.envmgmt.io/inventory": "vcluster",
                "paas.envmgmt.io/inventory.config": config(
                    {
                        "type": "capacity",
                        "keyInVariable": "size",
                        "keyInCapacity": "capacitySize",
                        "capacityMap": {"small": {}},
                    }
                ),
            }
        },
        "BAD_PROFILE",
        "capacityMap.small",
    ),
    (
        "unknown preset",
        {
            "labels": {
                "paas.envmgmt.io/inventory": "vcluster",
                "paas.envmgmt.io/inventory.config": config(
                    {
                        "type": "capacity",
                        "keyInVariable": "size",
                        "keyInCapacity": "capacitySize",
                        "capacityMap": {"small": {"requiredGPU": 1}},
                    }
                ),
            },
            "variables": {"size": "huge"},
        },
        "BAD_VARIABLE",
        "unknown preset 'huge' (one of: small)",
    ),
    (
        "non-numeric capacity",
        {"variables": {"gpu": "eight"}},
        "BAD_VARIABLE",
        "variable 'gpu': must be a number, got 'eight'",
    ),
    (
        "negative capacity",
        {"variables": {"cpu": -4}},
        "BAD_VARIABLE",
        "variable 'cpu': must not be negative",
    ),
    ("zero nodes", {"variables": {"nodes": 0}}, "BAD_VARIABLE", "whole number ≥ 1"),
    ("fractional nodes", {"variables": {"nodes": "1.5"}}, "BAD_VARIABLE", "whole number"),
    (
        "required variable absent",
        {
            "labels": {
                "paas.envmgmt.io/inventory": "baremetal",
                "paas.envmgmt.io/inventory.config": config(
                    {
                        "type": "match",
                        "keyInVariable": "zone",
                        "keyInDevice": "tags.location",
                        "required": True,
                    }
                ),
            }
        },
        "BAD_VARIABLE",
        "variable 'zone': is required",
    ),
    ("unknown profile", {"labels": None, "profile": "nope"}, "NOT_FOUND", "'nope' not found"),
    ("profile and labels", {"profile": "p"}, "BAD_INPUT", "give exactly one"),
    ("neither profile nor labels", {"labels": None}, "BAD_INPUT", "give exactly one"),
    ("variables not an object", {"variables": ["gpu", 8]}, "BAD_INPUT", "variables"),
    ("missing environment", {"environment": "  "}, "BAD_INPUT", "environment: is required"),
    ("lease out of range", {"ttlSeconds": 0}, "BAD_INPUT", "ttlSeconds"),
]


@pytest.mark.parametrize(("case", "change", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_has_its_code_and_allocates_nothing(
    api: Api, case: str, change: dict[str, Any], code: str, words: str
) -> None:
    fleet(api, server("a"))
    given = {"environment": "env", "labels": labels(), "variables": {}} | change
    if given.get("labels") is None:
        given.pop("labels", None)
    error = api.error(MATCH, input=given)
    assert error["extensions"]["code"] == code, error
    assert words in error["message"], error["message"]
    assert api.ok(ACTIVE)["allocations"]["edges"] == []
    device = api.ok("{ devices { edges { node { status freeGpus } } } }")
    assert device["devices"]["edges"][0]["node"] == {"status": "AVAILABLE", "freeGpus": 8}


def test_a_bad_profile_is_refused_when_saved(api: Api) -> None:
    error = api.error(
        'mutation($l: JSON!) { saveProfile(name: "p", labels: $l) { name } }',
        l={
            "paas.envmgmt.io/inventory": "baremetal",
            "paas.envmgmt.io/inventory.config": config({"type": "match", "keyInVariable": "x"}),
        },
    )
    assert error["extensions"]["code"] == "BAD_PROFILE"
    assert error["extensions"]["filterIndex"] == 0
    assert error["extensions"]["field"] == "keyInDevice"
    assert api.ok("{ profiles { name } }")["profiles"] == []


def test_a_match_on_an_empty_inventory_is_no_match(api: Api) -> None:
    """An index that never held a device has no eligibility masks yet (a KeyError once)."""
    error = api.error(
        """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) { deviceDetails } }""",
        input={
            "environment": "empty",
            "labels": {
                "paas.envmgmt.io/inventory": "baremetal",
                "paas.envmgmt.io/inventory.config": "[]",
            },
            "variables": {},
        },
    )
    assert error["extensions"]["code"] == "NO_MATCH"
