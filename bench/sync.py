"""NetBox sync benchmark: full sync, no-change re-sync, and webhook latency, against the
real NetBox of tests/netbox (installed and started on first use).

What is measured, and why (issue 5, "Performance")
---------------------------------------------------
1. Full sync of N NetBox devices into an empty inventory (PostgreSQL), by phase: reading
   NetBox (pynetbox), translate + diff, apply. Next to it, the raw rate of listing the same
   devices with pynetbox alone; their ratio is the overhead of our mapping and writes.
   Then a re-sync with nothing changed (reads NetBox and the inventory, writes nothing).
   The fleet is seeded through NetBox's bulk create (lists POSTed 250 at a time): GPU
   servers with custom fields cpu_cores / memory_mb / storage_gb, two key:value tags, a
   site with a region and a rack. No GPU modules: NetBox creates ~25 objects/s on this
   machine, so 8 modules and bays per server would take an hour to seed at 5k; the GPU
   mapping is covered by the tests, and its cost is in the translate phase.
2. Webhook latency: the running service (`gpuinv serve`), the event rule registered with
   `gpuinv sync --setup-webhook`; a device's serial is saved in NetBox and the inventory's
   database polled until it shows the new serial. NetBox's rqworker sends the webhook.

p99 is nearest-rank (bench/stats.py), p50 the median. Figures are printed, nothing is
asserted about time. Run ``python -m bench.sync --help``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pynetbox
from sqlalchemy import select

from api.db.models import DeviceRow
from api.db.session import make_engine, session_factory, unit_of_work, upgrade_to_head
from bench.options import sizes
from bench.service import (
    DEFAULT_POSTGRES,
    BenchError,
    cli,
    code_version,
    fresh_database,
    running_service,
    service_env,
)
from bench.stats import percentile
from sync import reconcile
from sync.diff import diff
from sync.mapping import Mapping
from sync.netbox import connect, load
from sync.translate import translate
from tests.netbox.fixture import netbox_reset

SECRET = "bench-webhook-secret"


def seed(nb: pynetbox.api, count: int) -> float:
    """N GPU servers through NetBox's bulk create; returns the seconds it took."""
    region = nb.dcim.regions.create(name="India", slug="india")
    site = nb.dcim.sites.create(name="Mumbai 1", slug="mumbai-1", region=region.id)
    rack = nb.dcim.racks.create(name="R1", site=site.id)
    maker = nb.dcim.manufacturers.create(name="Supermicro", slug="supermicro")
    model = nb.dcim.device_types.create(manufacturer=maker.id, model="SYS-821GE", slug="sys")
    role = nb.dcim.device_roles.create(name="GPU server", slug="gpu-server")
    for name in ("cpu_cores", "memory_mb", "storage_gb"):
        nb.extras.custom_fields.create(name=name, type="integer", object_types=["dcim.device"])
    tags = [
        nb.extras.tags.create(name=n, slug=n.replace(":", "-")).id for n in ("zone:west", "tier:a")
    ]
    started = time.perf_counter()
    for start in range(0, count, 250):
        nb.dcim.devices.create(
            [
                {
                    "name": f"gpu-{n:05d}",
                    "device_type": model.id,
                    "role": role.id,
                    "site": site.id,
                    "rack": rack.id,
                    "status": "active",
                    "serial": f"SN{n}",
                    "tags": tags,
                    "custom_fields": {"cpu_cores": 128, "memory_mb": 2097152, "storage_gb": 30000},
                }
                for n in range(start, min(count, start + 250))
            ]
        )
    return time.perf_counter() - started


