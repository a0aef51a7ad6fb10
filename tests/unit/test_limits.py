"""Hostile values at the domain's edge (issue 12): JSON nested thousands deep, numbers past
the float range or not finite, CSV cells past the csv module's limit. Each is refused with
a code and a message naming the field, never let through to a RecursionError,
OverflowError or csv.Error."""

from __future__ import annotations

import csv
import json
from typing import Any

import pytest

from api.domain.document import MAX_AMOUNT, MAX_COUNT
from api.domain.errors import BAD_INPUT, BAD_PROFILE, BAD_VARIABLE, DomainError
from api.domain.inventory_import import parse_csv_import, parse_json_import
from api.domain.limits import (
    MAX_DIGITS,
    MAX_JSON_DEPTH,
    JsonInputError,
    json_problem,
    parse_json,
)
from api.domain.matching.profile import CONFIG_LABEL, INVENTORY_LABEL, parse_labels
from api.domain.matching.request import resolve


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- parse_json / json_problem -----------------------------------------------------------


def test_parse_json_takes_json_up_to_the_depth_limit() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(JsonInputError, match=f"nested more than {MAX_JSON_DEPTH} levels deep"):
        parse_json(nested(MAX_JSON_DEPTH + 1))


@pytest.mark.parametrize("text", ["[" * 3000, nested(100_000), '{"a":' * 50_000])
def test_parse_json_refuses_json_deeper_than_the_interpreter_can_parse(text: str) -> None:
    with pytest.raises(JsonInputError, match="nested more than"):
        parse_json(text)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "[-1e999]"])
def test_parse_json_refuses_numbers_that_are_not_finite(text: str) -> None:
    with pytest.raises(JsonInputError, match="numbers must be finite"):
        parse_json(text)


@pytest.mark.parametrize("text", ["9" * 5000, '{"a": [-' + "1" * 4301 + "]}"])
def test_parse_json_refuses_numbers_of_more_digits_than_python_converts(text: str) -> None:
    with pytest.raises(JsonInputError, match=f"numbers must have at most {MAX_DIGITS} digits"):
        parse_json(text)
    assert parse_json("9" * MAX_DIGITS) == int("9" * MAX_DIGITS)


def test_json_problem_measures_values_deeper_than_the_recursion_limit() -> None:
    value: Any = []
    for _ in range(10_000):
        value = [value]
    assert json_problem(value) == f"nested more than {MAX_JSON_DEPTH} levels deep"
    assert json_problem({"a": [1.5, "x", None, {"b": 10**400}]}) is None
    assert json_problem({"a": [float("nan")]}) == "numbers must be finite, got nan"


# --- profiles ----------------------------------------------------------------------------


def labels(config: Any) -> dict[str, Any]:
    return {INVENTORY_LABEL: "baremetal", CONFIG_LABEL: config}


def profile_error(raw: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        parse_labels(raw)
    assert caught.value.code == BAD_PROFILE
    return caught.value


def test_a_config_of_3000_brackets_is_bad_profile_naming_the_label() -> None:
    error = profile_error(labels("[" * 3000))
    assert error.message == f"{CONFIG_LABEL}: nested more than {MAX_JSON_DEPTH} levels deep"
    assert error.extensions == {"field": CONFIG_LABEL}


def test_an_already_parsed_config_nested_too_deep_is_bad_profile() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    error = profile_error(labels(deep))
    assert error.message == f"labels: nested more than {MAX_JSON_DEPTH} levels deep"


def test_other_labels_are_held_to_json_too() -> None:
    raw = labels("[]") | {"note": {"weight": float("inf")}}
    assert profile_error(raw).message == "labels: numbers must be finite, got inf"


@pytest.mark.parametrize(
    ("key", "amount", "maximum"),
    [
        ("requiredGPU", 10**400, MAX_AMOUNT),
        ("requiredGPU", MAX_AMOUNT + 1, MAX_AMOUNT),
        ("requiredMemoryMB", 1e300, MAX_AMOUNT),
        ("requiredNoofNodes", MAX_COUNT + 1, MAX_COUNT),
    ],
)
def test_a_preset_amount_past_the_document_limits_is_bad_profile(
    key: str, amount: Any, maximum: int
) -> None:
    config = [
        {
            "type": "capacity",
            "keyInVariable": "size",
            "keyInCapacity": "size",
            "capacityMap": {"big": {key: amount}},
        }
    ]
    error = profile_error(labels(json.dumps(config)))
    assert error.extensions == {"filterIndex": 0, "field": f"capacityMap.big.{key}"}
    assert f"must be a whole number from 0 to {maximum}" in error.message


# --- variables ---------------------------------------------------------------------------


def capacity_profile(key: str) -> Any:
    config = [{"type": "capacity", "keyInVariable": "v", "keyInCapacity": key}]
    return parse_labels(labels(json.dumps(config)))


def variable_error(profile: Any, variables: dict[str, Any]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        resolve(profile, variables)
    assert caught.value.code == BAD_VARIABLE
    return caught.value


@pytest.mark.parametrize("value", [10**400, -(10**400), "1e400", "9" * 5000, MAX_AMOUNT + 1])
def test_a_capacity_variable_past_the_limits_is_bad_variable(value: Any) -> None:
    error = variable_error(capacity_profile("requiredGPU"), {"v": value})
    assert error.extensions == {"variable": "v", "filterIndex": 0}
    assert error.message.startswith("variable 'v': must ")
    assert len(error.message) < 200  # a 5,000-digit value is not echoed whole


def test_a_node_count_is_at_most_the_document_count_limit() -> None:
    profile = capacity_profile("requiredNoofNodes")
    assert resolve(profile, {"v": MAX_COUNT}).requirements.nodes == MAX_COUNT
    error = variable_error(profile, {"v": 10**30})
    assert error.message == f"variable 'v': must be at most {MAX_COUNT}, got {10**30!r}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nan", "variable 'v': must be a number, got 'nan'"),
        (float("nan"), "variable 'v': numbers must be finite, got nan"),
        (float("inf"), "variable 'v': numbers must be finite, got inf"),
    ],
)
def test_nan_and_infinity_are_bad_variables(value: Any, message: str) -> None:
    assert variable_error(capacity_profile("requiredCPU"), {"v": value}).message == message


