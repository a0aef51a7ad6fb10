"""Every argument of every query and mutation, one at a time, meets each hostile value of
its type (issue 12, "Done when"): over HTTP, on SQLite and PostgreSQL, against a small
fleet. No 5xx, no INTERNAL_SERVER_ERROR, every error with a code.

The positions come from a walk of the live schema (arguments, then input fields three
deep, a list's item and the list itself), so an argument is covered the day it is added.
Each request holds valid values everywhere else (a real id of the right kind, a valid
profile), so that the hostile one gets as deep as it can.

Why a walk of our own beside hypothesis-graphql (test_hostile_generated.py): that library
draws argument positions at random, so a given argument meets a given value by chance;
here each of the ~260 positions meets each of its values once, in a fixed order. About
1,300 requests per backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import graphql
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.graphql.schema import printed_schema
from tests.support import hostile
from tests.support.api import Api
from tests.support.hostile_fleet import PROFILE, ROLES, Fleet, make_fleet

SCHEMA = graphql.build_schema(printed_schema())
MAX_INPUT_DEPTH = 3  # input objects inside input objects: DeviceInput.gpus[0].vendorCode

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A place for a value: a root field's argument, or a field inside it."""

    operation: str  # "query" | "mutation"
    field: str
    path: Path  # the argument's name, then input field names; 0 for a list's item
    type: graphql.GraphQLInputType  # the type of the value at the path

    def __str__(self) -> str:
        return f"{self.field}({'.'.join(map(str, self.path))})"


def positions() -> list[Position]:
    found: list[Position] = []
    for operation, root in (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type)):
        for name, field in sorted(root.fields.items()):
            for argument, definition in field.args.items():
                found += _walk(operation, name, (argument,), definition.type, 0)
    return found


def _walk(operation: str, field: str, path: Path, type_: Any, depth: int) -> list[Position]:
    here = Position(operation, field, path, type_)
    named = graphql.get_nullable_type(type_)
    if isinstance(named, graphql.GraphQLList):
        return [here, *_walk(operation, field, (*path, 0), named.of_type, depth)]
    if isinstance(named, graphql.GraphQLInputObjectType):
        if depth >= MAX_INPUT_DEPTH:
            return []
        return [
            p
            for name, inner in named.fields.items()
            for p in _walk(operation, field, (*path, name), inner.type, depth + 1)
        ]
    return [here]


# --- the request around one position -------------------------------------------------------


def document(operation: str, field: str) -> str:
    """The field with every argument as a variable; a variable left out of the request
    leaves its argument out (GraphQL's rule), so one document serves every position."""
    definition = (SCHEMA.query_type if operation == "query" else SCHEMA.mutation_type).fields[field]
    declared = ", ".join(
        f"${name}: {arg.type}{_default(arg)}" for name, arg in definition.args.items()
    )
    passed = ", ".join(f"{name}: ${name}" for name in definition.args)
    returned = graphql.get_named_type(definition.type)
    selection = "" if graphql.is_leaf_type(returned) else " { __typename }"
    head = f"{operation}({declared})" if declared else operation
    call = f"{field}({passed})" if passed else field
    return f"{head} {{ {call}{selection} }}"


def _default(argument: graphql.GraphQLArgument) -> str:
    """The argument's default, given to its variable too: a variable left out then takes
    it, even where the argument is non-null (``first: Int! = 50``)."""
    node = argument.ast_node.default_value if argument.ast_node else None  # as the SDL says
    return f" = {graphql.print_ast(node)}" if node else ""


# Valid values for what must be given, by name, so that the request gets past them.
BENIGN = {
    "slug": "t-hostile",
    "tenant": "tenant-a",
    "data": json.dumps({"devices": [{"hostname": "srv-h"}]}),
    "name": "h-new",
    "environment": "env-h",
    "hostname": "srv-h",
    "device": "srv-1",
    "port": "ib9",
    "key": "location",
    "value": "india",
    "vendorCode": "NVIDIA",
    "modelNo": "H100-SXM5-80GB",
    "labels": PROFILE,
    "variables": {"gpu": "8"},
    "tags": {"location": "india"},
}


# Optional fields given anyway, so that a request gets as far as the hostile value: a
# match needs a profile (or labels: then the profile is left out, see arguments()).
BENIGN_OPTIONAL = {"MatchDeviceInput": {"profile": "h100"}}


