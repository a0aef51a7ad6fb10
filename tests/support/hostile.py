"""Hostile values for the generated request suites (tests/api/test_hostile_generated.py,
and tests/api/test_hostile_positions.py for a few).

hypothesis-graphql builds the documents from the live schema; these strategies fill in
their argument values. They are schema-valid where the schema can check (a String is a
string), and hostile everywhere else: huge and negative numbers, empty, long and odd
Unicode strings (lone surrogates included), JSON nested deep, text that looks like JSON,
CSV, dates or SQL, ids of real items and random ones, and well-formed import documents,
profiles and match variables carrying all of the above one level down.

Real ids are not known when strategies are built (the fleet is made per test), so they
are drawn as placeholders ``__ID_<n>__`` that the test replaces before sending.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from typing import Any

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import nodes

ID_SLOTS = 12  # placeholders __ID_0__ … __ID_11__, mapped onto the fleet's ids in turn
INVENTORY = "paas.envmgmt.io/inventory"
CONFIG = "paas.envmgmt.io/inventory.config"

# Names the fleet holds (hostile_fleet.FLEET), so that lookups find something.
FLEET_NAMES = [
    "srv-1", "srv-2", "srv-a1", "srv-b1", "vm-1", "vm-a1", "leaf-1", "leaf-a1",
    "srv-1:ib0", "srv-a1:ib0", "tenant-a", "tenant-b", "proj-a", "h100", "h100-a",
    "env-1", "blr-1", "NVIDIA", "H100-SXM5-80GB", "netbox", "local", "fabric-a",
]  # fmt: skip
ODD_STRINGS = [
    "", " ", "\t\n", "\x00", "a\x00b", "\x7f", "\ud800", "a\udfffb", "\U0001f600" * 3,
    "e\u0301", "\u202eevil", "\ufeff", "ﬁ", "İ", "ß", "%", "_", "%_%", "\\", "\\%", "'",
    '"', "' OR 1=1 --", "'; DROP TABLE device; --", "null", "None", "undefined", "true",
    "0", "-1", "8", " 8 ", "1.5", "1e400", "-1e400", "NaN", "Infinity", "0x10", "1_000",
    "9" * 400, "9" * 5000, "[" * 3000, "{" * 3000, '{"a":' * 2000, "[]", "{}", "[1, 2]",
    '["india", "us"]', "x" * 256, "x" * 10_000, "x," * 70_000,
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "99999-01-01T00:00:00Z",
    "2026-11-23T10:00:00", "2026-11-23T10:00:00Z", "2026-02-30T00:00:00Z",
    "AVAILABLE", "allocated", "baremetal", "mks", "../../etc/passwd", "<script>",
]  # fmt: skip
# The values that broke something once (issue 12), drawn often, wherever a string goes.
DEADLY_STRINGS = [
    "[" * 3000, "{" * 3000, '{"devices": [' * 1500, "9" * 5000, "x" * 256, "x" * 131_073,
    "hostname,serial\nh1," + "x" * 131_073 + "\n", "%_" * 30_000, "srv-%" * 1_000_000,
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "99999-01-01T00:00:00Z",
    "\ud800", "1e400", "[NaN]", '{"devices": [{"hostname": "h", "totalcpu": 1e400}]}',
]  # fmt: skip
INTS = [0, 1, -1, 2, 8, 50, 499, 500, 501, 100_000, 100_001, 2**31 - 1, -(2**31)]
# Past GraphQL's 32-bit Int (documents holding them as an Int are invalid, and must say so)
# and past a float's range; as text, since Python will not print an int of 5,000 digits.
HUGE_INT_TEXT = ["2147483648", "-2147483649", "9223372036854775808", "1" + "0" * 400,
                 "-1" + "0" * 400, "1" + "0" * 5000]  # fmt: skip
HUGE_INTS = [2**31, 2**63, 10**30, 10**400, -(10**400)]  # as JSON values
FLOATS = [0.0, -0.0, -1.0, 0.5, 1e-300, 5e-324, 59.999, 60.0, 60.000001, 1e308, -1e308]


@cache
def placeholder_ids() -> st.SearchStrategy[str]:
    return st.integers(0, ID_SLOTS - 1).map(lambda n: f"__ID_{n}__")


@cache
def plain_strings() -> st.SearchStrategy[str]:
    texts = st.one_of(
        st.sampled_from(FLEET_NAMES),
        st.sampled_from(DEADLY_STRINGS),
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=30),
        st.text(st.characters(codec=None), max_size=10),  # lone surrogates too
        placeholder_ids(),
    )
    return texts


@cache
def strings() -> st.SearchStrategy[str]:
    """Any string argument: plain hostile text, or an import document or a profile
    config (hostile inside) for the arguments that parse one."""
    plain = plain_strings()
    return st.one_of(plain, plain, plain, plain, import_data(), config_text())


@cache
def ints() -> st.SearchStrategy[int]:
    """Mostly small (a page size of 10, a GPU count of 8 go deeper than 1,876,965,918)."""
    return st.one_of(st.sampled_from(INTS), st.integers(0, 600), st.integers(-(2**31), 2**31 - 1))


@cache
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, with hostile leaves; object keys are GraphQL names so that the
    value can also be written as a literal."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        ints(),
        st.sampled_from(HUGE_INTS),
        st.sampled_from(FLOATS),
        plain_strings(),
    )
    keys = st.one_of(
        st.sampled_from(["gpu", "cpu", "location", "a", "_"]),
        st.from_regex(r"\A[_a-zA-Z][_a-zA-Z0-9]{0,8}\Z"),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=max_leaves,
    )


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"a": value}
    return value


@cache
def deep_json() -> st.SearchStrategy[Any]:
    """Around the service's limit of 32 levels, and past it (the HTTP layer refuses 64)."""
    return st.sampled_from([31, 32, 33, 40, 60]).map(nested)