def test_large_amounts_within_the_limit_are_exact() -> None:
    profile = capacity_profile("requiredMemoryMB")
    assert resolve(profile, {"v": str(MAX_AMOUNT)}).requirements.memory_mb == MAX_AMOUNT


@pytest.mark.parametrize("value", [10**400, [1, -(10**400)]])
def test_a_match_variable_beyond_the_float_range_is_bad_variable(value: Any) -> None:
    config = [{"type": "match", "keyInVariable": "v", "keyInDevice": "gpus.vendorCode"}]
    profile = parse_labels(labels(json.dumps(config)))
    error = variable_error(profile, {"v": value})
    assert "must be a finite number" in error.message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("inf"), "numbers must be finite, got inf"),
        ({"a": [float("nan")]}, "numbers must be finite, got nan"),
        (json.loads(nested(500)), f"nested more than {MAX_JSON_DEPTH} levels deep"),
    ],
)
def test_any_variable_must_be_json_a_column_can_hold(value: Any, problem: str) -> None:
    # Unread variables too: they are stored with the allocation and echoed back.
    error = variable_error(capacity_profile("requiredGPU"), {"v": 1, "unread": value})
    assert error.message == f"variable 'unread': {problem}"


def test_a_match_variable_of_many_brackets_is_a_plain_string() -> None:
    config = [{"type": "match", "keyInVariable": "v", "keyInDevice": "model"}]
    request = resolve(parse_labels(labels(json.dumps(config))), {"v": "[" * 5000})
    assert request.conditions[0].values == (("s", "[" * 5000),)


# --- imports -----------------------------------------------------------------------------


def import_error(parse: Any, data: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        parse(data)
    assert caught.value.code == BAD_INPUT
    return caught.value


@pytest.mark.parametrize(
    "data", [nested(5000), '{"devices": ' + "[" * 100_000, "[NaN]", "9" * 5000]
)
def test_a_json_import_beyond_the_limits_is_bad_input_naming_data(data: str) -> None:
    error = import_error(parse_json_import, data)
    assert error.message.startswith("data: ")
    assert error.extensions["errors"] == [{"row": 0, "field": "data", "message": error.message}]


def test_a_csv_cell_past_the_csv_field_limit_names_its_row_and_column() -> None:
    limit = csv.field_size_limit()
    data = "hostname,serial\nh1,s1\nh2," + "x" * (limit + 1) + "\n"
    error = import_error(parse_csv_import, data)
    assert error.extensions["errors"] == [
        {"row": 3, "field": "serial", "message": f"a cell is longer than {limit} characters"}
    ]


def test_a_csv_error_is_reported_with_the_other_rows_errors() -> None:
    data = "hostname,totalcpu\nh1,lots\nh2," + "9" * 200_000 + "\n"
    rows = import_error(parse_csv_import, data).extensions["errors"]
    assert [(e["row"], e["field"]) for e in rows] == [(2, "totalcpu"), (3, "totalcpu")]


def test_an_over_long_header_is_bad_input() -> None:
    error = import_error(parse_csv_import, "x" * 200_000 + "\nh1\n")
    assert error.extensions["errors"][0]["row"] == 1
