"""GraphQL errors: stable codes, HTTP 200, messages naming the field; never a 5xx or a
traceback."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from tests.support.api import Api, make_token
from tests.support.server import ServerThread

CREATE = "mutation($i: DeviceInput!) { createDevice(input: $i) { id hostname } }"


def assert_clean(response: httpx.Response) -> None:
    """What every response must be, however bad the request."""
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert "INTERNAL_SERVER_ERROR" not in response.text, response.text


def graphql_error(api: Api, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first error of a request that GraphQL answered (HTTP 200) with an error."""
    response = api.post(query, variables)
    assert_clean(response)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"], body
    return body["errors"][0]


# --- the request itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "{ devices { ",
        "{ devices(first: ) { totalCount } }",
        "query { devices { edges { node { hostname } } } } }",
        'mutaton { createTenant(slug: "x") { slug } }',
    ],
)
def test_malformed_graphql_is_parse_failed(api: Api, query: str) -> None:
    error = graphql_error(api, query)
    assert error["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}
    assert error["message"].startswith("Syntax Error:")


def test_unknown_field_is_validation_failed_and_named(api: Api) -> None:
    error = graphql_error(api, "{ devices { edges { node { hostname gpuCount } } } }")
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert error["message"] == "Cannot query field 'gpuCount' on type 'Device'."


def test_unknown_argument_is_validation_failed_and_named(api: Api) -> None:
    error = graphql_error(api, "{ devices(last: 5) { totalCount } }")
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "Unknown argument 'last'" in error["message"]


def test_wrong_argument_type_is_validation_failed(api: Api) -> None:
    error = graphql_error(api, '{ devices(first: "ten") { totalCount } }')
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert error["message"] == 'Int cannot represent non-integer value: "ten"'


def test_unknown_enum_value_is_validation_failed(api: Api) -> None:
    error = graphql_error(api, "{ devices(filter: {status: [BROKEN]}) { totalCount } }")
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "BROKEN" in error["message"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ten", "Int cannot represent non-integer value: 'ten'"),
        (2**40, "Int cannot represent non 32-bit signed integer value: 1099511627776"),
        (None, "Expected value of non-null type 'Int!' not to be None."),
    ],
)
def test_wrong_variable_value_is_validation_failed_and_named(
    api: Api, value: Any, expected: str
) -> None:
    error = graphql_error(
        api, "query($n: Int!) { devices(first: $n) { totalCount } }", {"n": value}
    )
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert error["message"].startswith("Variable '$n'")
    assert expected in error["message"]


def test_variable_of_wrong_input_shape_is_validation_failed(api: Api) -> None:
    error = graphql_error(api, CREATE, {"i": {"hostname": "x", "totalCpu": "many"}})
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "totalCpu" in error["message"]
    missing = graphql_error(api, CREATE, {"i": {"rack": "r1"}})
    assert missing["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "hostname" in missing["message"]


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"{not json", "application/json", "Unable to parse request body as JSON"),
        (b"", "application/json", "Unable to parse request body as JSON"),
        (b'{"variables": {}}', "application/json", "No GraphQL query found in the request"),
        (b'{"query": 42}', "application/json", "The GraphQL operation's `query` must be a string"),
        (b'[{"query": "{ me { role } }"}]', "application/json", "Batching is not enabled"),
        (b"{ me { role } }", "text/plain", "Unsupported content type"),
    ],
)
def test_a_body_that_is_not_a_graphql_request_is_400(
    api: Api, content: bytes, content_type: str, message: str
) -> None:
    response = httpx.post(
        f"{api.url}/graphql",
        content=content,
        timeout=30,
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": content_type},
    )
    assert_clean(response)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}
    assert error["message"].startswith(message)


