"""matchDevice, releaseAllocation and allocations in GraphQL (DESIGN.md fixed contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import allocation as allocation_db
from api.db import allocation_query
from api.db import release as release_db
from api.db.allocation_request import MatchInput
from api.db.models import AllocationRow
from api.db.session import lost_races_as_domain_errors
from api.domain.errors import INTERNAL_SERVER_ERROR, DomainError
from api.domain.matching.profile import InventoryType as DomainInventoryType
from api.domain.preemption import AllocationState as DomainAllocationState
from api.domain.preemption import allocation_state
from api.graphql.common import AUTH, Connection, connection, page_size
from api.graphql.context import Context
from api.graphql.profile import InventoryType
from api.metrics import MATCH_OUTCOMES


@strawberry.type(description="One step of the funnel: how many items entered, how many left.")
class ExplanationStep:
    filter: str
    entered: int
    left: int
    note: str | None


@strawberry.type(description="Why these devices (or why none): the funnel of every answer.")
class Explanation:
    steps: list[ExplanationStep]
    unused_variables: list[str]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Explanation:
        return cls(
            steps=[ExplanationStep(**s) for s in raw["steps"]],
            unused_variables=list(raw.get("unusedVariables", [])),
        )


@strawberry.type(description="A device an allocation holds, whole or as a slice.")
class AllocatedDevice:
    device_id: strawberry.ID
    hostname: str
    exclusive: bool
    cpu: int
    memory_mb: int = strawberry.field(name="memoryMB")
    storage_gb: int = strawberry.field(name="storageGB")
    gpus: int


# A plain alias for annotations; strawberry.enum registers it in place (see profile.py).
AllocationState = DomainAllocationState
strawberry.enum(
    AllocationState, name="AllocationState", description="Where an allocation is in its life."
)


@strawberry.type
class Allocation:
    id: strawberry.ID
    environment: str
    inventory_type: InventoryType
    profile: str | None
    variables: JSON
    device_details: JSON
    created_at: datetime
    expires_at: datetime | None
    released_at: datetime | None
    released_by: str | None
    preemptible: bool
    borrowed: bool = strawberry.field(
        description="Admitted beyond its tenant's GPU quota: its GPUs count as borrowed."
    )
    priority: int
    state: AllocationState = strawberry.field(
        description="ACTIVE; PREEMPTING (released at preemptAt for a queued request of higher "
        "priority, or reclaiming borrowed GPUs); RELEASED; PREEMPTED."
    )
    preempt_at: datetime | None = strawberry.field(
        description="When a PREEMPTING allocation is released: plan to be done by then."
    )
    _row: strawberry.Private[AllocationRow]

    @strawberry.field
    def tenant(self, info: Info[Context, None]) -> str | None:
        return info.context.directory.tenant(self._row.tenant_id)

    @strawberry.field
    def project(self, info: Info[Context, None]) -> str | None:
        return info.context.directory.project_slug(self._row.project_id)

    @strawberry.field
    def explanation(self) -> Explanation:
        return Explanation.from_dict(self._row.explanation)

    @strawberry.field
    async def devices(self, info: Info[Context, None]) -> list[AllocatedDevice]:
        parts = await info.context.loader("allocation_devices").load(self._row.id)
        return [
            AllocatedDevice(
                device_id=strawberry.ID(p.device_id),
                hostname=p.hostname,
                exclusive=p.exclusive,
                cpu=p.cpu,
                memory_mb=p.memory_mb,
                storage_gb=p.storage_gb,
                gpus=p.gpus,
            )
            for p in parts
        ]

    @classmethod
    def from_row(cls, row: AllocationRow) -> Allocation:
        return cls(
            id=strawberry.ID(row.id),
            environment=row.environment,
            inventory_type=DomainInventoryType(row.inventory_type),
            profile=row.profile,
            variables=JSON(row.variables),
            device_details=row.device_details,
            created_at=row.created_at,
            expires_at=row.expires_at,
            released_at=row.released_at,
            released_by=row.released_by,
            preemptible=row.preemptible,
            borrowed=row.borrowed,
            priority=row.priority,
            state=allocation_state(row.released_at, row.released_by, row.preempt_at),
            preempt_at=row.preempt_at,
            _row=row,
        )


@strawberry.input(
    description="environment is the idempotency key; give profile or labels, not both."
)
class MatchDeviceInput:
    environment: str
    profile: str | None = None
    labels: JSON | None = None
    variables: JSON
    dry_run: bool = False
    tenant: str | None = None
    project: str | None = None
    ttl_seconds: int | None = strawberry.field(
        default=None,
        description=(
            "Lease: the service releases the allocation this many seconds after it was made."
        ),
    )
    preemptible: bool | None = strawberry.field(
        default=False,
        description="Beyond the tenant's GPU quota, admitted on idle capacity as borrowed "
        "GPUs; within it, marks the allocation as willing to be preempted.",
    )
    priority: int | None = strawberry.field(
        default=0, description="Higher goes first in the queue of provision requests."
    )


@strawberry.type
class MatchResult:
    allocation: Allocation | None
    device_details: JSON
    explanation: Explanation
    claim_attempts: int = strawberry.field(
        description="1 unless the claim lost a race and was retried; 0 for a replay."
    )


@strawberry.input
class AllocationFilter:
    environment: str | None = None
    active: bool | None = None
    tenant: str | None = None
    inventory_type: InventoryType | None = None
    state: AllocationState | None = None


@strawberry.type
class AllocationQuery:
    @strawberry.field(permission_classes=AUTH, description="Newest first.")
    def allocations(
        self,
        info: Info[Context, None],
        filter: AllocationFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Allocation]:
        flt = filter or AllocationFilter()
        spec = allocation_query.AllocationFilter(
            environment=flt.environment,
            active=flt.active,
            tenant=flt.tenant,
            inventory_type=flt.inventory_type.value if flt.inventory_type else None,
            state=flt.state,
        )
        ctx = info.context
        page = allocation_query.list_allocations(
            ctx.session, ctx.who(), spec, page_size(info, first), after
        )
        return connection(page, Allocation.from_row)


@strawberry.type(description="What one tenant's active allocations hold.")
class TenantAllocations:
    tenant: str | None = strawberry.field(description="Tenant slug; null: platform-wide.")
    allocations: int
    devices: int = strawberry.field(description="Devices held, whole or in part.")
    gpus: int


@strawberry.type
class AllocationTotalsQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="Active allocations per tenant (most GPUs first). A tenant's token sees "
        "its own line.",
    )
    def allocation_totals(self, info: Info[Context, None]) -> list[TenantAllocations]:
        ctx = info.context
        rows = allocation_query.totals_by_tenant(ctx.session, ctx.who())
        found = [
            TenantAllocations(
                tenant=ctx.directory.tenant(r.tenant_id),
                allocations=r.allocations,
                devices=r.devices,
                gpus=r.gpus,
            )
            for r in rows
        ]
        return sorted(found, key=lambda t: (-t.gpus, t.tenant or ""))


@strawberry.type
class AllocationMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description=(
            "Select devices for an environment and allocate them atomically (or, with dryRun, "
            "only select). The same environment and request returns the same allocation; a "
            "different request is ENVIRONMENT_IN_USE; no fit is NO_MATCH with the funnel in "
            "extensions.explanation."
        ),
    )
    def match_device(self, info: Info[Context, None], input: MatchDeviceInput) -> MatchResult:
        ctx = info.context
        given = MatchInput(
            environment=input.environment,
            variables=input.variables,
            profile=input.profile,
            labels=input.labels,
            dry_run=input.dry_run,
            tenant=input.tenant,
            project=input.project,
            ttl_seconds=input.ttl_seconds,
            preemptible=bool(input.preemptible),  # null as the default, false
            priority=input.priority or 0,
        )
        # match_device owns its transactions (one per attempt; a lost claim tries again in
        # another), so it takes the pool, not the request's session.
        try:
            with lost_races_as_domain_errors():
                result = allocation_db.match_device(ctx.engine, ctx.who(), ctx.live_index, given)
        except DomainError as exc:
            MATCH_OUTCOMES.labels(exc.code).inc()
            raise
        except Exception:
            MATCH_OUTCOMES.labels(INTERNAL_SERVER_ERROR).inc()
            raise
        MATCH_OUTCOMES.labels(
            "DRY_RUN" if input.dry_run else "REPLAYED" if result.replayed else "ALLOCATED"
        ).inc()
        if result.allocation is not None and result.devices is not None:
            ctx.loader("allocation_devices").prime(result.allocation.id, result.devices)
        return MatchResult(
            allocation=Allocation.from_row(result.allocation) if result.allocation else None,
            device_details=result.device_details,
            explanation=Explanation.from_dict(result.explanation),
            claim_attempts=result.attempts,
        )

    @strawberry.mutation(
        permission_classes=AUTH,
        description=(
            "Free everything the environment's allocation holds. Returns the released "
            "allocation (also on a second call), or null if it never held one."
        ),
    )
    def release_allocation(
        self, info: Info[Context, None], environment: str, tenant: str | None = None
    ) -> Allocation | None:
        with info.context.write() as session:
            row = release_db.release(session, info.context.who(), environment, tenant)
        return Allocation.from_row(row) if row is not None else None