# --- profiles and match variables ------------------------------------------------------

VARIABLE_NAMES = ["gpu", "gputype", "location", "nodes", "cpu", "size", "Namespace Quota Size"]
PATHS = ["gpus.vendorCode", "gpus.modelNo", "tags", "tags.location", "model", "site",
         "infiniband.fabric", "a..b", ".", "gpus.index", "x" * 300]  # fmt: skip
CAPACITY_KEYS = ["requiredNoofNodes", "requiredCPU", "requiredCpu", "requiredMemoryMB",
                 "requiredGPU", "requiredStorageGB", "capacitySize", "requiredNothing"]  # fmt: skip


@cache
def amounts() -> st.SearchStrategy[Any]:
    return st.one_of(
        ints(),
        st.sampled_from(HUGE_INTS),
        st.sampled_from(FLOATS),
        st.sampled_from(["8", "-1", "1.5", "1e400", "nan", "9" * 5000, "", None, True]),
    )


@cache
def presets() -> st.SearchStrategy[Any]:
    return st.dictionaries(
        st.sampled_from(["small", "medium", "big", ""]),
        st.dictionaries(st.sampled_from(CAPACITY_KEYS), amounts(), max_size=3),
        max_size=3,
    )


@cache
def filters() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["match", "capacity", "capacity", "fuzzy"])},
        optional={
            "keyInVariable": st.sampled_from([*VARIABLE_NAMES, "", " ", 5]),
            "keyInDevice": st.sampled_from(PATHS),
            "keyInCapacity": st.sampled_from(CAPACITY_KEYS),
            "capacityMap": presets(),
            "required": st.sampled_from([True, False, "yes", None]),
        },
    )


@cache
def config_text() -> st.SearchStrategy[str]:
    return st.lists(filters(), max_size=4).map(json.dumps)


@cache
def labels() -> st.SearchStrategy[Any]:
    inventory = st.sampled_from(["baremetal", "vm", "vcluster", "mks", " MKS ", "mainframe", ""])
    config = st.one_of(
        config_text(), st.lists(filters(), max_size=3), st.sampled_from(ODD_STRINGS), deep_json()
    )
    return st.fixed_dictionaries(
        {INVENTORY: inventory}, optional={CONFIG: config, "extra": json_values(4)}
    )


@cache
def match_variables() -> st.SearchStrategy[Any]:
    value = st.one_of(
        amounts(),
        st.sampled_from(FLEET_NAMES),
        st.lists(st.one_of(amounts(), st.sampled_from(FLEET_NAMES)), max_size=3),
        deep_json(),
        json_values(4),
    )
    return st.dictionaries(st.sampled_from([*VARIABLE_NAMES, "unread"]), value, max_size=4)


