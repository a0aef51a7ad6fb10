"""Inventory benchmark: bulk-import throughput and device-list latency, end to end.

What is measured, and why
-------------------------
The service runs as a real, separate process (``gpuinv serve``, one uvicorn worker) on a
fresh database and is driven only over HTTP, as the portal and the sync worker drive it.
For each backend (SQLite, PostgreSQL) and each fleet size (by default 1k, 10k, 100k
devices) the benchmark reports:

1. ``importInventory`` throughput. Realistic device documents (GPU servers of several
   vendors and models, as in api/demo.py: 8 GPUs each or 4 for L40S, gputype/location/tier
   tags, five sites, tenants, up to four InfiniBand ports) are sent 5,000 per request.
   Devices per second = fleet size / wall time of all batches. Request bodies are encoded
   before the clock starts, so client-side JSON work is not counted. Then the same
   batches again: a re-import in which every device is unchanged, the everyday case of
   a periodic sync.
2. Device-list latency: p50/p95/p99 over N requests, after a warm-up, on one keep-alive
   connection, for three query shapes: a filtered first page (status, GPU vendor, site),
   the same filter on a page from the middle of the filtered list (cursor), and an
   unfiltered first page. Pages are keyset-paginated, so these should stay flat as the
   fleet grows; the table puts the sizes side by side to show whether they do. A query
   shape that is very slow gets a time budget (``--budget``) instead of N requests; the
   table then says how many requests it measured (``n=``).

The database is measured as the service's own import left it (planner statistics
included: a fresh PostgreSQL table has none until ANALYZE). ``--analyze`` adds an
ANALYZE after the imports, as autovacuum would soon after a bulk load on a production
server (the report says whether autovacuum is on for the server at hand).

Nothing here asserts on timing: the figures are printed for a human to judge. Wrong
import counts or GraphQL errors are reported as problems, since they make figures void.

Run ``python -m bench.inventory --help`` for the options; ``--quick`` is a 1k smoke run.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api import __version__
from api.demo import SHAPES, SITES, TENANTS, server_document
from bench.service import (
    BenchError,
    cli,
    code_version,
    fresh_database,
    running_service,
)

DEFAULT_POSTGRES = os.environ.get(
    "GPUINV_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SLOW_REQUEST = 10.0  # seconds; a page request slower than this is logged as it happens
MAX_PAGE = 500  # the service's default GPUINV_MAX_PAGE_SIZE; used to walk to a deep cursor

FILTER_SITE, FILTER_VENDOR = "blr-1", "NVIDIA"
PAGE_FIELDS = (
    "edges { node { id hostname freeGpus gpus { modelNo } } } pageInfo { endCursor hasNextPage }"
)
FILTERED_QUERY = (
    "query($first: Int!, $after: String) { devices(first: $first, after: $after, "
    f'filter: {{status: [AVAILABLE], gpuVendor: "{FILTER_VENDOR}", site: ["{FILTER_SITE}"]}}) '
    f"{{ {PAGE_FIELDS} }} }}"
)
UNFILTERED_QUERY = f"query {{ devices(first: 50) {{ {PAGE_FIELDS} }} }}"
IMPORT_MUTATION = (
    "mutation($d: String!) { importInventory(format: JSON, data: $d) "
    "{ created updated unchanged } }"
)
PROBLEMS: list[str] = []  # wrong counts, errors, budgets run out: printed with the tables
LOAD_AT_START = os.getloadavg()[0]
SHAPE_NAMES = {
    "filtered": "filtered first page",
    "deep": "filtered, deep cursor",
    "unfiltered": "unfiltered first page",
}


# --- the fleet -------------------------------------------------------------------------


def generate_devices(count: int, seed: int = 42) -> list[dict[str, Any]]:
    """``count`` device documents: demo shapes and sites, unique hostnames and serials."""
    rng = random.Random(seed)
    weights = [shape[-1] for shape in SHAPES]
    per_site: dict[str, int] = {}
    devices = []
    for serial in range(count):
        shape = rng.choices(SHAPES, weights)[0]
        site, region, halls = rng.choice(SITES)
        per_site[site] = per_site.get(site, 0) + 1
        devices.append(device_document(rng, shape, site, region, halls, per_site[site], serial))
    return devices


def device_document(
    rng: random.Random,
    shape: tuple[Any, ...],
    site: str,
    region: str,
    halls: list[str],
    number: int,
    serial: int,
) -> dict[str, Any]:
    document = server_document(
        rng,
        shape,
        site,
        region,
        halls,
        number,
        f"{site}-gpu-{number:06d}",
        f"SN{1_000_000 + serial}",
    )
    tenant = rng.choice([slug for slug, _ in TENANTS] + [None])
    if tenant:
        document["tenant"] = tenant
    return document


def matches_filter(document: dict[str, Any]) -> bool:
    """What FILTERED_QUERY should select, computed locally to know the list's length."""
    return (
        document["status"] == "available"
        and document["site"] == FILTER_SITE
        and any(g["vendorCode"] == FILTER_VENDOR for g in document["gpus"])
    )


