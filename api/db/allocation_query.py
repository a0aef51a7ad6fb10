"""Reading allocations: the list, the devices they hold, the totals per tenant. Each
applies the tenancy rule through api/db/scope.py."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from api.db.models import AllocationDeviceRow, AllocationRow
from api.db.paging import Page, keyset_page
from api.db.scope import scoped
from api.db.tenant import tenant_by_slug
from api.domain.access import Principal
from api.domain.preemption import PREEMPTED_BY, AllocationState


@dataclass
class AllocationFilter:
    environment: str | None = None
    active: bool | None = None
    tenant: str | None = None  # a slug; another tenant's reads as unknown
    inventory_type: str | None = None
    state: AllocationState | None = None


def in_state(state: AllocationState) -> ColumnElement[bool]:
    """api/domain/preemption.allocation_state as SQL (tests/api/test_provision_requests.py
    checks that the two agree on every state)."""
    released, preempt_at = AllocationRow.released_at, AllocationRow.preempt_at
    by_preemption = AllocationRow.released_by == PREEMPTED_BY  # ix_allocation_preempted
    return {
        AllocationState.ACTIVE: and_(released.is_(None), preempt_at.is_(None)),
        AllocationState.PREEMPTING: and_(released.is_(None), preempt_at.is_not(None)),
        AllocationState.RELEASED: and_(
            released.is_not(None),
            or_(AllocationRow.released_by.is_(None), ~by_preemption),
        ),
        AllocationState.PREEMPTED: and_(released.is_not(None), by_preemption),
    }[state]


def list_allocations(
    session: Session, who: Principal, spec: AllocationFilter, first: int, after: str | None
) -> Page:
    """Newest first, those the caller may see."""
    query = scoped(select(AllocationRow), AllocationRow.tenant_id, who)
    if spec.tenant is not None:
        query = query.where(AllocationRow.tenant_id == tenant_by_slug(session, who, spec.tenant).id)
    if spec.environment is not None:
        query = query.where(AllocationRow.environment == spec.environment)
    if spec.active is not None:
        released = AllocationRow.released_at
        query = query.where(released.is_(None) if spec.active else released.is_not(None))
    if spec.inventory_type is not None:
        query = query.where(AllocationRow.inventory_type == spec.inventory_type)
    if spec.state is not None:
        query = query.where(in_state(spec.state))
    return keyset_page(
        session, query, AllocationRow.id, AllocationRow.created_at, True, first, after
    )


def devices_of(session: Session, allocation_ids: list[str]) -> dict[str, list[AllocationDeviceRow]]:
    """The devices of many allocations in one query (a DataLoader's batch)."""
    found: dict[str, list[AllocationDeviceRow]] = {}
    query = select(AllocationDeviceRow).where(AllocationDeviceRow.allocation_id.in_(allocation_ids))
    for row in session.scalars(query.order_by(AllocationDeviceRow.position)):
        found.setdefault(row.allocation_id, []).append(row)
    return found


@dataclass
class TenantTotals:
    tenant_id: str | None
    allocations: int
    devices: int
    gpus: int


def totals_by_tenant(session: Session, who: Principal) -> list[TenantTotals]:
    """Active allocations per tenant, with the devices and GPUs they hold: one grouped
    query. A tenant's caller gets its own line only."""
    query = (
        select(
            AllocationRow.tenant_id,
            func.count(func.distinct(AllocationRow.id)),
            func.count(AllocationDeviceRow.id),
            func.coalesce(func.sum(AllocationDeviceRow.gpus), 0),
        )
        .join(AllocationDeviceRow, AllocationDeviceRow.allocation_id == AllocationRow.id)
        .where(AllocationRow.released_at.is_(None), AllocationDeviceRow.active)
        .group_by(AllocationRow.tenant_id)
    )
    query = scoped(query, AllocationRow.tenant_id, who)
    return [TenantTotals(t, int(a), int(d), int(g)) for t, a, d, g in session.execute(query)]
