"""Prometheus metrics at /metrics (prometheus_client, the reference client library).

Two kinds:
- What a process sees, counted as it happens: request latency by operation, matchDevice
  outcomes by code. With several workers, ``gpuinv serve`` points PROMETHEUS_MULTIPROC_DIR
  at a fresh directory and a scrape adds every worker's files up.
- What the database holds, read at scrape time, so every replica reports the same numbers:
  allocations held, nodes by status, GPUs by model (capacity, allocated, available), the
  sync's lag, the quotas set (limits, usage, borrowed GPUs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import capacity as capacity_db
from api.db import quota as quota_db
from api.db.base import utcnow
from api.db.models import AllocationDeviceRow, AllocationRow, DeviceRow, SyncStateRow
from api.domain.access import Principal, Role

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