def request_body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"query": query, "variables": variables or {}}).encode()


def import_bodies(devices: list[dict[str, Any]], batch_size: int) -> list[bytes]:
    return [
        request_body(IMPORT_MUTATION, {"d": json.dumps({"devices": devices[i : i + batch_size]})})
        for i in range(0, len(devices), batch_size)
    ]


@dataclass
class Fleet:
    """One fleet size, ready to send: encoded import requests, and the filter's hit count.

    The device dicts themselves are not kept: millions of small objects in the client
    would make its own garbage collector part of the measured latency.
    """

    size: int
    bodies: list[bytes]
    matching: int


def prepare_fleet(size: int, batch_size: int) -> Fleet:
    devices = generate_devices(size)
    return Fleet(size, import_bodies(devices, batch_size), sum(map(matches_filter, devices)))


# --- the database and the service ------------------------------------------------------


# --- the client ------------------------------------------------------------------------


class GraphQLClient:
    """One keep-alive HTTP connection to /graphql with a bearer token."""

    def __init__(self, base_url: str, token: str):
        self.http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(1800.0),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self.http.close()

    def timed(self, body: bytes) -> tuple[float, dict[str, Any]]:
        """Seconds for one request (sent to fully read), and its checked ``data``."""
        started = time.perf_counter()
        response = self.http.post("/graphql", content=body)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise BenchError(f"HTTP {response.status_code}: {response.text[:2000]}")
        payload = response.json()
        if payload.get("errors"):
            raise BenchError(f"GraphQL errors: {json.dumps(payload['errors'])[:2000]}")
        return elapsed, payload["data"]


# --- measurements ----------------------------------------------------------------------


@dataclass
class ImportRun:
    seconds: float
    batch_seconds: list[float]
    counts: dict[str, int]

    def rate(self, devices: int) -> float:
        return devices / self.seconds


@dataclass
class Latency:
    """Milliseconds at the 50th, 95th and 99th percentile (nearest rank)."""

    p50: float
    p95: float
    p99: float
    n: int

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ordered = sorted(seconds)

        def rank(p: float) -> float:
            return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

        return cls(rank(50), rank(95), rank(99), len(ordered))

    def __str__(self) -> str:
        return f"{self.p50:.1f} / {self.p95:.1f} / {self.p99:.1f}"


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


def run_import(client: GraphQLClient, bodies: list[bytes]) -> ImportRun:
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    batch_seconds = []
    started = time.perf_counter()
    for body in bodies:
        seconds, data = client.timed(body)
        batch_seconds.append(seconds)
        for key in counts:
            counts[key] += data["importInventory"][key]
    return ImportRun(time.perf_counter() - started, batch_seconds, counts)


