"""Hostile requests at the HTTP layer (issue 12): each is answered with JSON and a stable
``extensions.code``, never a 5xx or a traceback, changes nothing, and the keep-alive
connection it came on serves the next request.

Every request here is sent through one ``httpx.Client`` to the real uvicorn server, and the
test checks that the follow-up request travelled on the same TCP connection (same client
port): a 500 from uvicorn closes the connection, which is how the reset was first seen.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from graphql import GraphQLError
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import token as token_db
from api.db.base import utcnow
from api.db.models import ApiTokenRow
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.graphql.schema import build_schema
from api.settings import Settings
from tests.support.api import Api, make_token
from tests.support.server import ServerThread

HELLO = {"query": "{ __typename }"}
JSON = {"Content-Type": "application/json"}


def _port(response: httpx.Response) -> int:
    """The client-side port of the connection a response came on."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def _refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "Traceback" not in response.text and "INTERNAL_SERVER_ERROR" not in response.text
    body = response.json()
    assert body["data"] is None, body
    error = body["errors"][0]
    assert error["extensions"]["code"] == code, body
    return error


def _still_serving(client: httpx.Client, url: str, refused: httpx.Response) -> None:
    """The next request on the same keep-alive connection is answered normally."""
    assert refused.headers.get("connection", "").lower() != "close", refused.headers
    follow = client.post(f"{url}/graphql", json=HELLO)
    assert follow.json() == {"data": {"__typename": "Query"}}
    assert _port(follow) == _port(refused), "the server closed the keep-alive connection"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as opened:
        yield opened


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with_variables(raw_variables: str) -> bytes:
    return (
        '{"query": "query($v: [String]) { __typename }", "variables": {"v": ' + raw_variables + "}}"
    ).encode()


# --- bodies that are not a GraphQL request --------------------------------------------------

BAD_BODIES = [
    # (id, body, status, code, words the message must contain)
    ("invalid-utf8", b'{"query": "{ __typename }\xff"}', 400, "GRAPHQL_PARSE_FAILED", "UTF-8"),
    ("json-null", b"null", 400, "GRAPHQL_PARSE_FAILED", "JSON object"),
    ("json-number", b"42", 400, "GRAPHQL_PARSE_FAILED", "JSON object"),
    ("json-true", b"true", 400, "GRAPHQL_PARSE_FAILED", "JSON object"),
    ("json-string", b'"{ __typename }"', 400, "GRAPHQL_PARSE_FAILED", "JSON object"),
    ("nested-5000", _nested(5000).encode(), 400, "BAD_INPUT", "nested"),
    ("variables-nested-5000", _with_variables(_nested(5000)), 400, "BAD_INPUT", "nested"),
    ("variables-nested-100", _with_variables(_nested(100)), 400, "BAD_INPUT", "variables.v"),
    ("int-5000-digits", _with_variables("9" * 5000), 400, "BAD_INPUT", "4300 digits"),
    ("body-int-5000-digits", b"9" * 5000, 400, "BAD_INPUT", "4300 digits"),
    ("nan", _with_variables("NaN"), 400, "GRAPHQL_PARSE_FAILED", "NaN"),
    ("infinite-float", _with_variables("1e999"), 400, "BAD_INPUT", "1e999"),
    ("operation-name-number", b'{"query": "{ __typename }", "operationName": 5}', 400,
     "GRAPHQL_PARSE_FAILED", "operationName"),
]  # fmt: skip


@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "token"])
@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_a_body_that_is_not_a_graphql_request_is_a_coded_400_on_a_live_connection(
    api: Api,
    client: httpx.Client,
    with_token: bool,
    body: bytes,
    status: int,
    code: str,
    words: str,
) -> None:
    headers = JSON | ({"Authorization": f"Bearer {api.token}"} if with_token else {})
    response = client.post(f"{api.url}/graphql", content=body, headers=headers)
    error = _refused(response, status, code)
    assert words in error["message"], error
    _still_serving(client, api.url, response)