# --- import documents --------------------------------------------------------------------


@cache
def device_documents() -> st.SearchStrategy[dict[str, Any]]:
    anything = st.one_of(amounts(), plain_strings(), json_values(3))
    gpu = st.fixed_dictionaries(
        {
            "vendorCode": st.sampled_from(["NVIDIA", "amd", "Habana", ""]),
            "modelNo": plain_strings(),
        },
        optional={"memoryMB": amounts(), "index": amounts()},
    )
    return st.fixed_dictionaries(
        {"hostname": st.one_of(st.sampled_from(FLEET_NAMES), plain_strings())},
        optional={
            "totalcpu": amounts(),
            "totalgpus": amounts(),
            "totalmemoryMB": amounts(),
            "gpus": st.lists(gpu, max_size=3),
            "tags": st.dictionaries(st.sampled_from(["location", "shareable", ""]), anything),
            "infiniband": st.lists(
                st.fixed_dictionaries({"name": plain_strings()}, optional={"rateGbps": amounts()}),
                max_size=2,
            ),
            "tenant": st.sampled_from(["tenant-a", "tenant-b", "nobody", ""]),
            "project": st.sampled_from(["proj-a", "nope"]),
            "status": st.sampled_from(["available", "allocated", "retired", "BROKEN"]),
            "kind": st.sampled_from(["baremetal", "vm", "switch"]),
            "site": plain_strings(),
            "unknown": anything,
        },
    )


@cache
def json_import() -> st.SearchStrategy[str]:
    sections = st.fixed_dictionaries(
        {},
        optional={
            "devices": st.lists(device_documents(), max_size=3),
            "vms": st.lists(device_documents(), max_size=2),
            "switches": st.lists(
                st.fixed_dictionaries(
                    {"name": plain_strings()}, optional={"role": plain_strings()}
                ),
                max_size=2,
            ),
            "infinibands": st.lists(
                st.fixed_dictionaries(
                    {"device": st.sampled_from(FLEET_NAMES), "port": plain_strings()},
                    optional={"tenant": st.sampled_from(["tenant-a", "tenant-b"])},
                ),
                max_size=2,
            ),
            "extra": json_values(3),
        },
    )
    return st.one_of(sections, deep_json()).map(json.dumps)


CSV_COLUMNS = [
    "hostname", "name", "kind", "status", "totalcpu", "gpuCount", "gpuVendor", "gpuModel",
    "tenant", "device", "port", "tags.location", "serial", "bogus",
]  # fmt: skip


@cache
def csv_import() -> st.SearchStrategy[str]:
    cell = st.one_of(
        st.sampled_from(["", "8", "-1", "9" * 30, "NVIDIA", "vm", "srv-1", '"', '"a""b"']),
        st.sampled_from(["x" * 131_073, "a\x00b", "\r", '"open', "a\nb"]),  # csv's own limits
        plain_strings(),
    )
    header = st.lists(st.sampled_from(CSV_COLUMNS), min_size=1, max_size=5)
    rows = st.lists(st.lists(cell, max_size=6), max_size=4)

    def write(parts: tuple[list[str], list[list[str]]]) -> str:
        head, body = parts
        lines = [",".join(head)] + [",".join(row) for row in body]
        return "\n".join(lines) + "\n"

    return st.tuples(header, rows).map(write)


@cache
def import_data() -> st.SearchStrategy[str]:
    return st.deferred(lambda: st.one_of(json_import(), csv_import()))


# --- as GraphQL literals -----------------------------------------------------------------


def literal(value: Any) -> graphql.ValueNode:
    """A JSON value as a GraphQL literal (the JSON scalar reads literals back as JSON)."""
    if value is None:
        return nodes.Null
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    if isinstance(value, float):
        return graphql.FloatValueNode(value=repr(value))
    if isinstance(value, str):
        return nodes.String(value)
    if isinstance(value, list):
        return nodes.List([literal(v) for v in value])
    fields = [
        graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=literal(v))
        for k, v in value.items()
    ]
    return nodes.Object(fields)


def huge_int_literals() -> st.SearchStrategy[graphql.ValueNode]:
    return st.sampled_from(HUGE_INT_TEXT).map(lambda text: graphql.IntValueNode(value=text))


