"""The matchmaking benchmark's invariants, read from the database after the http and
throughput parts: no over-allocation, and bookkeeping that agrees with itself. A broken
one makes the figures void and shows a bug, so it is listed as a problem.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import psycopg

from bench.report import problem
from bench.service import one_value

OVER_ALLOCATION_CHECKS = {
    "devices whose total - free differs from the sum of their active allocation_device amounts": """
        SELECT count(*) FROM device d LEFT JOIN (
          SELECT device_id, sum(cpu) AS cpu, sum(memory_mb) AS mem, sum(storage_gb) AS sto,
                 sum(gpus) AS gpus
          FROM allocation_device WHERE active GROUP BY device_id) a ON a.device_id = d.id
        WHERE d.total_cpu - d.free_cpu <> coalesce(a.cpu, 0)
           OR d.total_memory_mb - d.free_memory_mb <> coalesce(a.mem, 0)
           OR d.total_storage_gb - d.free_storage_gb <> coalesce(a.sto, 0)
           OR d.total_gpus - d.free_gpus <> coalesce(a.gpus, 0)""",
    "devices in two or more active exclusive allocation_device rows": """
        SELECT count(*) FROM (SELECT device_id FROM allocation_device
          WHERE active AND exclusive GROUP BY device_id HAVING count(*) > 1) x""",
    "devices held whole and also sliced (active)": """
        SELECT count(*) FROM (SELECT device_id FROM allocation_device WHERE active
          GROUP BY device_id
          HAVING sum(CASE WHEN exclusive THEN 1 ELSE 0 END) > 0 AND count(*) > 1) x""",
    "devices with free outside 0..total": """
        SELECT count(*) FROM device
        WHERE free_cpu < 0 OR free_cpu > total_cpu OR free_gpus < 0 OR free_gpus > total_gpus
           OR free_memory_mb < 0 OR free_memory_mb > total_memory_mb
           OR free_storage_gb < 0 OR free_storage_gb > total_storage_gb""",
}
BOOKKEEPING_CHECKS = {
    "allocation_device rows whose active flag disagrees with their allocation": """
        SELECT count(*) FROM allocation_device ad JOIN allocation a ON a.id = ad.allocation_id
        WHERE ad.active <> (a.released_at IS NULL)""",
    "active allocations without an active device": """
        SELECT count(*) FROM allocation a WHERE a.released_at IS NULL AND NOT EXISTS (
          SELECT 1 FROM allocation_device ad WHERE ad.allocation_id = a.id AND ad.active)""",
    "devices whose status 'allocated' disagrees with an active exclusive row": """
        SELECT count(*) FROM device d WHERE (d.status = 'allocated') <> EXISTS (
          SELECT 1 FROM allocation_device ad
          WHERE ad.device_id = d.id AND ad.active AND ad.exclusive)""",
}
COUNTS = {
    "active allocations": "SELECT count(*) FROM allocation WHERE released_at IS NULL",
    "allocations made": "SELECT count(*) FROM allocation",
    "active allocation_device rows": "SELECT count(*) FROM allocation_device WHERE active",
}


@dataclass
class Verification:
    violations: dict[str, int]
    bookkeeping: dict[str, int]
    counts: dict[str, int]

    @property
    def over_allocated(self) -> bool:
        return any(self.violations.values())

    def lines(self) -> list[str]:
        verdict = "FAILED" if self.over_allocated else "zero over-allocation"
        out = [f"   Verification ({', '.join(f'{k} {v:,}' for k, v in self.counts.items())}):"]
        out.append(f"     {verdict}")
        for name, count in {**self.violations, **self.bookkeeping}.items():
            out.append(f"     {'OK  ' if count == 0 else 'FAIL'} {count:>6} {name}")
        return out


def verify(database_url: str) -> Verification:
    def run(queries: dict[str, str]) -> dict[str, int]:
        if database_url.startswith("sqlite:///"):
            path = database_url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as connection:
                return {k: connection.execute(q).fetchone()[0] for k, q in queries.items()}
        with psycopg.connect(database_url) as connection:
            return {k: one_value(connection, q) for k, q in queries.items()}

    return Verification(run(OVER_ALLOCATION_CHECKS), run(BOOKKEEPING_CHECKS), run(COUNTS))


def report_verification(result: Verification, label: str) -> None:
    for name, count in {**result.violations, **result.bookkeeping}.items():
        if count:
            problem(f"{label} invariant broken: {count} {name}")
