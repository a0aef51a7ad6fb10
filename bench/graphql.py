"""The benchmarks' GraphQL client: request bodies, the httpx client, what an answer says,
the fleet's import and the warm-up of a multi-worker server.

Every benchmark drives the service over HTTP as its users do, and times a request from
send to answer fully read with the body encoded beforehand (client-side JSON is not the
service's cost). One client here, so that every figure is timed the same way;
bench/socket_client.py is a lighter client with the same ``send``/``close``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.report import problem
from bench.service import BenchError

IMPORT_MUTATION = (
    "mutation($d: String!) { importInventory(format: JSON, data: $d) "
    "{ created updated unchanged } }"
)
SAVE_PROFILE = "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { name } }"


def body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    """A /graphql request body, encoded once, before any clock starts."""
    return json.dumps({"query": query, "variables": variables or {}}).encode()


def import_bodies(documents: list[dict[str, Any]], batch_size: int) -> list[bytes]:
    """importInventory requests of ``batch_size`` devices each."""
    return [
        body(IMPORT_MUTATION, {"d": json.dumps({"devices": documents[i : i + batch_size]})})
        for i in range(0, len(documents), batch_size)
    ]


@dataclass
class Answer:
    seconds: float
    data: dict[str, Any] | None
    code: str | None  # None: ok; else the first error's extensions.code or "HTTP <status>"
    message: str = ""


def answer_of(seconds: float, status: int, content: bytes) -> Answer:
    """What an HTTP answer from /graphql says: its data, or its first error's code."""
    if status != 200:
        return Answer(seconds, None, f"HTTP {status}", content[:500].decode(errors="replace"))
    payload = json.loads(content)
    errors = payload.get("errors")
    if errors:
        code = (errors[0].get("extensions") or {}).get("code", "UNKNOWN")
        return Answer(seconds, payload.get("data"), code, errors[0].get("message", ""))
    return Answer(seconds, payload["data"], None)


class GraphQLClient:
    """One keep-alive HTTP connection to /graphql with a bearer token (``keep_alive``
    False: a new connection each request)."""

    def __init__(self, base_url: str, token: str, keep_alive: bool = True):
        limits = httpx.Limits(max_keepalive_connections=1 if keep_alive else 0)
        self.http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(1800.0),
            limits=limits,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self.http.close()

    def send(self, body: bytes) -> Answer:
        """One request, timed from send to the body fully read (encoding is done before)."""
        started = time.perf_counter()
        response = self.http.post("/graphql", content=body)
        seconds = time.perf_counter() - started
        return answer_of(seconds, response.status_code, response.content)

    def timed(self, body: bytes) -> tuple[float, dict[str, Any]]:
        """Seconds for one request (sent to fully read), and its ``data``; an error stops
        the run."""
        answer = self.send(body)
        if answer.code is not None or answer.data is None:
            raise BenchError(f"{answer.code}: {answer.message[:2000]}")
        return answer.seconds, answer.data

    def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        return self.timed(body(query, variables))[1]


@dataclass
class ImportRun:
    seconds: float  # all batches, first sent to last answered
    batch_seconds: list[float]
    counts: dict[str, int]  # created, updated, unchanged

    def rate(self, devices: int) -> float:
        return devices / self.seconds


def run_import(client: GraphQLClient, bodies: list[bytes]) -> ImportRun:
    """Send the import batches one after the other; their times and summed counts."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    batch_seconds = []
    started = time.perf_counter()
    for request in bodies:
        seconds, data = client.timed(request)
        batch_seconds.append(seconds)
        for key in counts:
            counts[key] += data["importInventory"][key]
    return ImportRun(time.perf_counter() - started, batch_seconds, counts)


def warm_workers(
    base_url: str, token: str, dry_run: Callable[[int], bytes], budget: float = 300.0
) -> int:
    """Dry runs on fresh connections (the kernel hands each to one of the workers) until
    ten in a row answer under a second: every worker has loaded and caught up its index.
    Returns how many were needed; ``dry_run(n)`` is the n-th request to send. Workers
    that never get fast are a problem (the figures would include their start-up)."""
    client = GraphQLClient(base_url, token, keep_alive=False)
    fast, sent, deadline = 0, 0, time.monotonic() + budget
    try:
        while fast < 10 and time.monotonic() < deadline:
            answer = client.send(dry_run(sent))
            sent += 1
            if answer.code not in (None, "NO_MATCH"):
                raise BenchError(f"warm-up dry run failed: {answer.code}: {answer.message}")
            fast = fast + 1 if answer.seconds < 1.0 else 0
    finally:
        client.close()
    if fast < 10:
        problem(f"the workers were still slow after {budget:.0f} s of warm-up dry runs")
    return sent