def measure_latency(
    client: GraphQLClient, body: bytes, warmup: int, requests: int, budget: float
) -> Latency:
    """``warmup`` then ``requests`` requests, or fewer within ``budget`` s: warm-up gets a
    tenth of it, and at least one request is always timed."""
    started = time.perf_counter()
    for _ in range(warmup):
        if time.perf_counter() > started + budget / 10:
            break
        client.timed(body)
    samples: list[float] = []
    while not samples or (len(samples) < requests and time.perf_counter() < started + budget):
        seconds = client.timed(body)[0]
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
            request_body(FILTERED_QUERY, {"first": min(MAX_PAGE, depth - walked), "after": after})
        )
        page = data["devices"]
        walked += len(page["edges"])
        after = page["pageInfo"]["endCursor"] or after
        if not page["pageInfo"]["hasNextPage"]:
            break
    return after, walked


# --- one backend at one size -----------------------------------------------------------


def run_size(backend: str, fleet: Fleet, args: argparse.Namespace) -> SizeResult:
    with tempfile.TemporaryDirectory(prefix="gpuinv-bench-") as tmp:
        workdir = Path(tmp)
        code = code_version()
        with (
            fresh_database(backend, args.postgres_url, workdir, "bench") as url,
            running_service(url, workdir) as service,
        ):
            for slug, name in TENANTS:
                cli(url, "tenant", "create", slug, "--name", name)
            token = cli(url, "token", "create", "--role", "platform-admin", "--name", "bench")
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
        problem = (
            f"{label} the walk to a deep cursor ran out of its {args.budget:.0f} s "
            f"budget at row {result.deep_offset:,} of {result.matching // 2:,}"
        )
        PROBLEMS.append(problem)
        progress(f"PROBLEM: {problem}")
    shapes = {
        "filtered": request_body(FILTERED_QUERY, {"first": 50}),
        "deep": request_body(FILTERED_QUERY, {"first": 50, "after": cursor}),
        "unfiltered": request_body(UNFILTERED_QUERY),
    }
    for shape, body in shapes.items():
        result.latency[shape] = measure_latency(
            client, body, args.warmup, args.requests, args.budget
        )
        progress(
            f"{label} {SHAPE_NAMES[shape]}: p50/p95/p99 {result.latency[shape]} ms "
            f"(n={result.latency[shape].n})"
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
        problem = f"{label} expected {size} {expected}, the service said {run.counts}"
        PROBLEMS.append(problem)
        progress(f"PROBLEM: {problem}")


def fmt_seconds(values: list[float]) -> str:
    shown = ", ".join(f"{v:.1f}" for v in values[:25])
    return f"[{shown}{', ...' if len(values) > 25 else ''}] s"


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --- the report ------------------------------------------------------------------------


def machine_description(backends: list[str], postgres_url: str) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"Service: gpu-inventory {__version__}, `gpuinv serve` (1 uvicorn worker) on "
        "127.0.0.1, client on the same machine",
    ]
    if "sqlite" in backends:
        lines.append(f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL), temp file")
    if "postgresql" in backends:
        with psycopg.connect(postgres_url) as connection:
            version, autovacuum = (
                connection.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "autovacuum")
            )
        lines.append(
            f"PostgreSQL {version} on 127.0.0.1, a fresh database per run, autovacuum {autovacuum}"
        )
    return lines


def report(results: list[SizeResult], args: argparse.Namespace, backends: list[str]) -> str:
    out = [
        "",
        "gpu-inventory benchmark (bench/inventory.py)",
        *machine_description(backends, args.postgres_url),
        "",
        f"Import: importInventory(format: JSON), {args.batch_size:,} devices per request, "
        "devices/s over the wall time of all batches (seconds in brackets); re-import = "
        "the same data again, all unchanged.",
        f"Latency: p50 / p95 / p99 ms over {args.requests} requests after {args.warmup} "
        "warm-up, one keep-alive connection, 50 devices per page with id hostname freeGpus "
        "gpus{modelNo}.",
        f"  filtered = status AVAILABLE, gpuVendor {FILTER_VENDOR}, site {FILTER_SITE}; "
        "deep = the same filter after a cursor half-way down its list; unfiltered = "
        "first page, no filter. code = the commit `gpuinv serve` ran from (+dirty: "
        "uncommitted changes in api/).",
        "Planner statistics: "
        + (
            "the benchmark runs ANALYZE after the imports."
            if args.analyze
            else "the benchmark runs no ANALYZE of its own (the service may; see --analyze)."
        ),
        f"Load average (1 min) at start {LOAD_AT_START:.2f}, at end {os.getloadavg()[0]:.2f} "
        "(anything else running on the machine skews the figures).",
    ]
    for backend in backends:
        rows = [r for r in results if r.backend == backend]
        if rows:
            out += ["", f"Backend: {backend}", *table(rows, args.requests)]
    if PROBLEMS:
        out += ["", "Problems:", *(f"  - {p}" for p in PROBLEMS)]
    return "\n".join(out)