def id_kind(field: str) -> str:
    for kind in ("Vm", "Switch", "Infiniband"):
        if kind in field:
            return kind.lower() + "s" if kind != "Switch" else "switches"
    return "devices"


def benign(fleet: Fleet, field: str, name: str, type_: Any) -> Any:
    """A valid value: an input object gets its required fields."""
    named = graphql.get_nullable_type(type_)
    if isinstance(named, graphql.GraphQLList):
        return [benign(fleet, field, name, named.of_type)]
    if isinstance(named, graphql.GraphQLInputObjectType):
        required = {
            key: benign(fleet, field, key, inner.type)
            for key, inner in named.fields.items()
            if graphql.is_required_input_field(inner)
        }
        return required | BENIGN_OPTIONAL.get(named.name, {})
    if isinstance(named, graphql.GraphQLEnumType):
        return next(iter(named.values))
    if name in BENIGN:
        return BENIGN[name]
    if named.name == "ID":
        return (fleet.ids.get(id_kind(field)) or fleet.all_ids)[0]
    return {
        "Int": 1,
        "Float": 1.0,
        "Boolean": False,
        "JSON": {},
        "DateTime": "2026-01-01T00:00:00Z",
    }.get(named.name, "x")


def arguments(fleet: Fleet, position: Position, value: Any) -> dict[str, Any]:
    """The required arguments with valid values, and ``value`` at the position."""
    definition = (
        SCHEMA.query_type if position.operation == "query" else SCHEMA.mutation_type
    ).fields[position.field]
    given = {
        name: benign(fleet, position.field, name, arg.type)
        for name, arg in definition.args.items()
        if graphql.is_required_argument(arg)
    }
    head, *rest = position.path
    assert isinstance(head, str)
    if head == "data" and isinstance(value, str) and value.startswith("hostname,"):
        given["format"] = "CSV"
    if head == "input" and rest[:1] == ["labels"]:
        given["input"].pop("profile", None)  # a profile or labels, not both
    given[head] = _place(
        fleet, position.field, definition.args[head].type, given.get(head), rest, value
    )
    return given


