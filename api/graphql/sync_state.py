"""syncState: how the NetBox sync is doing, for portals and dashboards."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import sync_state as sync_state_db
from api.graphql.common import AUTH
from api.graphql.context import Context


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
        view = sync_state_db.sync_state(info.context.session, info.context.who(), source_name)
        return None if view is None else SyncState(**vars(view))