def table(rows: list[SizeResult], requests: int) -> list[str]:
    header = [
        "devices",
        "import dev/s",
        "re-import dev/s",
        *(f"{name} ms" for name in SHAPE_NAMES.values()),
        "deep at row",
        "code",
    ]
    cells = [
        [
            f"{r.size:,}",
            f"{r.imported.rate(r.size):,.0f} ({r.imported.seconds:.1f} s)",
            f"{r.reimported.rate(r.size):,.0f} ({r.reimported.seconds:.1f} s)",
            *(latency_cell(r.latency[shape], requests) for shape in SHAPE_NAMES),
            f"{r.deep_offset:,} of {r.matching:,}",
            r.code,
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(header), rule, *(line(c) for c in cells)]


def latency_cell(latency: Latency, requests: int) -> str:
    return str(latency) + (f" (n={latency.n})" if latency.n < requests else "")


# --- command line ----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inventory",
        description="Import throughput and device-list latency of a real `gpuinv serve` "
        "process, per backend and fleet size. Prints figures; asserts nothing "
        "about timing.",
    )
    parser.add_argument(
        "--sizes",
        default="1000,10000,100000",
        help="fleet sizes in devices, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="database backend(s) (default: %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1,000 devices only (overrides --sizes)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=5000,
        help="devices per importInventory request (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=300,
        help="timed requests per query shape (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=30,
        help="untimed requests per query shape first (default: %(default)s)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="seconds at most per query shape (warm-up and requests) and "
        "for the walk to the deep cursor; a slow shape is then "
        "measured on fewer requests (default: %(default)s)",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE after the imports, before the latency queries",
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        help="admin URL for CREATE/DROP DATABASE bench_* (default: "
        "$GPUINV_BENCH_POSTGRES_URL or %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    except ValueError:
        parser.error(f"--sizes: whole numbers separated by commas, got {args.sizes!r}")
    if (
        not args.sizes
        or min(args.sizes) < 1
        or args.batch_size < 1
        or args.requests < 1
        or args.warmup < 0
        or args.budget <= 0
    ):
        parser.error("sizes, --batch-size, --requests and --budget must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    # SIGTERM unwinds like Ctrl-C, so servers stop and databases are dropped either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results: list[SizeResult] = []
    if "postgresql" in backends:
        try:
            psycopg.connect(args.postgres_url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            progress(f"PostgreSQL is unreachable at {args.postgres_url}: {exc}")
            return 2
    try:
        for size in args.sizes:
            fleet = prepare_fleet(size, args.batch_size)
            gc.collect()
            progress(
                f"generated {size:,} devices, {sum(map(len, fleet.bodies)) / 1e6:.1f} MB in "
                f"{len(fleet.bodies)} request(s)"
            )
            for backend in backends:
                results.append(run_size(backend, fleet, args))
    except BenchError as exc:
        progress(f"FAILED: {exc}")
        PROBLEMS.append(str(exc))
        print(report(results, args, backends))
        return 1
    except KeyboardInterrupt:
        progress("interrupted; cleaned up; the figures so far:")
        print(report(results, args, backends))
        return 130
    print(report(results, args, backends))
    return 0


if __name__ == "__main__":
    sys.exit(main())
