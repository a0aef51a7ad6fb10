"""releaseAllocation and the lease sweeper: an allocation's devices, quota usage and
event given back in the release's one transaction (the caller's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from api.db import audit, events
from api.db import quota as quota_db
from api.db.allocation import active_allocation, require_provisioning
from api.db.allocation_request import PLATFORM_SCOPE, whose_inventory
from api.db.base import utcnow
from api.db.models import AllocationDeviceRow, AllocationRow, DeviceRow
from api.db.session import rowcount
from api.domain.access import Principal, Role
from api.domain.events import (
    ALLOCATION_EXPIRED,
    ALLOCATION_PREEMPTED,
    ALLOCATION_RELEASED,
    allocation_data,
)

# A release's event by its reason; any other reason is a plain release.
_EVENT_OF = {"expire": ALLOCATION_EXPIRED, "preempt": ALLOCATION_PREEMPTED}


def release(
    session: Session,
    who: Principal,
    environment: str,
    tenant: str | None = None,
    reason: str = "release",
) -> AllocationRow | None:
    """Free everything the environment's allocation holds; idempotent. Caller commits.

    Returns the released allocation (also on a second call), or None if the environment
    never held one.
    """
    require_provisioning(who)
    tenant_id, _ = whose_inventory(session, who, tenant)
    scope = tenant_id or PLATFORM_SCOPE
    allocation = active_allocation(session, scope, environment)
    if allocation is None:
        return session.scalar(
            select(AllocationRow)
            .where(AllocationRow.scope == scope, AllocationRow.environment == environment)
            .order_by(AllocationRow.released_at.desc())
            .limit(1)
        )
    if not free_allocation(session, who, allocation, reason):
        # Another release got there first (a lease's end, another replica): answer the
        # allocation as that release left it, not as this session first read it.
        session.refresh(allocation)
    return allocation


def free_allocation(
    session: Session, who: Principal, allocation: AllocationRow, reason: str
) -> bool:
    """Give back the devices; False when another release got there first."""
    now = utcnow()
    won = (
        rowcount(
            session.execute(
                update(AllocationRow)
                .where(AllocationRow.id == allocation.id, AllocationRow.released_at.is_(None))
                .values(released_at=now, released_by=who.actor)
                .execution_options(synchronize_session=False)
            )
        )
        == 1
    )
    if not won:
        return False
    # Deactivate and learn what was held in one statement.
    held = session.execute(
        update(AllocationDeviceRow)
        .where(
            AllocationDeviceRow.allocation_id == allocation.id, AllocationDeviceRow.active.is_(True)
        )
        .values(active=False)
        .returning(
            AllocationDeviceRow.device_id,
            AllocationDeviceRow.hostname,
            AllocationDeviceRow.exclusive,
            AllocationDeviceRow.cpu,
            AllocationDeviceRow.memory_mb,
            AllocationDeviceRow.storage_gb,
            AllocationDeviceRow.gpus,
            AllocationDeviceRow.position,
        )
        .execution_options(synchronize_session=False)
    ).all()
    held = sorted(held, key=lambda part: part.position)
    for part in held:
        _give_back(session, part, now)
    # The usage goes in the same transaction, after the devices: a claim locks its devices
    # first and its counters last, so the release takes them in that order too (the other
    # order deadlocked a release against a claim of the same tenant on the same server).
    quota_db.give_back(session, allocation)
    # Already written above: tell the session so, or it would UPDATE the row again.
    set_committed_value(allocation, "released_at", now)
    set_committed_value(allocation, "released_by", who.actor)
    audit.record(
        session,
        who,
        reason,
        "allocation",
        allocation.id,
        allocation.environment,
        allocation.tenant_id,
        {"devices": [p.hostname for p in held]},
        None,
    )
    if events.anyone_wants(session, allocation.tenant_id):
        kind = _EVENT_OF.get(reason, ALLOCATION_RELEASED)
        columns = {c.key: getattr(allocation, c.key) for c in AllocationRow.__table__.columns}
        parts = [dict(p._mapping) for p in held]
        data = allocation_data(
            columns, parts, *events.slugs(session, allocation.tenant_id, allocation.project_id)
        )
        events.record(session, kind, allocation.id, allocation.tenant_id, data, now)
    return True


def _give_back(session: Session, part: Any, now: datetime) -> None:
    """``part``: an allocation_device row (device_id, exclusive and the amounts)."""
    if part.exclusive:
        values: dict[str, Any] = {
            # A device an operator forced into maintenance stays there.
            "status": case((DeviceRow.status == "allocated", "available"), else_=DeviceRow.status),
            "free_cpu": DeviceRow.total_cpu,
            "free_memory_mb": DeviceRow.total_memory_mb,
            "free_storage_gb": DeviceRow.total_storage_gb,
            "free_gpus": DeviceRow.total_gpus,
        }
    else:
        values = {
            "free_cpu": DeviceRow.free_cpu + part.cpu,
            "free_memory_mb": DeviceRow.free_memory_mb + part.memory_mb,
            "free_storage_gb": DeviceRow.free_storage_gb + part.storage_gb,
            "free_gpus": DeviceRow.free_gpus + part.gpus,
        }
    session.execute(
        update(DeviceRow)
        .where(DeviceRow.id == part.device_id)
        .values(**values, generation=DeviceRow.generation + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def expire_leases(session: Session, now: datetime | None = None, limit: int = 100) -> int:
    """Release allocations whose lease ran out; returns how many. Caller commits."""
    who = Principal(name="system:lease-expiry", role=Role.PLATFORM_ADMIN)
    due = list(
        session.scalars(
            select(AllocationRow)
            .where(
                and_(
                    AllocationRow.released_at.is_(None),
                    AllocationRow.expires_at.is_not(None),
                    AllocationRow.expires_at <= (now or utcnow()),
                )
            )
            .limit(limit)
        )
    )
    return sum(free_allocation(session, who, allocation, "expire") for allocation in due)
