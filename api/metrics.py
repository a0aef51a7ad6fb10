"""Prometheus metrics at /metrics (prometheus_client, the reference client library).

Two kinds:
- What a process sees, counted as it happens: request latency by operation, matchDevice
  outcomes by code. With several workers, ``gpuinv serve`` points PROMETHEUS_MULTIPROC_DIR
  at a fresh directory and a scrape adds every worker's files up.
- What the database holds, read at scrape time, so every replica reports the same numbers:
  allocations held, nodes by status, GPUs by model (capacity, allocated, available), the
  sync's lag, the quotas set (limits, usage, borrowed GPUs), and per tenant the provision
  requests open and how long the queue has kept them, the allocations being preempted and
  those preempted so far.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import capacity as capacity_db
from api.db import quota as quota_db
from api.db.allocation_query import in_state
from api.db.base import utcnow
from api.db.models import (
    AllocationDeviceRow,
    AllocationRow,
    DeviceRow,
    ProvisionRequestRow,
    SyncStateRow,
    TenantRow,
)
from api.domain.access import Principal, Role
from api.domain.preemption import AllocationState
from api.domain.provision_request import OPEN, WAITING

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUEST_SECONDS = Histogram(
    "gpuinv_request_duration_seconds",
    "Time to answer a request, by operation (the GraphQL root field, or the route).",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MATCH_OUTCOMES = Counter(
    "gpuinv_match_outcomes_total",
    "matchDevice calls by outcome: ALLOCATED, DRY_RUN, REPLAYED, or the error code.",
    ["outcome"],
)

HEALTH_ALERTS = Counter(
    "gpuinv_health_alerts_total",
    "Health conditions reported on servers that hold allocations (kept, not freed), by code.",
    ["code"],
)

# The scrape reads the database as the platform does, whoever asks (/metrics has no token).
_SCRAPER = Principal(name="system:metrics", role=Role.PLATFORM_ADMIN)


class InventoryCollector(Collector):
    """Gauges read from the database at each scrape."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        with self.sessions() as session:
            held = session.scalar(
                select(func.count())
                .select_from(AllocationRow)
                .where(AllocationRow.released_at.is_(None))
            )
            allocations = GaugeMetricFamily(
                "gpuinv_allocations_active", "Allocations held now (not released)."
            )
            allocations.add_metric([], held or 0)
            yield allocations

            nodes = GaugeMetricFamily(
                "gpuinv_devices", "Devices and VMs by kind and status.", labels=["kind", "status"]
            )
            counts = select(DeviceRow.kind, DeviceRow.status, func.count()).group_by(
                DeviceRow.kind, DeviceRow.status
            )
            for kind, status, count in session.execute(counts):
                nodes.add_metric([kind, status], count)
            yield nodes

            unhealthy = GaugeMetricFamily(
                "gpuinv_devices_unhealthy",
                "Servers and VMs with a health condition; held=true: they hold allocations "
                "(an operator must decide).",
                labels=["held"],
            )
            held_devices = select(AllocationDeviceRow.device_id).where(AllocationDeviceRow.active)
            sick = select(DeviceRow.id.in_(held_devices), func.count()).where(
                DeviceRow.health.is_not(None)
            )
            counted = dict.fromkeys((False, True), 0)
            for is_held, count in session.execute(sick.group_by(DeviceRow.id.in_(held_devices))):
                counted[bool(is_held)] = count
            for is_held, count in counted.items():
                unhealthy.add_metric([str(is_held).lower()], count)
            yield unhealthy

            view = capacity_db.view(session, _SCRAPER, None, None)
            families = {
                amount: GaugeMetricFamily(
                    f"gpuinv_gpus_{amount}",
                    f"GPUs by vendor and model: {amount} (see the capacity query).",
                    labels=["vendor", "model"],
                )
                for amount in ("capacity", "allocatable", "allocated", "available")
            }
            for model in view.total.models:
                for amount, family in families.items():
                    family.add_metric(
                        [model.kind.vendor, model.kind.model], getattr(model.gpus, amount)
                    )
            yield from families.values()

            lag = GaugeMetricFamily(
                "gpuinv_sync_lag_seconds",
                "Seconds since the last successful sync, by source (absent before the first).",
                labels=["source"],
            )
            failing = GaugeMetricFamily(
                "gpuinv_sync_failing",
                "1 when the last sync attempt failed after the last success, by source.",
                labels=["source"],
            )
            now = utcnow()
            for state in session.scalars(select(SyncStateRow)):
                if state.last_success_at is not None:
                    lag.add_metric([state.source], (now - state.last_success_at).total_seconds())
                failed = state.last_error_at is not None and (
                    state.last_success_at is None or state.last_error_at > state.last_success_at
                )
                failing.add_metric([state.source], 1 if failed else 0)
            yield lag
            yield failing

            yield from _quotas(session)
            yield from _requests_and_preemptions(session, now)


def _quotas(session: Session) -> Iterator[Metric]:
    """The quotas set (DESIGN.md "Sharing the fleet"): their limits, a series for each
    resource limited (none where a quota leaves it unlimited), what is held against them,
    and the GPUs borrowed beyond them. ``project`` and ``model`` are "" for a tenant's own
    limit and for every model."""
    keys = ["tenant", "project", "model"]
    limit = GaugeMetricFamily(
        "gpuinv_quota_limit",
        "The quotas' limits by resource (gpus, nodes); absent where a quota sets none.",
        labels=[*keys, "resource"],
    )
    used = GaugeMetricFamily(
        "gpuinv_quota_used",
        "What is held against each quota, by resource (gpus, nodes); borrowed GPUs apart.",
        labels=[*keys, "resource"],
    )
    borrowed = GaugeMetricFamily(
        "gpuinv_quota_borrowed_gpus",
        "GPUs held by preemptible allocations admitted beyond each quota's GPU limit.",
        labels=keys,
    )
    for quota in quota_db.list_quotas(session, _SCRAPER, None, None):
        key = [quota.tenant, quota.project or "", quota.gpu_model or ""]
        for resource, most, held in (
            ("gpus", quota.gpus, quota.used_gpus),
            ("nodes", quota.nodes, quota.used_nodes),
        ):
            if most is not None:
                limit.add_metric([*key, resource], most)
            used.add_metric([*key, resource], held)
        borrowed.add_metric(key, quota.borrowed_gpus)
    yield limit
    yield used
    yield borrowed