@pytest.mark.parametrize(
    ("variables", "code", "words"),
    [
        ("9" * 5000, "BAD_INPUT", "4300 digits"),
        (_nested(5000), "BAD_INPUT", "nested"),
        ('{"v": "\\ud800"}', "BAD_INPUT", "variables.v"),
        ("42", "GRAPHQL_PARSE_FAILED", "`variables` must be an object"),
        ("{not json", "GRAPHQL_PARSE_FAILED", "variables"),
    ],
    ids=["int-5000-digits", "nested-5000", "lone-surrogate", "not-an-object", "not-json"],
)
def test_the_get_query_string_is_checked_like_a_body(
    api: Api, client: httpx.Client, variables: str, code: str, words: str
) -> None:
    response = client.get(
        f"{api.url}/graphql",
        params={"query": "query($v: String) { __typename }", "variables": variables},
        headers={"Accept": "application/json"},
    )
    error = _refused(response, 400, code)
    assert words in error["message"], error
    _still_serving(client, api.url, response)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"query=%7B+__typename+%7D", "application/x-www-form-urlencoded"),
        (
            b'--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
            b'{"query": "{ __typename }"}\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
        (b"{ __typename }", "application/graphql"),
        (b"\xff\xfe", "text/plain; charset=utf-16"),
    ],
    ids=["form", "multipart", "graphql", "text"],
)
def test_other_content_types_are_a_coded_400_naming_the_type(
    api: Api, client: httpx.Client, content: bytes, content_type: str
) -> None:
    response = client.post(
        f"{api.url}/graphql", content=content, headers={"Content-Type": content_type}
    )
    error = _refused(response, 400, "GRAPHQL_PARSE_FAILED")
    assert error["message"].startswith("Unsupported content type"), error
    assert content_type.split(";")[0] in error["message"], error
    _still_serving(client, api.url, response)


# --- strings that are not Unicode -----------------------------------------------------------

DEVICES = "query($p: String) { devices(filter: {hostnamePrefix: $p}) { totalCount } }"
CREATE = "mutation($i: DeviceInput!) { createDevice(input: $i) { id } }"


def test_a_valid_surrogate_pair_reaches_the_resolver(api: Api) -> None:
    # "\ud83d\ude00" in JSON is one character, U+1F600: real Unicode, accepted
    assert api.ok(DEVICES, p="gpu-\U0001f600") == {"devices": {"totalCount": 0}}


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ('{"query": "' + CREATE + '", "variables": {"i": {"hostname": "x\\ud800"}}}',
         "variables.i.hostname"),
        ('{"query": "' + CREATE + '", "variables": {"i": {"hostname": "h", '
         '"tags": {"\\udc00": "v"}}}}', "variables.i.tags"),
        ('{"query": "' + DEVICES + '", "variables": {"p": "\\udfff"}}', "variables.p"),
        ('{"query": "mutation { createDevice(input: {hostname: \\"x\\ud800\\"}) { id } }"}',
         "query"),
        ('{"query": "query A { __typename }", "operationName": "A\\ud800"}', "operationName"),
        ('{"query": "{ __typename }", "extensions": {"trace": ["\\ud800"]}}',
         "extensions.trace[0]"),
    ],
    ids=["variable", "variable-key", "filter", "query-text", "operation-name", "extensions"],
)  # fmt: skip
def test_a_lone_surrogate_anywhere_is_bad_input_naming_where(
    api: Api, client: httpx.Client, raw: str, where: str
) -> None:
    response = client.post(
        f"{api.url}/graphql",
        content=raw.encode(),
        headers=JSON | {"Authorization": f"Bearer {api.token}"},
    )
    error = _refused(response, 400, "BAD_INPUT")
    assert error["message"].startswith(f"{where}: "), error
    assert "surrogate" in error["message"], error
    _still_serving(client, api.url, response)
    assert api.ok("{ devices { totalCount } }") == {"devices": {"totalCount": 0}}