def test_mutations_are_refused_over_get(api: Api) -> None:
    response = httpx.get(
        f"{api.url}/graphql",
        timeout=30,
        params={"query": 'mutation { createTenant(slug: "x") { slug } }'},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert_clean(response)
    assert response.status_code == 400
    assert api.ok("{ tenants { slug } }") == {"tenants": []}


# --- limits -------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    inner = "leaf"
    for level in range(depth):
        inner = f"f{level} {{ {inner} }}"
    return inner


def test_a_query_deeper_than_twelve_is_too_complex(api: Api) -> None:
    error = graphql_error(api, "{ devices { edges { node { " + _nested(12) + " } } } }")
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert error["message"] == "'anonymous' exceeds maximum operation depth of 12"


@pytest.fixture(scope="module")
def shallow_server(database_url: str, engine: Engine) -> Iterator[ServerThread]:
    """A server whose depth limit is low enough for a valid query of this schema to hit."""
    settings = Settings(database_url=database_url, max_query_depth=3)
    with ServerThread(settings) as running:
        yield running


def test_the_depth_limit_refuses_valid_queries_too(
    shallow_server: ServerThread, db: sessionmaker[Session]
) -> None:
    shallow = Api(shallow_server.url, make_token(db, "platform-admin"))
    assert shallow.ok("{ devices { edges { cursor } } }") == {"devices": {"edges": []}}
    error = graphql_error(shallow, "query Deep { devices { edges { node { gpus { index } } } } }")
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert error["message"] == "'Deep' exceeds maximum operation depth of 3"


def test_deep_introspection_is_too_complex(api: Api) -> None:
    inner = "name"
    for _ in range(4):
        inner = f"name possibleTypes {{ name interfaces {{ {inner} }} }}"
    error = graphql_error(api.as_(None), f'{{ __type(name: "Node") {{ {inner} }} }}')
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert "introspection depth" in error["message"]


def test_thirty_aliases_pass_and_thirty_one_are_too_complex(api: Api) -> None:
    def aliased(n: int) -> str:
        return "{ " + " ".join(f"a{i}: me {{ role }}" for i in range(n)) + " }"

    assert len(api.ok(aliased(30))) == 30
    error = graphql_error(api, aliased(31))
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert error["message"] == "31 aliases found. Allowed: 30"


def _sites(n: int) -> str:
    """A cheap query of exactly 16 + n tokens (commas are not tokens in GraphQL)."""
    return (
        "{ devices(filter: {site: ["
        + " ".join(f'"s{i}"' for i in range(n))
        + "]}) { totalCount } }"
    )


def test_4000_tokens_pass_and_4001_are_too_complex(api: Api) -> None:
    assert api.ok(_sites(4000 - 16)) == {"devices": {"totalCount": 0}}
    error = graphql_error(api, _sites(4001 - 16))
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert "more than 4000 tokens" in error["message"]


def test_a_query_too_costly_to_validate_is_too_complex(api: Api) -> None:
    # 3,000 copies of one field: under the token limit, but comparing every pair of them
    # exhausts graphql-core's validation budget.
    error = graphql_error(api, "{ me { " + "role " * 3000 + "} }")
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX"}
    assert error["message"] == "Validation aborted."


# --- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "document_field"),
    [
        ("totalCpu", "totalcpu"),
        ("totalMemoryMB", "totalmemoryMB"),
        ("totalStorageGB", "totalstorageGB"),
        ("totalGpus", "totalgpus"),
    ],
)
def test_negative_capacity_is_bad_input_naming_the_field(
    api: Api, field: str, document_field: str
) -> None:
    error = graphql_error(api, CREATE, {"i": {"hostname": "gpu-01", field: -3}})
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"] == f"{document_field}: must not be negative, got -3"
    assert error["extensions"]["errors"] == [
        {"row": 1, "field": document_field, "message": "must not be negative, got -3"}
    ]
    assert api.ok("{ devices { totalCount } }") == {"devices": {"totalCount": 0}}


def test_negative_gpu_memory_is_bad_input_naming_the_gpu(api: Api) -> None:
    gpus = [
        {"vendorCode": "NVIDIA", "modelNo": "H100"},
        {"vendorCode": "NVIDIA", "modelNo": "H100", "memoryMB": -1},
    ]
    error = graphql_error(api, CREATE, {"i": {"hostname": "gpu-01", "gpus": gpus}})
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"] == "gpus[1].memoryMB: must not be negative, got -1"


def test_every_bad_field_of_a_create_is_listed(api: Api) -> None:
    error = graphql_error(
        api,
        CREATE,
        {
            "i": {
                "hostname": "gpu-01",
                "totalCpu": -1,
                "totalGpus": 2,
                "gpus": [],
                "tags": ["not", "a", "map"],
            }
        },
    )
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert [e["field"] for e in error["extensions"]["errors"]] == ["totalcpu", "tags"]
    assert error["message"].endswith("(and 1 more)")


