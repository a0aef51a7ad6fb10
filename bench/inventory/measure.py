"""One backend at one fleet size: a fresh database and ``gpuinv serve``, the import and
the re-import timed, then each query shape's latency.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.graphql import GraphQLClient, ImportRun, body, run_import
from bench.inventory.workload import (
    FILTERED_QUERY,
    MAX_PAGE,
    SHAPE_NAMES,
    SLOW_REQUEST,
    UNFILTERED_QUERY,
    Fleet,
)
from bench.report import problem, progress
from bench.service import (
    admin_token,
    code_version,
    create_tenants,
    fresh_database,
    running_service,
)
from bench.stats import Latency


@dataclass
class SizeResult:
    backend: str
    size: int
    imported: ImportRun
    reimported: ImportRun
    latency: dict[str, Latency] = field(default_factory=dict)
    deep_offset: int = 0
    matching: int = 0
    code: str = "?"


def measure_latency(
    client: GraphQLClient, request: bytes, warmup: int, requests: int, budget: float
) -> Latency:
    """``warmup`` then ``requests`` requests, or fewer within ``budget`` s: warm-up gets a
    tenth of it, and at least one request is always timed."""
    started = time.perf_counter()
    for _ in range(warmup):
        if time.perf_counter() > started + budget / 10:
            break
        client.timed(request)
    samples: list[float] = []
    while not samples or (len(samples) < requests and time.perf_counter() < started + budget):
        seconds = client.timed(request)[0]
        samples.append(seconds)
        if seconds > SLOW_REQUEST:
            progress(f"slow request: {seconds:.1f} s (timed request {len(samples)})")
    return Latency.of(samples)


def deep_cursor(client: GraphQLClient, depth: int, budget: float) -> tuple[str | None, int]:
    """Walk the filtered list to about ``depth`` rows in (or as far as ``budget`` s allow);
    the cursor there and the rows walked."""
    deadline = time.perf_counter() + budget
    after: str | None = None
    walked = 0
    while walked < depth and time.perf_counter() < deadline:
        _, data = client.timed(
            body(FILTERED_QUERY, {"first": min(MAX_PAGE, depth - walked), "after": after})
        )
        page = data["devices"]
        walked += len(page["edges"])
        after = page["pageInfo"]["endCursor"] or after
        if not page["pageInfo"]["hasNextPage"]:
            break
    return after, walked


def run_size(backend: str, fleet: Fleet, args: argparse.Namespace) -> SizeResult:
    with tempfile.TemporaryDirectory(prefix="gpuinv-bench-") as tmp:
        workdir = Path(tmp)
        code = code_version()
        with (
            fresh_database(backend, args.postgres_url, workdir, "bench") as url,
            running_service(url, workdir) as service,
        ):
            create_tenants(url)
            token = admin_token(url, "bench")
            client = GraphQLClient(service.base_url, token)
            try:
                result = measure_size(client, url, backend, fleet, args)
                result.code = code
                return result
            finally:
                client.close()


def measure_size(
    client: GraphQLClient, url: str, backend: str, fleet: Fleet, args: argparse.Namespace
) -> SizeResult:
    size = fleet.size
    label = f"[{backend} {size:,}]"
    imported = run_import(client, fleet.bodies)
    progress(
        f"{label} import: {imported.seconds:.1f} s, {imported.rate(size):,.0f} devices/s, "
        f"batches {fmt_seconds(imported.batch_seconds)}, {imported.counts}"
    )
    check_counts(imported, "created", size, label)
    reimported = run_import(client, fleet.bodies)
    progress(
        f"{label} re-import: {reimported.seconds:.1f} s, "
        f"{reimported.rate(size):,.0f} devices/s, batches "
        f"{fmt_seconds(reimported.batch_seconds)}, {reimported.counts}"
    )
    check_counts(reimported, "unchanged", size, label)
    if args.analyze:
        progress(f"{label} ANALYZE: {analyze(url):.1f} s")
    result = SizeResult(backend, size, imported, reimported, matching=fleet.matching)
    cursor, result.deep_offset = deep_cursor(client, result.matching // 2, args.budget)
    if result.deep_offset < result.matching // 2:
        problem(
            f"{label} the walk to a deep cursor ran out of its {args.budget:.0f} s "
            f"budget at row {result.deep_offset:,} of {result.matching // 2:,}"
        )
    shapes = {
        "filtered": body(FILTERED_QUERY, {"first": 50}),
        "deep": body(FILTERED_QUERY, {"first": 50, "after": cursor}),
        "unfiltered": body(UNFILTERED_QUERY),
    }
    for shape, request in shapes.items():
        latency = measure_latency(client, request, args.warmup, args.requests, args.budget)
        result.latency[shape] = latency
        progress(
            f"{label} {SHAPE_NAMES[shape]}: p50/p95/p99 {latency.p50_p95_p99()} ms (n={latency.n})"
        )
    return result


def analyze(database_url: str) -> float:
    """ANALYZE the whole database (what autovacuum does after a bulk load); seconds taken."""
    started = time.perf_counter()
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            connection.execute("ANALYZE")
    else:
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("ANALYZE")
    return time.perf_counter() - started


def check_counts(run: ImportRun, expected: str, size: int, label: str) -> None:
    if run.counts[expected] != size:
        problem(f"{label} expected {size} {expected}, the service said {run.counts}")


def fmt_seconds(values: list[float]) -> str:
    shown = ", ".join(f"{v:.1f}" for v in values[:25])
    return f"[{shown}{', ...' if len(values) > 25 else ''}] s"