# The tenant label of what belongs to no tenant (platform-wide requests and allocations),
# as the quota gauges write "" for "no project" and "every model".
PLATFORM = ""


class _PerTenant:
    """Amounts by tenant slug, every tenant (and PLATFORM) present from the start at 0: a
    series that vanished when a queue emptied would leave alerts on it pending and graphs
    with gaps."""

    def __init__(self, session: Session):
        self.session = session
        self.slugs: dict[str | None, str] = {None: PLATFORM}
        for tenant_id, slug in session.execute(select(TenantRow.id, TenantRow.slug)):
            self.slugs[tenant_id] = slug

    def slug(self, tenant_id: str | None) -> str:
        return self.slugs.get(tenant_id, tenant_id or PLATFORM)

    def zeros(self) -> dict[str, float]:
        return dict.fromkeys(self.slugs.values(), 0)

    def allocations(self, *where: ColumnElement[bool]) -> dict[str, float]:
        """How many allocations match ``where``, by tenant."""
        counts = self.zeros()
        query = (
            select(AllocationRow.tenant_id, func.count())
            .where(*where)
            .group_by(AllocationRow.tenant_id)
        )
        for tenant_id, count in self.session.execute(query):
            counts[self.slug(tenant_id)] = count
        return counts


def _requests_and_preemptions(session: Session, now: datetime) -> Iterator[Metric]:
    """Provision requests and preemption per tenant (DESIGN.md "Priority, preemption,
    provision requests"), labelled with the tenant's slug, PLATFORM for platform-wide."""
    tenants = _PerTenant(session)
    requests = GaugeMetricFamily(
        "gpuinv_provision_requests",
        "Open provision requests by tenant and state (PENDING_APPROVAL, APPROVED, QUEUED).",
        labels=["tenant", "state"],
    )
    by_state: dict[str, dict[str, float]] = {state.value: tenants.zeros() for state in OPEN}
    open_requests = (
        select(ProvisionRequestRow.tenant_id, ProvisionRequestRow.state, func.count())
        .where(ProvisionRequestRow.state.in_(OPEN))
        .group_by(ProvisionRequestRow.tenant_id, ProvisionRequestRow.state)
    )
    for tenant_id, state, count in session.execute(open_requests):
        by_state[state][tenants.slug(tenant_id)] = count
    for state, counts in by_state.items():
        for tenant, held in counts.items():
            requests.add_metric([tenant, state], held)
    yield requests

    wait = GaugeMetricFamily(
        "gpuinv_provision_request_wait_seconds",
        "The longest any waiting provision request (APPROVED and due, or QUEUED) has waited "
        "since it was approved or since its startsAt, whichever is later; 0 if none waits.",
        labels=["tenant"],
    )
    # Before its startsAt a request waits for its start, not for capacity: not counted.
    longest = tenants.zeros()
    waiting = select(
        ProvisionRequestRow.tenant_id,
        ProvisionRequestRow.queued_at,
        ProvisionRequestRow.requested_at,
        ProvisionRequestRow.starts_at,
    ).where(ProvisionRequestRow.state.in_(WAITING))
    for tenant_id, queued_at, requested_at, starts_at in session.execute(waiting):
        if starts_at is not None and starts_at > now:
            continue
        since = queued_at or requested_at
        if starts_at is not None and starts_at > since:
            since = starts_at
        tenant = tenants.slug(tenant_id)
        longest[tenant] = max(longest[tenant], (now - since).total_seconds())
    for tenant, seconds in longest.items():
        wait.add_metric([tenant], seconds)
    yield wait

    preempting = GaugeMetricFamily(
        "gpuinv_allocations_preempting",
        "Active allocations marked PREEMPTING: released at their preemptAt for a queued request.",
        labels=["tenant"],
    )
    marked = tenants.allocations(in_state(AllocationState.PREEMPTING))
    for tenant, being in marked.items():
        preempting.add_metric([tenant], being)
    yield preempting

    # A counter, though read from the database: released allocations are kept, so the
    # count only grows (a restored backup is a reset, as a restarted process's would be),
    # and every replica reads the same one. As a counter, increase() and rate() give
    # preemptions per hour, which Prometheus promises for counters only.
    preempted = CounterMetricFamily(
        "gpuinv_allocations_preempted",
        "Allocations released by preemption, since the database began (read from it).",
        labels=["tenant"],
    )
    released = tenants.allocations(in_state(AllocationState.PREEMPTED))
    for tenant, gone in released.items():
        preempted.add_metric([tenant], gone)
    yield preempted


def exposition(sessions: sessionmaker[Session]) -> tuple[bytes, str]:
    """The text a scrape gets, and its content type."""
    database = CollectorRegistry(auto_describe=False)
    database.register(InventoryCollector(sessions))
    if os.environ.get(MULTIPROCESS_ENV):
        process = CollectorRegistry()
        multiprocess.MultiProcessCollector(process)
    else:
        process = REGISTRY
    return generate_latest(process) + generate_latest(database), CONTENT_TYPE_LATEST