def test_duplicate_hostname_is_bad_input(api: Api) -> None:
    first = api.ok(CREATE, i={"hostname": "gpu-01"})["createDevice"]
    error = graphql_error(api, CREATE, {"i": {"hostname": "gpu-01", "rack": "r2"}})
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "hostname"}
    assert error["message"] == "hostname: baremetal 'gpu-01' already exists"
    edges = api.ok("{ devices { edges { node { id rack } } } }")["devices"]["edges"]
    assert edges == [{"node": {"id": first["id"], "rack": None}}]


def test_duplicate_switch_name_is_bad_input(api: Api) -> None:
    api.ok('mutation { createSwitch(input: {name: "leaf-1"}) { id } }')
    error = graphql_error(api, 'mutation { createSwitch(input: {name: "leaf-1"}) { id } }')
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "name"}
    assert error["message"] == "name: switch 'leaf-1' already exists"


def test_creating_an_allocated_device_is_refused(api: Api) -> None:
    error = graphql_error(api, CREATE, {"i": {"hostname": "gpu-01", "status": "ALLOCATED"}})
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"] == (
        "status: 'allocated' is set by matchDevice, not by an import or edit"
    )


def test_set_status_to_allocated_is_refused(api: Api) -> None:
    device = api.ok(CREATE, i={"hostname": "gpu-01"})["createDevice"]
    error = graphql_error(
        api,
        "mutation($id: ID!) { setStatus(id: $id, status: ALLOCATED) { status } }",
        {"id": device["id"]},
    )
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "status"}
    assert error["message"] == "status: 'allocated' is set by matchDevice, not by hand"
    node = api.ok("query($id: ID!) { node(id: $id) { ... on Device { status } } }", id=device["id"])
    assert node == {"node": {"status": "AVAILABLE"}}


def test_set_status_of_an_unknown_id_is_not_found(api: Api) -> None:
    error = graphql_error(api, 'mutation { setStatus(id: "nope", status: RETIRED) { id } }')
    assert error["extensions"] == {"code": "NOT_FOUND"}
    assert error["message"] == "item 'nope' not found"


def test_updating_a_device_as_a_vm_is_not_found(api: Api) -> None:
    device = api.ok(CREATE, i={"hostname": "gpu-01"})["createDevice"]
    error = graphql_error(
        api, "mutation($id: ID!) { updateVm(id: $id, patch: {}) { id } }", {"id": device["id"]}
    )
    assert error["extensions"] == {"code": "NOT_FOUND"}  # not a VM
    assert error["message"] == f"vm {device['id']!r} not found"


@pytest.mark.parametrize("first", [0, -1, 501])
def test_first_out_of_range_is_bad_input(api: Api, first: int) -> None:
    for query in ("devices", "vms", "switches", "infinibands"):
        error = graphql_error(
            api, f"query($n: Int!) {{ {query}(first: $n) {{ totalCount }} }}", {"n": first}
        )
        assert error["extensions"] == {"code": "BAD_INPUT", "field": "first"}
        assert error["message"] == f"first: must be between 1 and 500, got {first}"


def test_negative_minimum_in_a_filter_is_bad_input_naming_the_field(api: Api) -> None:
    error = graphql_error(api, "{ devices(filter: {minFreeGpus: -1}) { totalCount } }")
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"] == "filter.minFreeGpus: must not be negative, got -1"


# --- cursors ------------------------------------------------------------------------------


def _cursor(api: Api, query: str, order: str = "") -> str:
    data = api.ok(f"{{ {query}(first: 1{order}) {{ pageInfo {{ endCursor }} }} }}")
    return data[query]["pageInfo"]["endCursor"]


@pytest.fixture
def some_items(api: Api) -> None:
    data = {
        "devices": [
            {"hostname": f"gpu-{i:02d}", "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * i}
            for i in range(1, 4)
        ],
        "switches": [{"name": "leaf-1"}, {"name": "leaf-2"}],
    }
    api.ok("mutation($d: String!) { importInventory(data: $d) { created } }", d=json.dumps(data))


@pytest.mark.parametrize(
    "cursor",
    [
        "zzz",
        "W10",
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        "%%%",
    ],
)
def test_a_cursor_the_api_did_not_issue_is_bad_input(
    api: Api, some_items: None, cursor: str
) -> None:
    error = graphql_error(
        api,
        "query($a: String) { devices(first: 2, after: $a) "
        "{ totalCount edges { node { hostname } } } }",
        {"a": cursor},
    )
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "after"}
    assert error["message"] == f"after: {cursor!r} is not a cursor this API issued"


