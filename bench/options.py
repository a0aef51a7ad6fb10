"""Command-line pieces several benchmarks share: fleet sizes, the database backends, the
import batch size and the PostgreSQL admin URL (and whether it answers before anything
is measured).

Here once so that ``--sizes``, ``--backend``, ``--batch-size`` and ``--postgres-url`` take
the same values and fail the same way in every benchmark that has them.
"""

from __future__ import annotations

import argparse

import psycopg

from bench.report import progress
from bench.service import DEFAULT_POSTGRES

BACKENDS = ["sqlite", "postgresql"]


def sizes(text: str) -> list[int]:
    """``--sizes``: positive whole numbers separated by commas."""
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("positive whole numbers separated by commas")
    return values


def backends(choice: str) -> list[str]:
    """``--backend sqlite|postgresql|both``: the backends to run, in that order."""
    return list(BACKENDS) if choice == "both" else [choice]


def add_backend(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both", help=help)


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=int,
        default=5000,
        help="devices per importInventory request (default: %(default)s)",
    )


def add_postgres_url(parser: argparse.ArgumentParser, prefix: str) -> None:
    """``--postgres-url``: where each run creates and drops its database ``prefix_*``."""
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        help=f"admin URL for CREATE/DROP DATABASE {prefix}_* (default: "
        "$GPUINV_BENCH_POSTGRES_URL or %(default)s)",
    )


def postgres_reachable(postgres_url: str) -> bool:
    """Whether PostgreSQL answers within 5 s; says why not on stderr (checked before any
    figure is taken, so a run does not stop half-way: the benchmark exits with 2)."""
    try:
        psycopg.connect(postgres_url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        progress(f"PostgreSQL is unreachable at {postgres_url}: {exc}")
        return False
    return True
