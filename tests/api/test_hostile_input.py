"""Hostile values from issue 12, one test each, over HTTP on both backends: each is refused
with HTTP 200, a stable code and a message naming the field, and changes nothing.

(The generated suite of hostile requests is tests/api/test_hostile_generated.py.)
"""

from __future__ import annotations

import csv
import json
from typing import Any

import httpx
import pytest

from api.domain.limits import MAX_FILTER_TEXT, MAX_FILTER_VALUES, MAX_JSON_DEPTH, MAX_TAG_FILTERS
from tests.support.api import Api

INVENTORY = "paas.envmgmt.io/inventory"
CONFIG = "paas.envmgmt.io/inventory.config"
IMPORT = (
    "mutation($f: ImportFormat!, $d: String!) { importInventory(format: $f, data: $d) { created } }"
)
SAVE = "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { name } }"
MATCH = "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"
COUNTS = """{ devices(filter: {kind: [BAREMETAL, VM]}) { totalCount } profiles { name }
  allocations { totalCount } }"""
TOO_DEEP = f"nested more than {MAX_JSON_DEPTH} levels deep"


def first_error(response: httpx.Response) -> dict[str, Any]:
    """The one error of a request refused as the contract says: HTTP 200, a code."""
    assert response.status_code == 200, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    assert errors[0]["extensions"]["code"] != "INTERNAL_SERVER_ERROR", errors
    return errors[0]


def refused(api: Api, query: str, **variables: Any) -> dict[str, Any]:
    """Send, expect one coded error, and check that nothing was written."""
    before = api.ok(COUNTS)
    error = first_error(api.post(query, variables))
    assert api.ok(COUNTS) == before
    return error


def capacity_labels(key: str = "requiredGPU", **extra: Any) -> dict[str, Any]:
    config = [{"type": "capacity", "keyInVariable": "v", "keyInCapacity": key, **extra}]
    return {INVENTORY: "baremetal", CONFIG: json.dumps(config)}


@pytest.fixture
def fleet(api: Api) -> Api:
    """Two servers with GPUs, so that matches get as far as the claim."""
    devices = [
        {
            "hostname": f"srv-{n}",
            "totalcpu": 64,
            "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
        }
        for n in (1, 2)
    ]
    api.ok(IMPORT, f="JSON", d=json.dumps({"devices": devices}))
    return api


# --- 1. deeply nested JSON inside string and JSON arguments ------------------------------


@pytest.mark.parametrize(
    "data", ["[" * 5000 + "]" * 5000, '{"devices": ' + "[" * 100_000, '{"devices": [' * 3000]
)
def test_an_import_of_json_nested_thousands_deep_is_bad_input_naming_data(
    fleet: Api, data: str
) -> None:
    error = refused(fleet, IMPORT, f="JSON", d=data)
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"] == f"data: {TOO_DEEP}"
    assert error["extensions"]["errors"] == [
        {"row": 0, "field": "data", "message": error["message"]}
    ]


def test_an_import_of_a_5000_digit_number_is_bad_input_naming_data(fleet: Api) -> None:
    # Python's json refuses to convert it with a ValueError that is not a JSONDecodeError.
    error = refused(
        fleet,
        IMPORT,
        f="JSON",
        d='{"devices": [{"hostname": "h", "totalcpu": ' + "9" * 5000 + "}]}",
    )
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"].startswith("data: numbers must have at most")


def test_a_profile_config_of_3000_brackets_is_bad_profile_naming_the_label(fleet: Api) -> None:
    labels = {INVENTORY: "baremetal", CONFIG: "[" * 3000}
    saved = refused(fleet, SAVE, n="deep", l=labels)
    inline = refused(fleet, MATCH, i={"environment": "e1", "labels": labels, "variables": {}})
    for error in (saved, inline):
        assert error["extensions"] == {"code": "BAD_PROFILE", "field": CONFIG}
        assert error["message"] == f"{CONFIG}: {TOO_DEEP}"


