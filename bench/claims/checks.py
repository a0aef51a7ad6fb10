"""Over-allocation and bookkeeping, read from PostgreSQL (psycopg, not the API) after each
run; the offending rows are kept for the report, since one of them is a bug to chase.
"""

from __future__ import annotations

import psycopg

from bench.claims.replay import RunResult

HELD = """(SELECT device_id, sum(cpu) AS cpu, sum(memory_mb) AS mem, sum(storage_gb) AS sto,
             sum(gpus) AS gpus, count(*) AS n, count(*) FILTER (WHERE exclusive) AS whole
           FROM allocation_device WHERE active GROUP BY device_id)"""
OVER_ALLOCATION = {
    "devices with more allocated than they have (hostname, total/allocated GPUs, CPUs, MB)": f"""
        SELECT d.hostname, d.total_gpus, h.gpus, d.total_cpu, h.cpu, d.total_memory_mb, h.mem
        FROM device d JOIN {HELD} h ON h.device_id = d.id
        WHERE h.gpus > d.total_gpus OR h.cpu > d.total_cpu OR h.mem > d.total_memory_mb
           OR h.sto > d.total_storage_gb""",
    "devices whose free amounts are not total minus what active allocations hold "
    "(hostname, total/free/held GPUs, CPUs)": f"""
        SELECT d.hostname, d.total_gpus, d.free_gpus, coalesce(h.gpus, 0),
               d.total_cpu, d.free_cpu, coalesce(h.cpu, 0)
        FROM device d LEFT JOIN {HELD} h ON h.device_id = d.id
        WHERE d.total_gpus - d.free_gpus <> coalesce(h.gpus, 0)
           OR d.total_cpu - d.free_cpu <> coalesce(h.cpu, 0)
           OR d.total_memory_mb - d.free_memory_mb <> coalesce(h.mem, 0)
           OR d.total_storage_gb - d.free_storage_gb <> coalesce(h.sto, 0)""",
    "devices with free amounts outside 0..total (hostname, total/free GPUs, CPUs, MB)": """
        SELECT hostname, total_gpus, free_gpus, total_cpu, free_cpu, total_memory_mb,
               free_memory_mb FROM device
        WHERE free_gpus NOT BETWEEN 0 AND total_gpus OR free_cpu NOT BETWEEN 0 AND total_cpu
           OR free_memory_mb NOT BETWEEN 0 AND total_memory_mb
           OR free_storage_gb NOT BETWEEN 0 AND total_storage_gb""",
    "devices held whole by two or more active allocations, or held whole and sliced "
    "(hostname, active rows, exclusive rows, environments)": f"""
        SELECT d.hostname, h.n, h.whole, (SELECT string_agg(a.environment, ' ')
          FROM allocation_device ad JOIN allocation a ON a.id = ad.allocation_id
          WHERE ad.device_id = d.id AND ad.active)
        FROM device d JOIN {HELD} h ON h.device_id = d.id WHERE h.whole > 0 AND h.n > 1""",
    "allocation devices whose active flag disagrees with their allocation's release "
    "(environment, hostname, active, released_at)": """
        SELECT a.environment, ad.hostname, ad.active, a.released_at
        FROM allocation_device ad JOIN allocation a ON a.id = ad.allocation_id
        WHERE ad.active <> (a.released_at IS NULL)""",
    "active allocations holding no active device (environment, inventory type)": """
        SELECT a.environment, a.inventory_type FROM allocation a
        WHERE a.released_at IS NULL AND NOT EXISTS (SELECT 1 FROM allocation_device ad
          WHERE ad.allocation_id = a.id AND ad.active)""",
    "whole-node allocations not holding exactly one whole device, or slices holding a "
    "device whole (environment, inventory type, rows, exclusive rows)": """
        SELECT a.environment, a.inventory_type, count(*),
               count(*) FILTER (WHERE ad.exclusive)
        FROM allocation a JOIN allocation_device ad ON ad.allocation_id = a.id AND ad.active
        WHERE a.released_at IS NULL GROUP BY a.id, a.environment, a.inventory_type
        HAVING (a.inventory_type = 'baremetal'
                AND (count(*) <> 1 OR count(*) FILTER (WHERE ad.exclusive) <> 1))
            OR (a.inventory_type = 'vcluster' AND count(*) FILTER (WHERE ad.exclusive) > 0)""",
}
# Quotas (code with a quota table): the tenant-wide counters against what active
# allocations hold, and no usage past a limit (the bench never lowers one).
QUOTA_CHECKS = {
    "tenant-wide quota counters that differ from what active allocations hold "
    "(tenant, counted GPUs, held GPUs, counted nodes, held nodes)": """
        SELECT q.tenant_id, q.used_gpus + q.borrowed_gpus, coalesce(h.gpus, 0), q.used_nodes,
               coalesce(h.nodes, 0)
        FROM quota q LEFT JOIN (
          SELECT a.tenant_id, sum(ad.gpus) AS gpus,
                 count(*) FILTER (WHERE ad.exclusive AND d.kind = 'baremetal') AS nodes
          FROM allocation a JOIN allocation_device ad ON ad.allocation_id = a.id AND ad.active
          JOIN device d ON d.id = ad.device_id
          WHERE a.released_at IS NULL AND a.tenant_id IS NOT NULL GROUP BY a.tenant_id) h
          ON h.tenant_id = q.tenant_id
        WHERE q.project_key = '' AND q.model_key = ''
          AND (q.used_gpus + q.borrowed_gpus <> coalesce(h.gpus, 0)
               OR q.used_nodes <> coalesce(h.nodes, 0))""",
    "quotas with usage past their limit (tenant, used/limit GPUs, used/limit nodes)": """
        SELECT tenant_id, used_gpus, gpus, used_nodes, nodes FROM quota
        WHERE enforced AND ((gpus IS NOT NULL AND used_gpus > gpus)
                            OR (nodes IS NOT NULL AND used_nodes > nodes))""",
}
ACTIVE = "SELECT count(*) FROM allocation WHERE released_at IS NULL"
SHOWN_ROWS = 20


def verify(database_url: str, result: RunResult) -> None:
    """The invariants, straight from the database; offending rows kept in the result."""
    with psycopg.connect(database_url) as connection:
        checks = dict(OVER_ALLOCATION)
        if connection.execute("SELECT to_regclass('quota')").fetchone() != (None,):
            checks |= QUOTA_CHECKS
        for name, query in checks.items():
            rows = connection.execute(query).fetchall()
            if rows:
                result.offending[name] = rows
        active = connection.execute(ACTIVE).fetchone()
    allocated = result.outcomes["allocated"]
    if active is None or active[0] != allocated:
        count = active[0] if active else "?"
        result.offending[
            f"active allocations ({count}) differ from the claims answered allocated ({allocated})"
        ] = []


def verification_lines(result: RunResult) -> list[str]:
    if not result.offending:
        return [f"[{result.label}] over-allocation: 0"]
    lines = [f"[{result.label}] over-allocation: {len(result.offending)} checks FAILED"]
    for name, rows in result.offending.items():
        lines.append(f"  {name}: {len(rows)} rows")
        lines += [f"    {row}" for row in rows[:SHOWN_ROWS]]
        if len(rows) > SHOWN_ROWS:
            lines.append(f"    ... and {len(rows) - SHOWN_ROWS} more")
    return lines