def full_sync(size: int) -> list[str]:
    netbox = netbox_reset()
    nb = netbox.api()
    print(f"[sync {size:,}] seeding NetBox...", file=sys.stderr, flush=True)
    seeded = seed(nb, size)
    api = connect(netbox.url, netbox.token)
    started = time.perf_counter()
    listed = [dict(r) for r in api.dcim.devices.filter(role="gpu-server")]
    raw = time.perf_counter() - started
    if len(listed) != size:
        raise BenchError(f"NetBox lists {len(listed)} devices, {size} were seeded")
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database("postgresql", DEFAULT_POSTGRES, Path(tmp), "benchs") as url,
    ):
        engine = make_engine(url)
        upgrade_to_head(engine)
        sessions = session_factory(engine)
        for label in ("full sync", "no-change re-sync"):
            t0 = time.perf_counter()
            snapshot = load(api, Mapping())
            t1 = time.perf_counter()
            desired = translate(snapshot, Mapping())
            with sessions() as session:
                current = reconcile.holdings(session)
            changes = diff(desired, current)
            t2 = time.perf_counter()
            with unit_of_work(sessions) as session:
                reconcile.apply(session, changes)
            t3 = time.perf_counter()
            total = t3 - t0
            rows.append(
                f"| {size:>7,} | {label:<17} | {t1 - t0:7.1f} | {t2 - t1:7.1f} | {t3 - t2:7.1f} "
                f"| {total:7.1f} | {size / total:9,.0f} | {len(changes):>7,} "
                f"| {raw:6.1f} ({size / raw:,.0f}/s) | {total / raw:5.1f}x |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
        engine.dispose()
    rows.insert(
        0,
        f"  (seeding {size:,} devices through NetBox's bulk create: "
        f"{seeded:.0f} s, {size / seeded:.0f}/s)",
    )
    return rows


def webhook_latency(saves: int) -> list[str]:
    netbox = netbox_reset()
    nb = netbox.api()
    seed(nb, 20)
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database("postgresql", DEFAULT_POSTGRES, Path(tmp), "benchs") as url,
    ):
        env = {
            "NETBOX_URL": netbox.url,
            "NETBOX_TOKEN": netbox.token,
            "GPUINV_NETBOX_WEBHOOK_SECRET": SECRET,
        }
        cli(url, "sync", "--apply", env=env)
        # the service with the NetBox settings, for the webhook
        with running_service(url, Path(tmp), env=service_env(url, env)) as service:
            cli(url, "sync", "--setup-webhook", service.base_url, env=env)
            engine = make_engine(url)
            sessions = session_factory(engine)
            seconds = []
            device = nb.dcim.devices.get(name="gpu-00003")
            for n in range(saves):
                serial = f"SN-HOOK-{n}"
                device.serial = serial
                started = time.perf_counter()
                device.save()
                deadline = started + 60
                while True:
                    with sessions() as session:
                        seen = session.scalar(
                            select(DeviceRow.serial).where(DeviceRow.hostname == "gpu-00003")
                        )
                    if seen == serial:
                        seconds.append(time.perf_counter() - started)
                        break
                    if time.perf_counter() > deadline:
                        raise BenchError("a webhook change did not arrive within 60 s")
                    time.sleep(0.01)
            engine.dispose()
    p99 = percentile(seconds, 99)
    return [
        f"  NetBox save -> visible in the inventory, {saves} saves: "
        f"p50 {statistics.median(seconds) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms (includes the save's own HTTP round trip)"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sizes", type=sizes, default="1000,5000", help="NetBox fleet sizes (default: 1000,5000)"
    )
    parser.add_argument("--saves", type=int, default=20, help="webhook saves timed (default: 20)")
    args = parser.parse_args(argv)
    print(
        f"gpu-inventory NetBox sync benchmark; code {code_version()}; {os.cpu_count()} CPUs; "
        "NetBox 4.7.3, inventory on PostgreSQL, all on this machine",
        flush=True,
    )
    print(
        "| devices | run               | read s  | diff s  | apply s | total s |  items/s  "
        "| changes | pynetbox list alone | ratio |"
    )
    print(
        "|---------|-------------------|---------|---------|---------|---------|-----------|---------|---------------------|-------|"
    )
    lines = []
    for size in args.sizes:
        lines += full_sync(size)
    lines += webhook_latency(args.saves)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