def test_json_scalar_arguments_nested_too_deep_are_refused(fleet: Api) -> None:
    # Deeper than the service takes, yet shallower than what the HTTP body's parser refuses
    # (JSON nested about 1,000 deep is the transport's to refuse, before any resolver).
    deep: Any = "x"
    for _ in range(MAX_JSON_DEPTH + 8):
        deep = [deep]
    labels = {INVENTORY: "baremetal", "note": deep}
    error = refused(fleet, SAVE, n="deep", l=labels)
    assert error["extensions"] == {"code": "BAD_PROFILE", "field": "labels"}
    error = refused(
        fleet,
        MATCH,
        i={"environment": "e1", "labels": capacity_labels(), "variables": {"v": 1, "x": deep}},
    )
    assert error["extensions"] == {"code": "BAD_VARIABLE", "variable": "x"}
    assert error["message"] == f"variable 'x': {TOO_DEEP}"


# --- 2. CSV the csv module refuses -------------------------------------------------------


def test_a_csv_cell_over_the_field_limit_is_bad_input_with_row_and_field(fleet: Api) -> None:
    limit = csv.field_size_limit()
    data = "hostname,serial\nsrv-9,s9\nsrv-10," + "x" * (limit + 1) + "\n"
    error = refused(fleet, IMPORT, f="CSV", d=data)
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["extensions"]["errors"] == [
        {"row": 3, "field": "serial", "message": f"a cell is longer than {limit} characters"}
    ]
    assert error["message"].startswith("row 3, field 'serial': a cell is longer than")


# --- 3. numbers past the float range, or not finite --------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("requiredGPU", 10**400, "must be at most 1000000000000000, got 1000000000"),
        ("requiredGPU", "1e400", "must be at most 1000000000000000, got '1e400'"),
        ("requiredCPU", -(10**400), "must not be negative, got -100000000"),
        ("requiredNoofNodes", 10**30, f"must be at most 100000, got {10**30}"),
    ],
)
def test_a_huge_capacity_variable_is_bad_variable_naming_it(
    fleet: Api, key: str, value: Any, message: str
) -> None:
    error = refused(
        fleet,
        MATCH,
        i={"environment": "e1", "labels": capacity_labels(key), "variables": {"v": value}},
    )
    assert error["extensions"] == {"code": "BAD_VARIABLE", "variable": "v", "filterIndex": 0}
    assert error["message"].startswith(f"variable 'v': {message}")


def test_a_match_variable_of_10_to_the_400_is_bad_variable(fleet: Api) -> None:
    config = [{"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"}]
    labels = {INVENTORY: "baremetal", CONFIG: json.dumps(config)}
    error = refused(
        fleet, MATCH, i={"environment": "e1", "labels": labels, "variables": {"gputype": 10**400}}
    )
    assert error["extensions"]["code"] == "BAD_VARIABLE"
    assert error["message"].startswith("variable 'gputype': must be a finite number")


def test_a_huge_preset_amount_is_bad_profile_when_saved_and_when_used(fleet: Api) -> None:
    labels = capacity_labels("size", capacityMap={"big": {"requiredGPU": 10**400}})
    saved = refused(fleet, SAVE, n="huge", l=labels)
    used = refused(
        fleet, MATCH, i={"environment": "e1", "labels": labels, "variables": {"v": "big"}}
    )
    for error in (saved, used):
        assert error["extensions"] == {
            "code": "BAD_PROFILE",
            "filterIndex": 0,
            "field": "capacityMap.big.requiredGPU",
        }


# --- 4. times that overflow when moved to UTC --------------------------------------------

AUDIT = "query($f: AuditEventFilter) { auditEvents(filter: $f) { edges { node { id } } } }"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("since", "0001-01-01T00:00:00+14:00"),
        ("until", "0001-01-01T00:00:00+00:01"),
        ("since", "9999-12-31T23:59:59-14:00"),
    ],
)
def test_an_audit_time_out_of_range_in_utc_is_bad_input_naming_it(
    api: Api, field: str, value: str
) -> None:
    for response in (
        api.post(AUDIT, {"f": {field: value}}),
        api.post(
            f'{{ auditEvents(filter: {{{field}: "{value}"}}) {{ edges {{ node {{ id }} }} }} }}'
        ),
    ):
        error = first_error(response)
        assert error["extensions"] == {"code": "BAD_INPUT", "field": f"filter.{field}"}
        assert error["message"] == (
            f"filter.{field}: {value!r} is out of range in UTC (years 1 to 9999)"
        )


