"""The inventory benchmark's report: the machine and service, how the figures were
taken, a table per backend (a row per fleet size) and the problems.
"""

from __future__ import annotations

import argparse
import os
import sqlite3

import psycopg

from api import __version__
from bench.inventory.measure import SizeResult
from bench.inventory.workload import FILTER_SITE, FILTER_VENDOR, SHAPE_NAMES
from bench.report import PROBLEMS, machine_line, table
from bench.service import one_value
from bench.stats import Latency

LOAD_AT_START = os.getloadavg()[0]


def machine_description(backends: list[str], postgres_url: str) -> list[str]:
    lines = [
        machine_line(),
        f"Service: gpu-inventory {__version__}, `gpuinv serve` (1 uvicorn worker) on "
        "127.0.0.1, client on the same machine",
    ]
    if "sqlite" in backends:
        lines.append(f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL), temp file")
    if "postgresql" in backends:
        with psycopg.connect(postgres_url) as connection:
            version, autovacuum = (
                one_value(connection, f"SHOW {name}") for name in ("server_version", "autovacuum")
            )
        lines.append(
            f"PostgreSQL {version} on 127.0.0.1, a fresh database per run, autovacuum {autovacuum}"
        )
    return lines


def report(results: list[SizeResult], args: argparse.Namespace, backends: list[str]) -> str:
    out = [
        "",
        "gpu-inventory benchmark (bench/inventory/)",
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
            out += ["", f"Backend: {backend}", *size_table(rows, args.requests)]
    if PROBLEMS:
        out += ["", "Problems:", *(f"  - {p}" for p in PROBLEMS)]
    return "\n".join(out)


def size_table(rows: list[SizeResult], requests: int) -> list[str]:
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
    return table(header, cells)


def latency_cell(latency: Latency, requests: int) -> str:
    return latency.p50_p95_p99() + (f" (n={latency.n})" if latency.n < requests else "")
