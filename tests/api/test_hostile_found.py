"""Hostile requests that the generated suites (test_hostile_generated.py and
test_hostile_positions.py) found answered with INTERNAL_SERVER_ERROR, pinned one by one:
each failed before its fix, and a random draw might not meet it again.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.api import Api

NUL = "a\x00b"


def coded_refusal(api: Api, query: str, variables: dict[str, Any] | None = None) -> str:
    """The code of the request's first error; never a 5xx, never an internal error. The same
    on both backends: SQLite stores what PostgreSQL cannot, but the answer must not differ."""
    response = api.post(query, variables)
    assert response.status_code < 500, response.text
    errors = response.json().get("errors")
    assert errors, f"answered instead of refused: {response.text[:300]}"
    codes = [(e.get("extensions") or {}).get("code") for e in errors]
    assert all(codes) and "INTERNAL_SERVER_ERROR" not in codes, response.text
    return codes[0]


# A NUL (U+0000) in a string that reaches PostgreSQL: psycopg refuses to send it ("text
# fields cannot contain NUL"), a DataError, so INTERNAL_SERVER_ERROR from every resolver
# that looks a string up. Like a lone surrogate, it is best refused once where the request
# is read (api/graphql/request.py check_values for variables; a validation rule for string
# literals, which the lexer takes as "\u0000").
NUL_LOOKUPS = [  # a few of the ~20 resolvers that fail alike
    "query($s: String!) { devices(filter: {site: [$s]}) { totalCount } }",
    "query($s: String!) { auditEvents(filter: {actor: $s}) { edges { node { id } } } }",
    "query($s: String!) { projects(tenant: $s) { slug } }",
    "query($s: ID!) { node(id: $s) { id } }",
    "mutation($s: String!) { releaseAllocation(environment: $s) { id } }",
]


@pytest.mark.parametrize("query", NUL_LOOKUPS)
def test_a_nul_in_a_string_variable_is_refused_with_a_code(api: Api, query: str) -> None:
    coded_refusal(api, query, {"s": NUL})


@pytest.mark.parametrize("query", NUL_LOOKUPS[:1])
def test_a_nul_in_a_string_literal_is_refused_with_a_code(api: Api, query: str) -> None:
    literal = query.split(")", 1)[1].replace("$s", json.dumps(NUL))  # "\u0000" in GraphQL
    coded_refusal(api, literal.strip())


# A forged cursor whose value the database cannot bind: api/db/paging.decode_cursor
# checks that a cursor names this list's ordering and that its sort value has the right
# type, but not the id's type, nor strings the driver cannot encode (a lone surrogate, on
# both backends; a NUL, on PostgreSQL). Base64 hides them from the request's own checks.


def cursor(order: str, value: Any, row_id: Any) -> str:
    raw = json.dumps([order, value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "after"),
    [
        ("{ devices(after: $a) { totalCount } }", cursor("device.hostname", "\ud800", "x")),
        ("{ devices(after: $a) { totalCount } }", cursor("device.hostname", NUL, "x")),
        ("{ devices(after: $a) { totalCount } }", cursor("device.hostname", "a", NUL)),
        ("{ devices(after: $a) { totalCount } }", cursor("device.hostname", "a", 5)),
        (
            "{ auditEvents(after: $a) { edges { node { id } } } }",
            cursor("audit_event.at", {"t": "2026-01-01T00:00:00+00:00"}, "x"),
        ),
    ],
)
def test_a_forged_cursor_is_bad_input(api: Api, query: str, after: str) -> None:
    assert coded_refusal(api, "query($a: String) " + query, {"a": after}) == "BAD_INPUT"


# An Int literal of more than 4,300 digits: graphql-core's parse_int_literal calls int(),
# which refuses it with a ValueError (Python's limit on int-from-string conversion); the
# validation error wraps it without a path, and api/graphql/view.code_of gives it no code.


def test_an_int_literal_of_5000_digits_is_validation_failed(api: Api) -> None:
    query = "{ devices(first: 1" + "0" * 5000 + ") { totalCount } }"
    assert coded_refusal(api, query) == "GRAPHQL_VALIDATION_FAILED"


# A spread of a fragment the document does not define: strawberry's query depth limiter
# (api/graphql/schema.py's limits) looks the fragment up without checking, a KeyError,
# before graphql-core's own rule can say "Unknown fragment". The limiter could skip
# unknown spreads (the KnownFragmentNames rule reports them) in a small subclass.


@pytest.mark.parametrize("query", ["{ me { ...missing } }", "{ ...missing }"])
def test_an_unknown_fragment_is_validation_failed(api: Api, query: str) -> None:
    assert coded_refusal(api, query) == "GRAPHQL_VALIDATION_FAILED"


# A tenant's or project's name longer than its column (255): api/db/tenant.py checked the
# slug but not the name, and PostgreSQL refused the INSERT (StringDataRightTruncation);
# SQLite stored it. Found by test_hostile_positions.py.


@pytest.mark.parametrize(
    "query",
    [
        'mutation($n: String) { createTenant(slug: "t-long", name: $n) { slug } }',
        'mutation($n: String) { createProject(tenant: "t-long", slug: "p", name: $n) { slug } }',
    ],
)
def test_a_name_longer_than_255_is_bad_input(api: Api, query: str) -> None:
    if "createProject" in query:
        api.ok('mutation { createTenant(slug: "t-long") { slug } }')
    assert coded_refusal(api, query, {"n": "x" * 256}) == "BAD_INPUT"


# A switches filter of 70,000 sites: PostgreSQL's driver takes at most 65,535 parameters a
# query and refuses to send it (psycopg OperationalError, which the view now answers as
# UNAVAILABLE: "retry", though a retry fails the same way). api/graphql/switch.py could
# pass the list through common.values_filter("filter.site", ...) as devices and vms do.


def test_a_switch_filter_of_70000_sites_is_bad_input(api: Api) -> None:
    query = "query($s: [String!]) { switches(filter: {site: $s}) { totalCount } }"
    assert coded_refusal(api, query, {"s": ["blr"] * 70_000}) == "BAD_INPUT"


# An empty selection set: graphql-core's parser takes "{}" (the spec's grammar does not),
# strawberry's depth limit then took max() of nothing, a ValueError; and without that
# crash the document would be answered {"data": {}}.
@pytest.mark.parametrize("query", ["{}", "{#  }\n}", "query { devices { edges { } } }"])
def test_an_empty_selection_set_is_refused(api: Api, query: str) -> None:
    assert coded_refusal(api, query) == "GRAPHQL_VALIDATION_FAILED"
