"""How a sync source is doing, as a caller may read it: the sync's own error text and
summary name items of any tenant, so a tenant's caller reads when it last succeeded or
failed, not why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from api.db.base import utcnow
from api.db.models import SyncStateRow
from api.domain.access import Principal

# What a tenant's token reads instead of the sync's own error text.
TENANT_ERROR = "the last sync failed; platform staff can see why"


@dataclass(frozen=True)
class SyncStateView:
    source: str
    leader: str | None
    lease_until: datetime | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    lag_seconds: float | None
    last_summary: dict[str, Any] | None


def sync_state(session: Session, who: Principal, source: str) -> SyncStateView | None:
    """None until the source has synced once."""
    row = session.get(SyncStateRow, source)
    if row is None:
        return None
    staff = who.sees_platform_operations
    lag = (utcnow() - row.last_success_at).total_seconds() if row.last_success_at else None
    return SyncStateView(
        source=row.source,
        leader=row.leader if staff else None,
        lease_until=row.lease_until,
        last_attempt_at=row.last_attempt_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error if staff or row.last_error is None else TENANT_ERROR,
        last_error_at=row.last_error_at,
        lag_seconds=lag,
        last_summary=row.last_summary if staff else None,
    )
