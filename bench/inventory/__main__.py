"""``python -m bench.inventory``: the command line, and every fleet size on every backend;
what is measured and why is in bench/inventory/__init__.py."""

from __future__ import annotations

import argparse
import gc
import sys

from bench.inventory.measure import SizeResult, run_size
from bench.inventory.report import report
from bench.inventory.workload import prepare_fleet
from bench.options import (
    add_backend,
    add_batch_size,
    add_postgres_url,
    backends,
    postgres_reachable,
    sizes,
)
from bench.report import finish, progress


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inventory",
        description="Import throughput and device-list latency of a real `gpuinv serve` "
        "process, per backend and fleet size. Prints figures; asserts nothing "
        "about timing.",
    )
    parser.add_argument(
        "--sizes",
        type=sizes,
        default="1000,10000,100000",
        help="fleet sizes in devices, comma-separated (default: %(default)s)",
    )
    add_backend(parser, "database backend(s) (default: %(default)s)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1,000 devices only (overrides --sizes)"
    )
    add_batch_size(parser)
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
    add_postgres_url(parser, "bench")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [1000]
    if args.batch_size < 1 or args.requests < 1 or args.warmup < 0 or args.budget <= 0:
        parser.error("sizes, --batch-size, --requests and --budget must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = backends(args.backend)
    results: list[SizeResult] = []
    if "postgresql" in chosen and not postgres_reachable(args.postgres_url):
        return 2

    def run_sizes() -> None:
        for size in args.sizes:
            fleet = prepare_fleet(size, args.batch_size)
            gc.collect()
            progress(
                f"generated {size:,} devices, {sum(map(len, fleet.bodies)) / 1e6:.1f} MB in "
                f"{len(fleet.bodies)} request(s)"
            )
            for backend in chosen:
                results.append(run_size(backend, fleet, args))

    return finish(run_sizes, lambda: report(results, args, chosen))


if __name__ == "__main__":
    sys.exit(main())
