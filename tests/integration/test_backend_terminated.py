"""PostgreSQL backends killed under the service (``pg_terminate_backend``, as a failover or
an operator would): every answer is still JSON with a code, never a 5xx, and a claim whose
answer was lost to the outage is settled by retrying it.

The server is a real uvicorn on a database of its own (terminating backends would break
the shared test engine's pooled connections).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from api.db.session import make_engine, session_factory, upgrade_to_head
from api.settings import Settings
from tests.support.api import make_token
from tests.support.database import fresh_postgres_database
from tests.support.server import ServerThread

TERMINATE = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()"""

MATCH = """mutation($input: MatchDeviceInput!) {
  matchDevice(input: $input) { allocation { id environment } } }"""
RELEASE = "mutation($env: String!) { releaseAllocation(environment: $env) { id } }"
READ = "{ me { role } devices(first: 5) { totalCount edges { node { hostname } } } }"
CONFIG = json.dumps([{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}])
# What an outage may answer: the retry signals, and NO_MATCH when the fleet is full.
RETRYABLE = {"UNAVAILABLE", "CONCURRENT_UPDATE"}


class Database:
    def __init__(self, url: str):
        self.url = url

    def terminate_backends(self) -> int:
        """Kill every backend of the service's database but this one."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            row = connection.execute(TERMINATE).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServerThread, Database, str]]:
    url, drop = fresh_postgres_database("gpuinv_terminated")
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        token = make_token(session_factory(engine), "platform-admin")
        with ServerThread(Settings(database_url=url, lease_sweep_seconds=3600)) as server:
            devices = [
                {"hostname": f"gpu-{n:02d}", "totalcpu": 64, "totalmemoryMB": 524288,
                 "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8}
                for n in range(12)
            ]  # fmt: skip
            imported = _post(
                httpx.Client(base_url=server.url, timeout=60),
                token,
                "mutation($d: String!) { importInventory(data: $d) { created } }",
                {"d": json.dumps({"devices": devices})},
            )
            assert imported["data"]["importInventory"]["created"] == 12, imported
            # No reset of the match index here: it was loaded empty at start-up, and a
            # catch-up that an outage cuts short must leave it to a full load next time.
            yield server, Database(url), token
    finally:
        engine.dispose()
        drop()


def _post(client: httpx.Client, token: str, query: str, variables: dict[str, Any]) -> Any:
    response = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code < 500, f"HTTP {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "INTERNAL_SERVER_ERROR" not in response.text, response.text
    return response.json()


def _code(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else "OK"


def _match(client: httpx.Client, token: str, environment: str) -> dict[str, Any]:
    given = {
        "environment": environment,
        "labels": {
            "paas.envmgmt.io/inventory": "baremetal",
            "paas.envmgmt.io/inventory.config": CONFIG,
        },
        "variables": {"gpu": 8},
    }
    return _post(client, token, MATCH, {"input": given})


def test_the_first_requests_after_the_backends_are_killed_are_answered(
    served: tuple[ServerThread, Database, str],
) -> None:
    """Killed between requests: the pooled connections are dead, and the next token lookup
    meets one (it was a 500 before it retried)."""
    server, database, token = served
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(5):
            assert _code(_post(client, token, READ, {})) == "OK"
            assert database.terminate_backends() >= 1  # the server's pooled connections
            # the token lookup retries once, on a fresh connection, and so the request works
            body = _post(client, token, READ, {})
            assert _code(body) == "OK", body


def test_no_5xx_while_backends_are_killed_under_load(
    served: tuple[ServerThread, Database, str],
) -> None:
    server, database, token = served
    stop = threading.Event()
    codes: Counter[str] = Counter()
    unsettled: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client_loop(number: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            round_ = 0
            while not stop.is_set():
                round_ += 1
                environment = f"env-{number}-{round_}"
                try:
                    read = _code(_post(client, token, READ, {}))
                    claim = _code(_match(client, token, environment))
                    released = _code(_post(client, token, RELEASE, {"env": environment}))
                except AssertionError as failure:  # a 5xx, a non-JSON or an uncoded answer
                    with lock:
                        failures.append(str(failure))
                    return
                with lock:
                    codes.update([f"read {read}", f"match {claim}", f"release {released}"])
                    if claim in RETRYABLE or released in RETRYABLE:
                        unsettled.append(environment)

    def killer() -> None:
        while not stop.is_set():
            time.sleep(0.15)
            with lock:
                codes["backends killed"] += database.terminate_backends()

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(6)]
    threads.append(threading.Thread(target=killer))
    for thread in threads:
        thread.start()
    time.sleep(6)
    stop.set()
    for thread in threads:
        thread.join(timeout=90)
    print(f"\n{dict(sorted(codes.items()))}; {len(unsettled)} claims to settle by a retry")
    assert not failures, failures[:3]
    assert codes["backends killed"] > 0
    allowed = {"OK", "NO_MATCH", "NOT_FOUND"} | RETRYABLE
    seen = {key.split(" ", 1)[1] for key in codes if key != "backends killed"}
    assert seen <= allowed, codes

    # The outage is over: a retry of every unsettled claim, with its environment, tells the
    # client where it stands, and a release then frees what it holds.
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for environment in unsettled:
            assert _code(_match(client, token, environment)) in {"OK", "NO_MATCH"}
            assert _code(_post(client, token, RELEASE, {"env": environment})) in {
                "OK",
                "NOT_FOUND",
            }
        body = _post(client, token, "{ allocationTotals { allocations } }", {})
        assert sum(t["allocations"] for t in body["data"]["allocationTotals"]) == 0, body
