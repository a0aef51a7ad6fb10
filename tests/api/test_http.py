"""The HTTP surface: GraphiQL, CORS, health, request ids, and a flat query count per page."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy import Engine, event

from tests.support.api import Api

PAGE = """query($first: Int!) { devices(first: $first) { edges { node {
  hostname gpus { modelNo } infiniband { name } tenant project document } } } }"""


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def _fleet(size: int) -> str:
    return json.dumps(
        {
            "devices": [
                {
                    "hostname": f"gpu-{n:03d}",
                    "tenant": None,
                    "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
                    "infiniband": [
                        {"name": "ib0", "rateGbps": 400},
                        {"name": "ib1", "rateGbps": 400},
                    ],
                }
                for n in range(size)
            ]
        }
    )


def test_a_page_costs_the_same_number_of_queries_for_5_or_50_devices(api: Api) -> None:
    api.ok("mutation($d: String!) { importInventory(data: $d) { created } }", d=_fleet(60))
    with counted_statements() as small:
        assert len(api.ok(PAGE, first=5)["devices"]["edges"]) == 5
    with counted_statements() as large:
        assert len(api.ok(PAGE, first=50)["devices"]["edges"]) == 50
    assert len(large) == len(small), (small, large)
    assert len(large) <= 8, large


def test_graphiql_is_served_to_browsers(server, db) -> None:
    page = httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


def test_cors_allows_configured_portal_origins_only(server, db) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = httpx.options(
        f"{server.url}/graphql", headers={"Origin": "https://portal.example"} | preflight
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://portal.example"
    refused = httpx.options(
        f"{server.url}/graphql", headers={"Origin": "https://evil.example"} | preflight
    )
    assert "access-control-allow-origin" not in refused.headers


def test_health_readiness_and_request_id(api: Api) -> None:
    assert httpx.get(f"{api.url}/healthz").text == "ok"
    assert httpx.get(f"{api.url}/readyz").json() == {
        "ready": True,
        "database": "ok",
        "migrations": "at head",
    }
    response = api.post("{ me { role } }", headers={"X-Request-Id": "req-123"})
    assert response.headers["x-request-id"] == "req-123"
    assert response.json()["data"]["me"]["role"] == "platform-admin"


def test_an_oversized_body_is_refused_before_it_is_read(api: Api) -> None:
    # A raw socket: HTTP clients refuse to announce a body they do not send.
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 1000000000000\r\n\r\n{"
        )
        reply = conn.recv(65536).decode()
    status_line, _, rest = reply.partition("\r\n")
    assert " 413 " in status_line
    assert '"code":"BAD_INPUT"' in rest.replace(" ", "")