def _place(fleet: Fleet, field: str, type_: Any, current: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    named = graphql.get_nullable_type(type_)
    step, *rest = path
    if isinstance(named, graphql.GraphQLList):
        item = (
            current[0]
            if isinstance(current, list) and current
            else benign(fleet, field, "", named.of_type)
        )
        return [_place(fleet, field, named.of_type, item, rest, value)]
    assert isinstance(named, graphql.GraphQLInputObjectType)
    container = dict(current) if isinstance(current, dict) else benign(fleet, field, "", named)
    inner = named.fields[step].type
    container[step] = _place(fleet, field, inner, container.get(step), rest, value)
    return container


# --- the hostile values ----------------------------------------------------------------------

STRINGS = [
    ("3,000 brackets", "[" * 3000),
    ("256 characters", "x" * 256),
    ("60 KB LIKE pattern", "srv-%" * 12_000),  # SQLite refuses LIKE patterns over 50,000 bytes
    ("5,000 digits", "9" * 5000),
    ("empty", ""),
    ("lone surrogate", "\ud800"),
    ("quotes and wildcards", "%_\\'\""),
]
# An import's data; those named "CSV ..." are sent with format: CSV.
DATA = [
    ("JSON 5,000 deep", "[" * 5000 + "]" * 5000),
    ("CSV cell over 131,072", "hostname,serial\nh1," + "x" * 131_073 + "\n"),
    ("CSV quote left open", 'hostname,serial\nh1,"' + "x" * 1000),
    ("CSV of 5,000 digits", "hostname,totalcpu\nh1," + "9" * 5000 + "\n"),
    ("JSON NaN", '{"devices": [{"hostname": "h", "totalcpu": NaN}]}'),
    ("JSON 1e400", '{"devices": [{"hostname": "h", "totalcpu": 1e400}]}'),
    ("JSON 10**400", '{"devices": [{"hostname": "h", "totalcpu": 1' + "0" * 400 + "}]}"),
    ("JSON of 5,000 digits", '{"devices": [{"hostname": "h", "totalcpu": ' + "9" * 5000 + "}]}"),
]
INTS = [("-1", -1), ("0", 0), ("501", 501), ("2**31-1", 2**31 - 1), ("-2**31", -(2**31))]
FLOATS = [("0", 0.0), ("-1", -1.0), ("5e-324", 5e-324), ("1e308", 1e308)]
DATETIMES = [
    ("+14:00 at year 1", "0001-01-01T00:00:00+14:00"),
    ("-14:00 at year 9999", "9999-12-31T23:59:59-14:00"),
    ("year 99999", "99999-01-01T00:00:00Z"),
    ("no offset", "2026-01-01T00:00:00"),
    ("not a date", "x"),
]
DEEP = hostile.nested(40)
PRESET = [
    {
        "type": "capacity",
        "keyInVariable": "s",
        "keyInCapacity": "s",
        "capacityMap": {"big": {"requiredGPU": 10**400}},
    }
]
JSONS = {
    "labels": [
        ("config of 3,000 [", {hostile.INVENTORY: "baremetal", hostile.CONFIG: "[" * 3000}),
        ("config nested 40", {hostile.INVENTORY: "baremetal", hostile.CONFIG: json.dumps(DEEP)}),
        ("preset of 10**400", {hostile.INVENTORY: "mks", hostile.CONFIG: json.dumps(PRESET)}),
        ("not an object", [PROFILE]),
    ],
    "variables": [
        ("gpu 10**400", {"gpu": 10**400}),
        ("gpu '1e400'", {"gpu": "1e400"}),
        ("gputype 10**400", {"gputype": 10**400}),
        ("gpu 10**30 nodes", {"gpu": 1, "size": "big", "x": 10**30}),
        ("unread nested 40", {"gpu": 1, "x": DEEP}),
        ("a list", [1]),
    ],
}
JSON_ANY = [
    ("nested 40", DEEP),
    ("10**400", 10**400),
    ("1e308", 1e308),
    ("keys that are not names", {"a.b": "x" * 300, "": 10**30}),
]


def hostile_values(fleet: Fleet, position: Position) -> list[tuple[str, Any]]:
    named = graphql.get_nullable_type(position.type)
    name = next((step for step in reversed(position.path) if isinstance(step, str)), "")
    if isinstance(named, graphql.GraphQLList):
        item = benign(fleet, position.field, name, named.of_type)
        if isinstance(item, dict):  # 2,000 distinct tag conditions broke SQLite (depth 1,000)
            items = [{k: f"{v}-{n}" if isinstance(v, str) else v for k, v in item.items()}
                     for n in range(2_000)]  # fmt: skip
        else:
            items = [item] * 6_000
        return [(f"{len(items):,} items", items), ("no items", [])]
    kind = getattr(named, "name", "")
    if kind == "String":
        return (DATA if name == "data" else []) + STRINGS
    if kind == "ID":
        other = next(ids[0] for k, ids in fleet.ids.items() if k != id_kind(position.field) and ids)
        return [
            ("unknown", "00000000-0000-0000-0000-000000000000"),
            ("another kind's", other),
            ("300 characters", "x" * 300),
            ("lone surrogate", "\ud800"),
            ("empty", ""),
        ]
    if kind == "Int":
        return INTS
    if kind == "Float":
        return FLOATS
    if kind == "DateTime":
        return DATETIMES
    if kind == "JSON":
        return JSONS.get(name, []) + JSON_ANY
    return []  # enums and booleans: only valid values exist (the invalid-document test)


# --- the test ------------------------------------------------------------------------------


@pytest.fixture
def fleet(api: Api, db: sessionmaker[Session]) -> Iterator[Fleet]:
    made = make_fleet(api, db)
    yield made
    made.client.close()


def test_every_argument_meets_every_hostile_value(fleet: Fleet) -> None:
    failures: dict[str, list[str]] = {}  # by hostile value, so that each kind shows
    sent = 0
    for number, position in enumerate(positions()):
        role = ROLES[number % 2]
        query = document(position.operation, position.field)
        for label, value in hostile_values(fleet, position):
            fleet.tick()  # before the values: a restore gives the fleet new ids
            variables = arguments(fleet, position, value)
            try:
                fleet.post(fleet.caller(role), query, variables)
            except AssertionError as failure:
                failures.setdefault(label, []).append(f"{position} as {role}: {failure}")
            sent += 1
    assert sent > 1000, sent  # the walk found the schema's arguments
    assert not failures, f"{sum(map(len, failures.values()))} of {sent} requests failed:\n" + (
        "\n".join(
            f"- {label}: {len(found)}, e.g. {found[0][:700]}" for label, found in failures.items()
        )
    )
