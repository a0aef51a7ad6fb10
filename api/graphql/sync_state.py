"""syncState: how the NetBox sync is doing, for portals and dashboards."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db.base import utcnow
from api.db.models import SyncState as SyncStateRow
from api.graphql.common import AUTH
from api.graphql.context import Context

# What a tenant's token reads instead of the sync's own error text, which names whichever
# item failed, of any tenant.
TENANT_ERROR = "the last sync failed; platform staff can see why"


@strawberry.type(
    description=(
        "The NetBox sync's state: last success and error, lag, leader. A tenant's token "
        "sees when it last succeeded or failed, not the worker, error text or summary."
    )
)
class SyncState:
    source: str
    leader: str | None = strawberry.field(description="The worker holding the lease, if any.")
    lease_until: datetime | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None = strawberry.field(
        description="The last failure's message (kept after later successes; compare times)."
    )
    last_error_at: datetime | None
    lag_seconds: float | None = strawberry.field(
        description="Seconds since the last successful sync; null if there was none."
    )
    last_summary: JSON | None = strawberry.field(
        description="What the last successful sync did: {create, update, retire, flag, notes}."
    )


@strawberry.type
class SyncStateQuery:
    @strawberry.field(permission_classes=AUTH, description="null until a sync has run.")
    def sync_state(
        self,
        info: Info[Context, None],
        # "source" as a Python name would clash with strawberry's resolver arguments.
        source_name: Annotated[str, strawberry.argument(name="source")] = "netbox",
    ) -> SyncState | None:
        row = info.context.session.get(SyncStateRow, source_name)
        if row is None:
            return None
        lag = (utcnow() - row.last_success_at).total_seconds() if row.last_success_at else None
        staff = info.context.who().sees_platform_operations
        error = row.last_error if staff or row.last_error is None else TENANT_ERROR
        return SyncState(
            source=row.source,
            leader=row.leader if staff else None,
            lease_until=row.lease_until,
            last_attempt_at=row.last_attempt_at,
            last_success_at=row.last_success_at,
            last_error=error,
            last_error_at=row.last_error_at,
            lag_seconds=lag,
            last_summary=row.last_summary if staff else None,
        )
