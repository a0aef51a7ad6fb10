"""``python -m bench.matching``: the command line, and the parts run in order; what they
measure and why is in bench/matching/__init__.py."""

from __future__ import annotations

import argparse
import sys

from bench.matching.engine import engine_part
from bench.matching.http import http_part
from bench.matching.packing import packing_part
from bench.matching.report import look_around, report
from bench.matching.throughput import throughput_part
from bench.options import (
    add_backend,
    add_batch_size,
    add_postgres_url,
    backends,
    postgres_reachable,
    sizes,
)
from bench.report import finish, progress

PARTS = {
    "engine": engine_part,
    "http": http_part,
    "throughput": throughput_part,
    "packing": packing_part,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.matching",
        description="Matchmaking figures: the engine alone, matchDevice over HTTP, "
        "concurrent claims on PostgreSQL with an over-allocation check, and packing quality "
        "against first-fit and random. Prints figures; asserts nothing about timing.",
    )
    parser.add_argument(
        "--part", choices=[*PARTS, "all"], default="all", help="what to run (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1,000 devices only, short phases (overrides sizes and durations)",
    )
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=[1000, 10000, 100000],
        help="fleet sizes for engine and http (default: 1000,10000,100000)",
    )
    parser.add_argument(
        "--throughput-sizes",
        type=sizes,
        default=[1000, 10000],
        help="fleet sizes for throughput (default: 1000,10000)",
    )
    add_backend(parser, "database backend(s) for the http part (default: %(default)s)")
    parser.add_argument(
        "--engine-requests",
        type=int,
        default=3000,
        help="timed match() calls per size (default: %(default)s)",
    )
    parser.add_argument(
        "--engine-budget",
        type=float,
        default=180.0,
        help="seconds at most of timed match() calls per size (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help="http: requests in the mixed phase, and again dry-run only (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=15,
        help="http: warm-up dry runs of each kind after the first (default: %(default)s)",
    )
    parser.add_argument(
        "--hold",
        type=int,
        default=50,
        help="http: active allocations kept before releasing the oldest (default: %(default)s)",
    )
    add_batch_size(parser)
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="throughput: seconds each client loops (default: %(default)s)",
    )
    parser.add_argument(
        "--clients", type=int, default=8, help="throughput: client processes (default: 8)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="throughput: server processes (default: 2)"
    )
    parser.add_argument(
        "--packing-size",
        type=int,
        default=1000,
        help="packing: devices in the fleet (default: %(default)s)",
    )
    parser.add_argument(
        "--packing-seeds",
        type=int,
        default=5,
        help="packing: request streams, one per seed (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    add_postgres_url(parser, "benchm")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.throughput_sizes = [1000], [1000]
        args.engine_requests, args.requests, args.warmup, args.hold = 500, 100, 5, 20
        args.duration, args.packing_seeds = 5.0, 2
    numbers = (args.engine_requests, args.requests, args.hold, args.batch_size, args.clients)
    if min(numbers) < 1 or args.workers < 1 or args.duration <= 0 or args.packing_seeds < 1:
        parser.error("counts, --duration and --packing-seeds must be positive")
    args.parts = list(PARTS) if args.part == "all" else [args.part]
    args.backends = backends(args.backend)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    look_around("start")
    needs_postgres = "throughput" in args.parts or (
        "http" in args.parts and "postgresql" in args.backends
    )
    if needs_postgres and not postgres_reachable(args.postgres_url):
        return 2
    sections: list[list[str]] = []

    def run_parts() -> None:
        for part in args.parts:
            progress(f"--- {part} ---")
            sections.append(PARTS[part](args))

    return finish(run_parts, lambda: report(sections, args))


if __name__ == "__main__":
    sys.exit(main())