@cache
def custom_scalars() -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Values for every scalar of the schema, built-in ones included (hypothesis-graphql
    takes a strategy for a built-in scalar in place of its own)."""
    return {
        "String": strings().map(nodes.String),
        "ID": st.one_of(
            placeholder_ids(), placeholder_ids(), placeholder_ids(), st.uuids().map(str), strings()
        ).map(nodes.String),
        # In range: one Int past 32 bits makes the whole document invalid, and no resolver
        # would run (the invalid-document test sends those).
        "Int": ints().map(nodes.Int),
        "Float": st.one_of(
            st.sampled_from(FLOATS), st.floats(allow_nan=False, allow_infinity=False)
        ).map(lambda f: graphql.FloatValueNode(value=repr(f))),
        "JSON": st.one_of(
            json_values().map(literal), deep_json().map(literal), huge_int_literals()
        ),
        "DateTime": st.one_of(
            st.sampled_from([s for s in ODD_STRINGS if s[:1].isdigit()]),
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
        ).map(nodes.String),
        "BigInt": st.one_of(ints().map(nodes.Int), huge_int_literals()),
    }


# --- values only a variable can carry ----------------------------------------------------


def cursor(order: str, value: Any, row_id: Any) -> str:
    """A cursor as the API writes one (api/db/paging.py), around any value."""
    raw = json.dumps([order, value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@cache
def forged_cursors() -> st.SearchStrategy[str]:
    """Cursors of the right shape with the wrong insides: another list's ordering, a
    value or an id of the wrong type, a time out of range, text no database can bind."""
    orders = st.sampled_from(
        ["device.hostname", "device.created_at", "device.free_gpus", "switch.name",
         "infiniband.name", "allocation.created_at", "audit_event.at", "nothing"]
    )  # fmt: skip
    values = st.sampled_from(
        ["srv-1", "", "x" * 300, 5, 2**63, -1, 1.5, None, True, [1], {"t": "junk"}, {"t": 5},
         {"t": "0001-01-01T00:00:00+14:00"}, {"t": "9999-12-31T23:59:59-14:00"},
         {"t": "2026-01-01T00:00:00"}, {"u": 1}, "\ud800", "a\x00b"]
    )  # fmt: skip
    ids = st.sampled_from(["x", 7, "\ud800", "a\x00b", None, 1.5])
    forged = st.builds(cursor, orders, values, ids)
    return st.one_of(forged, st.sampled_from(["", "=", "!!!", "e30", "W10", "bnVsbA"]))


EDGE_INTS = [-1, 0, 1, 501, 2**31 - 1, -(2**31)]
EDGE_FLOATS = [0.0, -1.0, 5e-324, 1e308, -1e308, 60.000001]


@cache
def by_name() -> dict[str, st.SearchStrategy[Any]]:
    """Values for the arguments and input fields that parse what they are given: the
    variables test draws these for them, besides what the type allows."""
    return {
        "data": st.one_of(import_data(), st.sampled_from(DEADLY_STRINGS)),
        "labels": st.one_of(labels(), variable_json()),
        "variables": st.one_of(match_variables(), variable_json()),
        "tags": st.one_of(
            st.dictionaries(plain_strings(), st.one_of(plain_strings(), amounts()), max_size=5),
            variable_json(),
        ),
        "since": st.sampled_from(
            [s for s in DEADLY_STRINGS + ODD_STRINGS if s[:2] in ("00", "99")]
        ),
        "until": st.sampled_from(
            [s for s in DEADLY_STRINGS + ODD_STRINGS if s[:2] in ("00", "99")]
        ),
        "after": forged_cursors(),
    }


@cache
def variable_json() -> st.SearchStrategy[Any]:
    """JSON scalar values a literal cannot write: keys that are not GraphQL names (the
    profile labels), lone surrogates in keys, numbers a float cannot hold."""
    return st.one_of(
        labels(),
        match_variables(),
        deep_json(),
        st.dictionaries(
            st.sampled_from(["location", "a.b", "", "\ud800", "x" * 300]), json_values(3)
        ),
        st.sampled_from([*HUGE_INTS, 1e308, float("nan"), float("inf"), "\ud800"]),
    )