def test_a_surrogate_escape_in_a_graphql_string_literal_is_parse_failed(api: Api) -> None:
    # graphql-core refuses \uD800 written as a GraphQL escape (not a JSON one) by itself
    error = api.error('mutation { createDevice(input: {hostname: "x\\uD800"}) { id } }')
    assert error["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}
    assert "Invalid Unicode escape sequence" in error["message"]
    assert api.ok("{ devices { totalCount } }") == {"devices": {"totalCount": 0}}


# --- which operation runs -------------------------------------------------------------------

TWO = """mutation First { createTenant(slug: "first") { slug } }
mutation Second { createTenant(slug: "second") { slug } }"""


def test_two_operations_without_an_operation_name_run_neither(api: Api) -> None:
    error = api.error(TWO)
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "'First'" in error["message"] and "'Second'" in error["message"]
    assert api.ok("{ tenants { slug } }") == {"tenants": []}


def test_an_operation_name_that_names_no_operation_is_validation_failed(api: Api) -> None:
    response = httpx.post(
        f"{api.url}/graphql",
        json={"query": TWO, "operationName": "Third"},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert response.status_code == 200, response.text
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "'Third'" in error["message"] and "'First'" in error["message"], error
    assert api.ok("{ tenants { slug } }") == {"tenants": []}


def test_the_named_operation_runs_alone(api: Api) -> None:
    response = httpx.post(
        f"{api.url}/graphql",
        json={"query": TWO, "operationName": "Second"},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert response.json() == {"data": {"createTenant": {"slug": "second"}}}
    assert api.ok("{ tenants { slug } }") == {"tenants": [{"slug": "second"}]}


# --- tokens ---------------------------------------------------------------------------------


def _token(db: sessionmaker[Session], name: str) -> tuple[str, str]:
    with unit_of_work(db) as session:
        token, secret = token_db.create_token(
            session, cli_principal(), "viewer", None, name, timedelta(hours=1)
        )
    return token.id, secret


def test_a_revoked_or_expired_token_is_named_by_category_only(
    api: Api, db: sessionmaker[Session]
) -> None:
    revoked_id, revoked = _token(db, "ci-runner-7")
    expired_id, expired = _token(db, "nightly-backup")
    with unit_of_work(db) as session:
        token_db.revoke_token(session, cli_principal(), revoked_id)
        when = utcnow() - timedelta(minutes=5)
        session.execute(
            update(ApiTokenRow).where(ApiTokenRow.id == expired_id).values(expires_at=when)
        )
    for secret, category, name, token_id in (
        (revoked, "bearer token revoked", "ci-runner-7", revoked_id),
        (expired, "bearer token expired", "nightly-backup", expired_id),
    ):
        error = api.as_(secret).refused_once_cache_ends("{ devices { totalCount } }")
        assert error["extensions"] == {"code": "UNAUTHENTICATED"}
        assert error["message"] == category
        for secret_detail in (name, token_id, str(utcnow().year), secret[-4:]):
            assert secret_detail not in str(error)


# --- what is logged -------------------------------------------------------------------------


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_variable_that_does_not_coerce_is_not_logged_as_an_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    error = api.error("query($n: Int!) { devices(first: $n) { totalCount } }", n="ten")
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    api.error(CREATE, i={"hostname": "x", "totalCpu": "many"})
    assert _errors_logged(caplog) == []


def test_a_client_that_leaves_mid_body_is_not_an_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"query": '
        )
    deadline = time.monotonic() + 10
    while "went away" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "went away" in caplog.text
    assert _errors_logged(caplog) == []
    deadline = time.monotonic() + 10
    while " 499 " not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "POST /graphql 499 " in caplog.text  # the access line: no answer, not a 500
    assert api.ok("{ __typename }") == {"__typename": "Query"}


def test_process_errors_logs_a_bug_with_its_traceback_and_a_refusal_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The schema's error hook on real graphql-core errors: one a resolver raised by
    mistake, one a variable's coercion refused (graphql-core wraps that in a GraphQLError)."""
    schema = build_schema()
    try:
        {}["a resolver's typo"]
    except KeyError as exc:
        bug = GraphQLError("KeyError", path=["devices"], original_error=exc)
    coercion = GraphQLError("Int cannot represent non-integer value: 'ten'")
    refusal = GraphQLError("Variable '$n' got invalid value 'ten'", original_error=coercion)
    caplog.set_level(logging.DEBUG)
    schema.process_errors([refusal])
    assert _errors_logged(caplog) == []
    schema.process_errors([bug])
    logged = _errors_logged(caplog)
    assert len(logged) == 1 and logged[0].exc_info and logged[0].exc_info[0] is KeyError


# --- body limits ----------------------------------------------------------------------------

SECRET = "hook-secret"


@pytest.fixture(scope="module")
def small_limit_server(database_url: str, engine: Engine) -> Iterator[ServerThread]:
    """A server with a 1 MiB body limit and NetBox webhooks switched on."""
    settings = Settings(
        database_url=database_url,
        max_body_bytes=1024 * 1024,
        netbox_webhook_secret=SECRET,
        lease_sweep_seconds=3600,
    )
    with ServerThread(settings) as running:
        yield running


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent with chunked transfer encoding (no Content-Length): ``total`` bytes of
    a JSON string that never ends."""
    yield b'{"query": "{ __typename }", "variables": {"padding": "'
    chunk = b"x" * size
    for _ in range(total // size):
        yield chunk


def _limit_refusal(response: httpx.Response, limit: int, setting: str) -> None:
    assert response.status_code == 413, response.text
    assert "chunked" in response.request.headers.get("transfer-encoding", "")
    error = _refused(response, 413, "BAD_INPUT")
    assert str(limit) in error["message"] and setting in error["message"], error


def test_a_chunked_body_without_a_token_stops_at_the_anonymous_limit(
    api: Api, client: httpx.Client
) -> None:
    response = client.post(f"{api.url}/graphql", content=_chunks(8 * 1024 * 1024), headers=JSON)
    _limit_refusal(response, 65536, "GPUINV_MAX_ANONYMOUS_BODY_BYTES")
    _still_serving(client, api.url, response)


def test_an_announced_body_without_a_token_is_refused_before_it_is_read(
    api: Api, client: httpx.Client
) -> None:
    response = client.post(f"{api.url}/graphql", content=b" " * 100_000, headers=JSON)
    assert response.status_code == 413, response.text
    assert "GPUINV_MAX_ANONYMOUS_BODY_BYTES" in _refused(response, 413, "BAD_INPUT")["message"]
    _still_serving(client, api.url, response)


def test_a_token_lifts_the_anonymous_limit(api: Api) -> None:
    response = api.post(DEVICES, {"p": "x" * (512 * 1024)})
    assert response.status_code == 200, response.text


def test_a_chunked_body_with_a_token_stops_at_the_body_limit(
    small_limit_server: ServerThread, db: sessionmaker[Session], client: httpx.Client
) -> None:
    url = small_limit_server.url
    headers = JSON | {"Authorization": f"Bearer {make_token(db, 'platform-admin')}"}
    response = client.post(f"{url}/graphql", content=_chunks(8 * 1024 * 1024), headers=headers)
    _limit_refusal(response, 1024 * 1024, "GPUINV_MAX_BODY_BYTES")
    _still_serving(client, url, response)


def test_the_netbox_webhook_keeps_a_body_limit(
    small_limit_server: ServerThread, client: httpx.Client
) -> None:
    url = small_limit_server.url
    response = client.post(f"{url}/hooks/netbox", content=_chunks(8 * 1024 * 1024))
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    _still_serving(client, url, response)
