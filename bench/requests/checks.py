"""What the database says, beside the API: requests that wait although a device with room
for them is free (sampled during the replay), and over-allocation (after it).

"Stuck" is judged as the queue's own rules would (README "Provision requests, the queue
and preemption"): a waiting request is suspect when a device has the room for it now
(free GPUs, and for a slice 16 CPUs and 128 GiB a GPU; for a whole node nothing on it),
its tenant's quota has room for it (or it may borrow: preemptible), and no other waiting
request of its priority or higher holds the queue (has not fitted for the backfill
window). One seen so in two samples in a row (``every`` real seconds apart, many queue
rounds) is reported with the scenario. The rules are approximated, so a report is a lead
to chase, not a proof.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.db.models import (
    AllocationDeviceRow,
    AllocationRow,
    DeviceRow,
    ProvisionRequestRow,
    QuotaRow,
)
from api.db.session import make_engine
from api.domain.quota import NONE_KEY
from bench.claims.checks import OVER_ALLOCATION, QUOTA_CHECKS
from bench.fleet import SLICE_CPU, SLICE_MEMORY_MB
from bench.requests.workload import WHOLE_PROFILE

WAITING = ("APPROVED", "QUEUED")
SHOWN_ROWS = 5


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def fits(request: Any, device: Any) -> bool:
    g = request.gpus
    if request.profile == WHOLE_PROFILE:
        whole = device.free_cpu == device.total_cpu  # nothing on it, not even a slice
        return bool(whole and device.free_gpus == device.total_gpus >= g)
    return bool(
        device.free_gpus >= g
        and device.free_cpu >= SLICE_CPU * g
        and device.free_memory_mb >= SLICE_MEMORY_MB * g
    )


class DatabaseWatch:
    def __init__(self, database_url: str, backfill_seconds: float, every: float = 5.0):
        self.engine: Engine = make_engine(database_url)
        self.window = timedelta(seconds=backfill_seconds)
        self.every = every
        self.suspects: set[str] = set()  # fitted at the last sample
        self.reported: set[str] = set()

    def close(self) -> None:
        self.engine.dispose()

    def held(self) -> list[tuple[str, int]]:
        """(environment, GPUs) of every active allocation, as the database has them."""
        a, d = AllocationRow, AllocationDeviceRow
        with Session(self.engine) as session:
            rows = session.execute(
                select(a.environment, func.sum(d.gpus))
                .join(d, (d.allocation_id == a.id) & d.active)
                .where(a.released_at.is_(None))
                .group_by(a.id, a.environment)
            ).all()
        return [(env, int(gpus)) for env, gpus in rows]

    def released_by(self, environments: list[str]) -> dict[str, str]:
        """Who released each environment's latest allocation, or "" if it is active."""
        a = AllocationRow
        with Session(self.engine) as session:
            rows = session.execute(
                select(a.environment, a.released_by, a.created_at)
                .where(a.environment.in_(environments))
                .order_by(a.created_at)
            ).all()
        return {env: who or "" for env, who, _ in rows}

    def sample(self, sim_hours: float) -> list[tuple[str, str]]:  # every ``every`` s; 0: never
        """The requests found stuck by this sample (each reported once): (environment,
        the scenario)."""
        with Session(self.engine) as session:
            r = ProvisionRequestRow
            waiting = session.execute(
                select(r.id, r.priority, r.gpus, r.profile, r.preemptible, r.blocked_since,
                       r.last_error, r.state, r.environment, r.tenant_id, r.attempted_at)
                .where(r.state.in_(WAITING))
            ).all()  # fmt: skip
            d = DeviceRow
            devices = session.execute(
                select(d.hostname, d.total_gpus, d.free_gpus, d.total_cpu, d.free_cpu,
                       d.free_memory_mb)
                .where(d.status == "available", d.healthy)
            ).all()  # fmt: skip
            quotas = {
                q.tenant_id: q
                for q in session.execute(
                    select(QuotaRow.tenant_id, QuotaRow.used_gpus, QuotaRow.gpus, QuotaRow.enforced)
                    .where(QuotaRow.project_key == NONE_KEY, QuotaRow.model_key == NONE_KEY)
                )
            }  # fmt: skip
            preempting = session.scalar(
                select(func.count()).where(
                    AllocationRow.preempt_at.is_not(None), AllocationRow.released_at.is_(None)
                )
            )
        now = datetime.now(UTC)
        holders = [
            w for w in waiting
            if (since := _aware(w.blocked_since)) is not None and since <= now - self.window
        ]  # fmt: skip
        fitted: set[str] = set()
        found: list[tuple[str, str]] = []
        for w in waiting:
            if any(h.id != w.id and h.priority >= w.priority for h in holders):
                continue
            quota = quotas.get(w.tenant_id)
            if not (w.preemptible or quota is None or not quota.enforced or quota.gpus is None
                    or quota.used_gpus + w.gpus <= quota.gpus):  # fmt: skip
                continue
            room = [dev for dev in devices if fits(w, dev)]
            if not room:
                continue
            fitted.add(w.id)
            if w.id in self.suspects and w.id not in self.reported:
                self.reported.add(w.id)
                code = (w.last_error or {}).get("code") if isinstance(w.last_error, dict) else None
                places = ", ".join(
                    f"{dev.hostname} ({dev.free_gpus}/{dev.total_gpus} GPUs free)"
                    for dev in room[:3]
                )
                tried = _aware(w.attempted_at)
                ago = f"{(now - tried).total_seconds():.1f} s" if tried else "never"
                usage = f"{quota.used_gpus}/{quota.gpus}" if quota is not None else "no quota"
                found.append((w.environment,
                    f"at {sim_hours:.2f} h: request {w.id} ({w.environment}, {w.gpus} GPUs "
                    f"{'whole node' if w.profile == WHOLE_PROFILE else 'slice'}, priority "
                    f"{w.priority}, {'preemptible, ' if w.preemptible else ''}{w.state}, "
                    f"last error {code}, last tried {ago} ago (real), its tenant's GPUs "
                    f"{usage}) still waited {self.every:.0f} s (real) after a sample found "
                    f"room for it on {len(room)} devices, e.g. {places}; {len(waiting)} "
                    f"waiting, {len(holders)} holding the queue, {preempting} allocations "
                    "PREEMPTING"))  # fmt: skip
        self.suspects = fitted
        return found


def over_allocation(database_url: str) -> list[str]:
    """bench/claims' invariants (devices, allocations, quota counters), on PostgreSQL;
    one line if all hold, else the failed checks and some of their rows."""
    if not database_url.startswith("postgresql"):
        return ["over-allocation: not checked (the checks' SQL is PostgreSQL's)"]
    failed: list[str] = []
    with psycopg.connect(database_url) as connection:
        for name, query in (OVER_ALLOCATION | QUOTA_CHECKS).items():
            rows = connection.execute(query).fetchall()
            if rows:
                failed.append(f"FAILED: {name}: {len(rows)} rows, e.g. {rows[:SHOWN_ROWS]}")
    return failed or ["over-allocation and quota counters: 0 offending rows"]
