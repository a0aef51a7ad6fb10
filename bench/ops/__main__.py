"""``python -m bench.ops``: each size on each backend, then the table; what is measured
and why is in bench/ops/__init__.py."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import bench.ops
from api.db.session import make_engine
from api.demo import TENANTS
from bench.fleet import fleet_documents
from bench.graphql import GraphQLClient, body, import_bodies, run_import
from bench.ops.bulk import allocate_in_bulk
from bench.options import add_backend, backends, sizes
from bench.report import progress
from bench.service import (
    DEFAULT_POSTGRES,
    BenchError,
    admin_token,
    code_version,
    create_tenants,
    fresh_database,
    run_gpuinv,
    running_service,
)
from bench.stats import percentile

CHROMIUM = os.environ.get("GPUINV_CHROMIUM", "/usr/bin/chromium")
AMOUNTS = "{ capacity allocatable allocated available }"
GROUP = f"""{{ key nodes nodesAllocatable wholeNodesFree utilizationPercent
  resources {{ cpu {AMOUNTS} memoryMB {AMOUNTS} storageGB {AMOUNTS} gpus {AMOUNTS} }}
  gpuModels {{ vendor model nodes gpus {AMOUNTS} }} }}"""
CAPACITY = f"{{ capacity {{ total {GROUP} sites {GROUP} tenants {GROUP} }} }}"
ONE_SITE = f'{{ capacity(site: ["SITE"]) {{ total {GROUP} }} }}'


def import_fleet(client: GraphQLClient, size: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    documents = fleet_documents(size, seed, all_available=True)
    for document in documents:
        tenant = rng.choice([*(slug for slug, _ in TENANTS), None])
        if tenant:
            document["tenant"] = tenant
    created = run_import(client, import_bodies(documents, 5000)).counts["created"]
    if created != size:
        raise BenchError(f"import created {created} of {size}")
    return documents


def latency(client: GraphQLClient, request: bytes, count: int) -> tuple[float, float]:
    for _ in range(5):
        client.timed(request)
    seconds = [client.timed(request)[0] for _ in range(count)]
    return percentile(seconds, 50) * 1000, percentile(seconds, 99) * 1000


def scrape_latency(base_url: str, count: int) -> tuple[float, float]:
    seconds = []
    with httpx.Client(base_url=base_url, timeout=120) as http:
        for n in range(count + 3):
            started = time.perf_counter()
            response = http.get("/metrics")
            if response.status_code != 200:
                raise BenchError(f"/metrics answered {response.status_code}")
            if n >= 3:
                seconds.append(time.perf_counter() - started)
    return percentile(seconds, 50) * 1000, percentile(seconds, 99) * 1000


def dashboard_loads(base_url: str, token: str, times: int) -> list[float] | str:
    """Seconds from navigation to the utilization figure, each in a fresh context."""
    if not Path(CHROMIUM).exists():
        return f"skipped: no Chromium at {CHROMIUM}"
    from playwright.sync_api import sync_playwright

    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        for _ in range(times):
            context = browser.new_context()
            context.add_init_script(f"sessionStorage.setItem('gpuinv.token', {json.dumps(token)});")
            page = context.new_page()
            started = time.perf_counter()
            page.goto(base_url + "/")
            page.wait_for_function(
                "document.getElementById('kpi-utilization').textContent.endsWith('%')",
                timeout=120_000,
            )
            seconds.append(time.perf_counter() - started)
            context.close()
        browser.close()
    return seconds


def backup_and_restore(database_url: str, backend: str, workdir: Path) -> dict[str, Any]:
    file = workdir / "bench.backup"
    said = {}
    for step, url in (("backup", database_url), ("restore", None)):
        with fresh_database(backend, DEFAULT_POSTGRES, workdir, "benchops_r") as empty:
            done = run_gpuinv(url or empty, step, str(file), timeout=3600)
            found = re.search(r"([\d,]+) rows of \d+ tables .* in ([\d.]+) s", done.stderr)
            if not found:
                raise BenchError(f"gpuinv {step} said: {done.stderr[-500:]}")
            rows, seconds = int(found[1].replace(",", "")), float(found[2])
            said[step] = (rows, seconds)
            if step == "restore":
                break
    return {"rows": said["backup"][0], "backup": said["backup"][1],
            "restore": said["restore"][1], "size": file.stat().st_size}  # fmt: skip


def run_size(size: int, backend: str, args: argparse.Namespace) -> str:
    label = f"[{backend} {size:,}]"
    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-benchops-") as tmp,
        fresh_database(backend, DEFAULT_POSTGRES, Path(tmp), "benchops") as url,
        running_service(url, Path(tmp)) as service,
    ):
        create_tenants(url)
        token = admin_token(url, "benchops")
        client = GraphQLClient(service.base_url, token)
        progress(f"{label} importing")
        documents = import_fleet(client, size, args.seed)
        progress(f"{label} allocating {size // 2:,} in bulk")
        allocate_in_bulk(url, size // 2, args.seed)
        if backend == "postgresql":
            # What autovacuum does after this much churn (the bulk writes above dirtied
            # half the table): statistics and the visibility map the index-only scan needs.
            engine = make_engine(url)
            with engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM (ANALYZE)"
                )
            engine.dispose()
        _, view = client.timed(body(CAPACITY))
        total = view["capacity"]["total"]
        progress(f"{label} timing")
        full = latency(client, body(CAPACITY), args.requests)
        site = documents[0]["site"]
        one = latency(client, body(ONE_SITE.replace("SITE", site)), args.requests)
        scrape = scrape_latency(service.base_url, max(10, args.requests // 5))
        loads = dashboard_loads(service.base_url, token, 5)
        client.close()
        progress(f"{label} backup and restore")
        copy = backup_and_restore(url, backend, Path(tmp))
    gpus = total["resources"]["gpus"]
    if isinstance(loads, str):
        dashboard = loads
    else:
        dashboard = f"{statistics.median(loads):.2f} / {max(loads):.2f}"
    return (
        f"| {backend} | {size:,} | {gpus['allocated']:,} of {gpus['capacity']:,} "
        f"| {full[0]:.1f} / {full[1]:.1f} | {one[0]:.1f} / {one[1]:.1f} "
        f"| {scrape[0]:.1f} / {scrape[1]:.1f} | {dashboard} "
        f"| {copy['rows']:,} | {copy['backup']:.1f} ({copy['rows'] / copy['backup']:,.0f}/s) "
        f"| {copy['restore']:.1f} ({copy['rows'] / copy['restore']:,.0f}/s) "
        f"| {copy['size'] / 1e6:.1f} MB |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ops", description=(bench.ops.__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--sizes", type=sizes, default="1000,10000,100000")
    add_backend(parser)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per view")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        for backend in backends(args.backend):
            rows.append(run_size(size, backend, args))
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"gpu-inventory ops benchmark; code {code_version()}; {os.cpu_count()} CPUs; client, "
        "server, database and browser on one machine; half the devices allocated; ms unless "
        "marked s"
    )
    print(
        "| backend | devices | GPUs allocated | capacity view p50 / p99 | one site p50 / p99 "
        "| /metrics p50 / p99 | dashboard first load s (median / worst of 5) | rows "
        "| backup s | restore s | file |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