@pytest.mark.parametrize(
    ("issued_by", "used_with"),
    [
        ("devices", "orderBy: {field: FREE_GPUS}"),
        ("devices", "orderBy: {field: CREATED_AT}"),
        ("switches", ""),
    ],
)
def test_a_cursor_from_another_ordering_or_list_is_bad_input(
    api: Api, some_items: None, issued_by: str, used_with: str
) -> None:
    cursor = _cursor(api, issued_by)
    order = f", {used_with}" if used_with else ""
    error = graphql_error(
        api,
        f"query($a: String) {{ devices(first: 2, after: $a{order}) "
        "{ edges { node { hostname } } } }",
        {"a": cursor},
    )
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "after"}
    assert error["message"].startswith(f"after: {cursor!r} ")


def test_a_tampered_cursor_is_bad_input(api: Api, some_items: None) -> None:
    cursor = _cursor(api, "devices", ", orderBy: {field: FREE_GPUS}")
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    tampered = [("x" if isinstance(v, int) else v) for v in raw]
    assert tampered != raw
    forged = base64.urlsafe_b64encode(json.dumps(tampered).encode()).decode()
    error = graphql_error(
        api,
        "query($a: String) { devices(first: 2, after: $a, orderBy: "
        "{field: FREE_GPUS}) { totalCount } }",
        {"a": forged},
    )
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "after"}


# --- never a 5xx, never a traceback ---------------------------------------------------------

NASTY = [
    ('{ node(id: "' + "x" * 5000 + '") { id } }', {}),
    ('{ devices(filter: {tags: [{key: "a.b\\"c\'d", value: "x"}]}) { totalCount } }', {}),
    ('{ devices(filter: {tags: [{key: "$[0]", value: "x"}]}) { totalCount } }', {}),
    ('{ devices(filter: {hostnamePrefix: "%_\\\\"}) { totalCount } }', {}),
    ('{ devices(filter: {gpuVendor: "", gpuModel: "   "}) { totalCount } }', {}),
    ("{ devices(filter: {site: []}) { totalCount } }", {}),
    ('mutation { createDevice(input: {hostname: "   "}) { id } }', {}),
    ('mutation { createDevice(input: {hostname: "a\\u0000b"}) { id } }', {}),
    ('mutation { createDevice(input: {hostname: "x", tags: {a: {b: 1}}}) { id } }', {}),
    ('mutation { createDevice(input: {hostname: "x", totalCpu: 2147483647}) { id } }', {}),
    ('mutation { createTenant(slug: "' + "a" * 300 + '") { slug } }', {}),
    (
        'mutation { importInventory(format: CSV, data: "hostname\\n\\"unterminated") { created } }',
        {},
    ),
    (
        'mutation { importInventory(data: "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]'
        ']]]]]]]]]]]]]]]]]]]]]]]]]") { created } }',
        {},
    ),
    (
        "mutation($d: String!) { importInventory(data: $d) { created } }",
        {"d": json.dumps({"devices": [{"hostname": "x", "gpus": [None, 5, "x"]}]})},
    ),
    (
        "mutation($d: String!) { importInventory(data: $d) { created } }",
        {"d": json.dumps({"devices": [{"hostname": "x", "totalmemoryMB": 1e300}]})},
    ),
    ("query($s: [Status!]) { devices(filter: {status: $s}) { totalCount } }", {"s": ["nope"]}),
    ("query { __typename }", {"unused": object.__name__}),
]


@pytest.mark.parametrize(("query", "variables"), NASTY)
def test_hostile_requests_get_a_clean_answer(
    api: Api, query: str, variables: dict[str, Any]
) -> None:
    response = api.post(query, variables)
    assert_clean(response)
    assert response.status_code == 200
    body = response.json()
    codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    assert codes <= {"BAD_INPUT", "NOT_FOUND", "GRAPHQL_VALIDATION_FAILED"}, body


def test_graphql_errors_come_with_http_200_and_a_request_id(api: Api) -> None:
    response = api.post("{ nope }", headers={"X-Request-Id": "req-42"})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "req-42"
    generated = api.post("{ nope }").headers["X-Request-Id"]
    assert len(generated) == 32


def test_a_failing_field_does_not_hide_the_others(api: Api) -> None:
    body = api.run('{ me { role } node(id: "nope") { id } }')
    assert body["data"] == {"me": {"role": "platform-admin"}, "node": None}
    assert body["errors"][0]["path"] == ["node"]
    assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND"}
