"""N/2 allocations written in bulk, in the rows a claim writes, for bench.ops to measure
reads against: claims over HTTP would take hours at 100k devices, and what is timed here
only reads. The database's invariant is checked before anything is timed.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from api.db.base import new_id, utcnow
from api.db.models import AllocationDeviceRow, AllocationRow, DeviceRow
from api.db.session import insert_rows, make_engine, session_factory, unit_of_work
from bench.service import BenchError

SLICE = {"cpu": 16, "memory_mb": 131072, "storage_gb": 0, "gpus": 2}  # 16 CPU, 128 GiB in all


def allocate_in_bulk(database_url: str, count: int, seed: int) -> None:
    """``count`` allocations written as claims write them (see the module's docstring)."""
    engine = make_engine(database_url)
    rng = random.Random(seed)
    now = utcnow()
    with unit_of_work(session_factory(engine)) as session:
        devices = session.execute(
            select(
                DeviceRow.id,
                DeviceRow.hostname,
                DeviceRow.tenant_id,
                DeviceRow.total_cpu,
                DeviceRow.total_memory_mb,
                DeviceRow.total_storage_gb,
                DeviceRow.total_gpus,
            ).where(DeviceRow.kind == "baremetal", DeviceRow.total_gpus >= 2)
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
        insert_rows(session, AllocationRow.__table__, allocations)
        insert_rows(session, AllocationDeviceRow.__table__, parts)
        statement = (
            update(DeviceRow.__table__)
            .where(DeviceRow.__table__.c.id == bindparam("b_id"))
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
