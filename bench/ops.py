"""Capacity views, metrics, the dashboard, backup and restore, at fleet sizes 1k to 100k.

What is measured, and why (issue 7, "Performance")
--------------------------------------------------
For each size N and backend: one ``gpuinv serve`` (one worker) on a fresh database; N
realistic GPU servers (bench/fleet.py's fleet: 8-GPU NVIDIA/AMD/Intel and 4-GPU L40S
servers on five sites), spread over three tenants and none, imported through the API; then
N/2 allocations: 70% whole servers, 30% 2-GPU slices (16 CPU, 128 GiB each). The
allocations are written in bulk, in the same rows a claim writes (allocation,
allocation_device, the device's free amounts and status; the triggers fill the change
feed), because N/2 claims over HTTP would take hours at 100k and the figures measured here
only read. The database's invariant (every device's total minus free equals what its
active allocations hold) is checked before anything is timed. On PostgreSQL a VACUUM
(ANALYZE) follows, as autovacuum would after that much churn.

1. ``capacity``: the full view (total, per site, per tenant, GPU models, four amounts of
   four resources) over HTTP, keep-alive, after warm-up: p50/p99 over ``--requests``.
   Also a one-site view, and a /metrics scrape (which reads the same view plus counts).
2. The dashboard's first load in Debian's headless Chromium (Playwright), the token already
   in the tab's session storage: navigation start to the utilization figure on screen,
   each time in a new browser context (nothing cached); median and worst of 5.
3. ``gpuinv backup`` of the whole database, and ``gpuinv restore`` of that file into a new
   empty database: seconds, rows/s and the file's size.

Percentiles are nearest-rank (bench/stats.py). Figures are printed; nothing is asserted
about time. ``python -m bench.ops --help``.
"""

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
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from api.db.base import new_id, utcnow
from api.db.models import Allocation, AllocationDevice, Device
from api.db.session import insert_rows, make_engine, session_factory, unit_of_work
from api.demo import TENANTS
from bench.fleet import fleet_documents
from bench.graphql import GraphQLClient, body, import_bodies, run_import
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
SLICE = {"cpu": 16, "memory_mb": 131072, "storage_gb": 0, "gpus": 2}  # 16 CPU, 128 GiB in all


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


def allocate_in_bulk(database_url: str, count: int, seed: int) -> None:
    """``count`` allocations written as claims write them (see the module's docstring)."""
    engine = make_engine(database_url)
    rng = random.Random(seed)
    now = utcnow()
    with unit_of_work(session_factory(engine)) as session:
        devices = session.execute(
            select(
                Device.id,
                Device.hostname,
                Device.tenant_id,
                Device.total_cpu,
                Device.total_memory_mb,
                Device.total_storage_gb,
                Device.total_gpus,
            ).where(Device.kind == "baremetal", Device.total_gpus >= 2)
        ).all()
        if len(devices) < count:
            raise BenchError(f"{len(devices)} GPU servers for {count} allocations")
        allocations, parts, frees = [], [], []
        for n, d in enumerate(rng.sample(devices, count)):
            whole = rng.random() < 0.7
            taken = (
                {
                    "cpu": d.total_cpu,
                    "memory_mb": d.total_memory_mb,
                    "storage_gb": d.total_storage_gb,
                    "gpus": d.total_gpus,
                }
                if whole
                else SLICE
            )
            allocation_id = new_id()
            allocations.append(
                {
                    "id": allocation_id,
                    "environment": f"bench-{n}",
                    "scope": d.tenant_id or "*",
                    "tenant_id": d.tenant_id,
                    "project_id": None,
                    "profile": None,
                    "inventory_type": "baremetal" if whole else "vcluster",
                    "request": {},
                    "request_hash": f"bench-{n}",
                    "variables": {},
                    "device_details": {"hostname": d.hostname},
                    "explanation": {"steps": []},
                    "actor": "bench",
                    "created_at": now,
                    "expires_at": None,
                    "released_at": None,
                    "released_by": None,
                }
            )
            parts.append(
                {
                    "allocation_id": allocation_id,
                    "device_id": d.id,
                    "hostname": d.hostname,
                    "position": 0,
                    "exclusive": whole,
                    "active": True,
                    **taken,
                }
            )
            frees.append(
                {
                    "b_id": d.id,
                    "b_status": "allocated" if whole else "available",
                    "b_cpu": d.total_cpu - taken["cpu"],
                    "b_memory": d.total_memory_mb - taken["memory_mb"],
                    "b_storage": d.total_storage_gb - taken["storage_gb"],
                    "b_gpus": d.total_gpus - taken["gpus"],
                }
            )
        insert_rows(session, Allocation.__table__, allocations)
        insert_rows(session, AllocationDevice.__table__, parts)
        statement = (
            update(Device.__table__)
            .where(Device.__table__.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                free_cpu=bindparam("b_cpu"),
                free_memory_mb=bindparam("b_memory"),
                free_storage_gb=bindparam("b_storage"),
                free_gpus=bindparam("b_gpus"),
            )
        )
        for start in range(0, len(frees), 5000):
            session.connection().execute(statement, frees[start : start + 5000])
    check_invariant(engine)
    engine.dispose()


def check_invariant(engine: Any) -> None:
    """Every device's total minus free is what its active allocations hold."""
    with Session(engine) as session:
        broken = session.execute(
            text(
                """SELECT count(*) FROM device d LEFT JOIN (
                     SELECT device_id, sum(gpus) AS gpus, sum(cpu) AS cpu
                     FROM allocation_device WHERE active GROUP BY device_id) h
                   ON h.device_id = d.id
                   WHERE d.total_gpus - d.free_gpus <> coalesce(h.gpus, 0)
                      OR d.total_cpu - d.free_cpu <> coalesce(h.cpu, 0)"""
            )
        ).scalar()
    if broken:
        raise BenchError(f"{broken} devices disagree with their allocations")


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
    parser = argparse.ArgumentParser(prog="python -m bench.ops", description=__doc__.split("\n")[0])
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
