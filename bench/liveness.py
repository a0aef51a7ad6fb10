"""/healthz while one long request runs: does a big import hold every other request?

What is measured, and why (issue 14, "Performance")
---------------------------------------------------
One ``gpuinv serve`` (one worker) on a fresh database (SQLite and PostgreSQL). One client
imports N realistic GPU servers (bench/fleet.py's fleet) in one ``importInventory``
request; meanwhile a second client asks /healthz every 50 ms, as a load balancer or a
Kubernetes probe would, and a third a small query (``{ me { role } }``). Printed: the
import's seconds, and the probes' count, p50, p99 and worst latency. Before GraphQL
operations ran in worker threads, a probe waited for the whole import.

Percentiles are nearest-rank (bench/stats.py), p50 the median. Figures are printed;
nothing is asserted about time. ``python -m bench.liveness --help``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.fleet import fleet_documents
from bench.graphql import GraphQLClient, import_bodies
from bench.options import sizes
from bench.service import admin_token, cli, code_version, fresh_database, running_service
from bench.stats import percentile


def measure(backend: str, size: int, postgres_url: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with fresh_database(backend, postgres_url, workdir, "bench_liveness") as url:
            cli(url, "db", "upgrade")
            token = admin_token(url)
            (body,) = import_bodies(fleet_documents(size, 11), size)
            with running_service(url, workdir) as service:
                importer = GraphQLClient(service.base_url, token)
                done: dict[str, float] = {}

                def run_import() -> None:
                    done["seconds"], data = importer.timed(body)
                    assert data["importInventory"]["created"] == size

                thread = threading.Thread(target=run_import)
                probes: list[float] = []
                queries: list[float] = []
                headers = {"Authorization": f"Bearer {token}"}
                with httpx.Client(base_url=service.base_url, timeout=120) as probe:
                    thread.start()
                    while thread.is_alive():
                        started = time.perf_counter()
                        probe.get("/healthz").raise_for_status()
                        probes.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        probe.post("/graphql", json={"query": "{ me { role } }"}, headers=headers)
                        queries.append(time.perf_counter() - started)
                        time.sleep(0.05)
                thread.join()
                importer.close()

    def ms(v: float) -> str:
        return f"{v * 1000:8.1f}"

    return (
        f"{backend:10} {size:>7,} {done['seconds']:8.1f} {len(probes):7} "
        f"{ms(statistics.median(probes))} {ms(percentile(probes, 99))} {ms(max(probes))} "
        f"{ms(percentile(queries, 99))} {ms(max(queries))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=sizes, default="20000", help="devices per import (comma-separated)"
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "GPUINV_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    print(f"gpu-inventory liveness benchmark; code {code_version()}; {os.cpu_count()} CPUs")
    print("backend      devices import_s  probes  hz_p50   hz_p99   hz_max  q_p99    q_max  (ms)")
    for size in args.sizes:
        for backend in args.backends.split(","):
            print(measure(backend, size, args.postgres_url), flush=True)


if __name__ == "__main__":
    main()