def test_a_datetime_past_year_9999_is_validation_failed(api: Api) -> None:
    # Python's datetime cannot hold it, so the DateTime scalar refuses it before any
    # resolver: a value of the wrong form, like "ten" for an Int.
    error = first_error(api.post(AUDIT, {"f": {"since": "99999-01-01T00:00:00Z"}}))
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert error["message"].startswith("Variable '$f' has invalid value at .since:")
    literal = '{ auditEvents(filter: {since: "99999-01-01T00:00:00Z"}) { edges { node { id } } } }'
    error = first_error(api.post(literal))
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "99999-01-01T00:00:00Z" in error["message"]


# --- 5. list filters the database cannot run ---------------------------------------------

DEVICES = """query($f: DeviceFilter, $n: Int!, $a: String) {
  devices(filter: $f, first: $n, after: $a) { totalCount } }"""
VMS = "query($f: MachineFilter) { vms(filter: $f) { totalCount } }"


@pytest.mark.parametrize("query", [DEVICES, VMS])
@pytest.mark.parametrize(
    ("flt", "field", "message"),
    [
        (
            {"tags": [{"key": f"k{n}", "value": "v"} for n in range(2000)]},
            "filter.tags",
            f"at most {MAX_TAG_FILTERS} tag conditions, got 2000",
        ),
        (
            {"tags": [{"key": "k", "value": "v" * 300}]},
            "filter.tags.value",
            f"at most {MAX_FILTER_TEXT} characters, got 300",
        ),
        (
            {"hostnamePrefix": "srv-%_" * 900_000},
            "filter.hostnamePrefix",
            f"at most {MAX_FILTER_TEXT} characters, got 5400000",
        ),
        (
            {"site": ["blr"] * (MAX_FILTER_VALUES + 1)},
            "filter.site",
            f"at most {MAX_FILTER_VALUES} values, got {MAX_FILTER_VALUES + 1}",
        ),
        (
            {"status": ["AVAILABLE"] * 70_000},
            "filter.status",
            f"at most {MAX_FILTER_VALUES} values, got 70000",
        ),
        ({"gpuModel": "h" * 256}, "filter.gpuModel", "at most 255 characters, got 256"),
    ],
)
def test_filters_past_their_limits_are_bad_input_naming_field_and_limit(
    fleet: Api, query: str, flt: dict[str, Any], field: str, message: str
) -> None:
    error = first_error(fleet.post(query, {"f": flt, "n": 10}))
    assert error["extensions"] == {"code": "BAD_INPUT", "field": field}
    assert error["message"] == f"{field}: {message}"


def test_filters_at_their_limits_are_answered(fleet: Api) -> None:
    flt = {
        "tags": [{"key": f"k{n}", "value": "v" * MAX_FILTER_TEXT} for n in range(MAX_TAG_FILTERS)],
        "hostnamePrefix": "s" * MAX_FILTER_TEXT,
        "site": [f"site-{n}" for n in range(MAX_FILTER_VALUES)],
    }
    assert fleet.ok(DEVICES, f=flt, n=10) == {"devices": {"totalCount": 0}}
    assert fleet.ok(DEVICES, f={"hostnamePrefix": "srv-"}, n=10) == {"devices": {"totalCount": 2}}


def test_too_many_sites_in_the_capacity_view_is_bad_input(fleet: Api) -> None:
    error = first_error(
        fleet.post(
            "query($s: [String!]) { capacity(site: $s) { total { nodes } } }",
            {"s": ["blr"] * (MAX_FILTER_VALUES + 1)},
        )
    )
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "site"}


@pytest.mark.parametrize(
    ("first", "after", "field"),
    [
        (-1, None, "first"),
        (0, None, "first"),
        (2**31 - 1, None, "first"),
        (10, "!!!", "after"),
        (10, "eyJ4IjoxfQ", "after"),  # base64 of a JSON object, not a cursor
        (10, "W1siZGV2aWNlLmhvc3RuYW1lIiwxLDJdXQ", "after"),
    ],
)
def test_bad_page_arguments_are_bad_input(
    fleet: Api, first: int, after: str | None, field: str
) -> None:
    error = first_error(fleet.post(DEVICES, {"n": first, "a": after}))
    assert error["extensions"] == {"code": "BAD_INPUT", "field": field}
