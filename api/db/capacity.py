"""Capacity views from the database: one grouped query over devices.

The device row carries its totals, its free amounts (what claims decrement) and, when its
GPUs are all alike, their vendor and model. So every view is sums over devices grouped by
(site, tenant, GPU kind): a few hundred rows however large the fleet, added up by
api/domain/capacity.py. Only devices with a mix of GPUs need their GPU rows, and only
when there are such devices in the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from api.db.models import DeviceRow, GpuRow
from api.db.scope import pooled
from api.db.tenant import Directory, tenant_by_slug
from api.domain.access import Principal
from api.domain.capacity import (
    ALLOCATABLE,
    RESOURCES,
    Amounts,
    CapacityView,
    GpuKind,
    MixedGpus,
    Tally,
    node_resources,
    summarise,
)
from api.domain.vocabulary import Kind, Status

_TOTAL = {r: getattr(DeviceRow, f"total_{r}") for r in RESOURCES}
_FREE = {r: getattr(DeviceRow, f"free_{r}") for r in RESOURCES}


def _sum_if(condition: ColumnElement[bool], value: Any) -> Any:
    return func.sum(case((condition, value), else_=0))


def _in_view(who: Principal, sites: Sequence[str] | None, tenant_id: str | None) -> Any:
    """Devices of the fleet (not VMs, not retired) that the caller may see, filtered."""
    query = pooled(select(), DeviceRow.tenant_id, who).where(
        DeviceRow.kind == Kind.BAREMETAL.value, DeviceRow.status != Status.RETIRED.value
    )
    if sites:
        query = query.where(DeviceRow.site.in_(sites))
    if tenant_id is not None:
        query = query.where(DeviceRow.tenant_id == tenant_id)
    return query


def tallies(
    session: Session, who: Principal, sites: Sequence[str] | None, tenant_id: str | None
) -> list[Tally]:
    """Sums per (site, tenant, GPU kind, status, healthy): plain sums the covering index
    ix_device_capacity answers in order; which groups are allocatable is decided here,
    by the same rule as for one node (api/domain/capacity.node_resources)."""
    whole = and_(*(_FREE[r] == _TOTAL[r] for r in RESOURCES))
    measures = [func.count(), func.sum(case((whole, 1), else_=0))]
    for r in RESOURCES:
        measures += [func.sum(_TOTAL[r]), func.sum(_FREE[r])]
    keys = (
        DeviceRow.site,
        DeviceRow.tenant_id,
        DeviceRow.gpu_vendor,
        DeviceRow.gpu_model,
        DeviceRow.status,
        DeviceRow.healthy,
    )
    query = _in_view(who, sites, tenant_id).add_columns(*keys, *measures).group_by(*keys)
    found = []
    for row in session.execute(query):
        site, tenant, vendor, model, status, healthy, *sums = row
        nodes, whole_count, *amounts = (int(v or 0) for v in sums)
        resources, allocatable = node_resources(status, healthy, amounts[0::2], amounts[1::2])
        kind = GpuKind(vendor, model) if vendor is not None and model is not None else None
        found.append(
            Tally(
                site,
                tenant,
                kind,
                nodes,
                nodes if allocatable else 0,
                whole_count if allocatable and status == Status.AVAILABLE.value else 0,
                resources,
            )
        )
    return found


def mixed_gpus(
    session: Session, who: Principal, sites: Sequence[str] | None, tenant_id: str | None
) -> list[MixedGpus]:
    """GPUs by kind on devices whose GPUs differ. Which GPUs of such a device an allocation
    holds is not recorded (it takes a count), so the held ones are counted as the lowest
    indexes: the per-kind split is exact in total, nominal between kinds."""
    allocatable = and_(DeviceRow.status.in_(ALLOCATABLE), DeviceRow.healthy)
    held = GpuRow.index < DeviceRow.total_gpus - DeviceRow.free_gpus
    keys = (DeviceRow.site, DeviceRow.tenant_id, GpuRow.vendor_code, GpuRow.model_no)
    query = (
        _in_view(who, sites, tenant_id)
        .join(GpuRow, GpuRow.device_id == DeviceRow.id)
        .where(DeviceRow.gpu_model.is_(None), DeviceRow.total_gpus > 0)
        .add_columns(
            *keys,
            func.count(func.distinct(DeviceRow.id)),
            func.count(),
            _sum_if(allocatable, 1),
            _sum_if(held, 1),
            _sum_if(and_(allocatable, ~held), 1),
        )
        .group_by(*keys)
    )
    return [
        MixedGpus(site, tenant, GpuKind(vendor, model), int(nodes), Amounts(*map(int, amounts)))
        for site, tenant, vendor, model, nodes, *amounts in session.execute(query)
    ]


def view(
    session: Session, who: Principal, sites: Sequence[str] | None, tenant: str | None
) -> CapacityView:
    """The capacity view the caller may see, optionally of some sites or one tenant
    (NOT_FOUND for a tenant that does not exist or is not the caller's)."""
    tenant_id = tenant_by_slug(session, who, tenant).id if tenant else None
    found = tallies(session, who, sites, tenant_id)
    # Devices with mixed GPUs are the groups with GPUs but no single kind: rare, so
    # their GPU rows are read only when the view has some.
    has_mixed = any(t.gpu_kind is None and t.resources.gpus.capacity for t in found)
    mixed = mixed_gpus(session, who, sites, tenant_id) if has_mixed else []
    return summarise(found, mixed, Directory.load(session).tenant)
