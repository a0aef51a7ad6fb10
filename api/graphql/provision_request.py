"""Provision requests in GraphQL (DESIGN.md "Priority, preemption, provision requests"):
requestDevices, approveRequest, rejectRequest, cancelRequest, provisionRequests, and the
tenants' approval policies."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import approval_policy as policy_db
from api.db import provision_request as requests_db
from api.db import request_queue
from api.db.allocation_request import MatchInput
from api.db.models import AllocationRow, ProvisionRequestRow
from api.db.session import lost_races_as_domain_errors
from api.domain.provision_request import RequestState
from api.graphql.allocation import Allocation, Explanation
from api.graphql.common import AUTH, check_time
from api.graphql.context import Context
from api.queue_worker import queue_policy

# A plain alias for annotations; strawberry.enum registers it in place (see profile.py).
ProvisionRequestState = RequestState
strawberry.enum(
    ProvisionRequestState,
    name="ProvisionRequestState",
    description="PENDING_APPROVAL → APPROVED → QUEUED → FULFILLED; or REJECTED, CANCELLED, "
    "EXPIRED.",
)


@strawberry.input(
    description="What matchDevice takes (environment is the request's key: one open "
    "request per environment), and why, and from when."
)
class ProvisionRequestInput:
    environment: str
    profile: str | None = None
    labels: JSON | None = None
    variables: JSON
    tenant: str | None = None
    project: str | None = None
    ttl_seconds: int | None = strawberry.field(
        default=None,
        description="Lease: the allocation is released this many seconds after it is made.",
    )
    preemptible: bool | None = strawberry.field(
        default=False,
        description="Beyond the tenant's GPU quota, admitted on idle capacity as borrowed "
        "GPUs; within it, willing to be preempted.",
    )
    priority: int | None = strawberry.field(
        default=0, description="Higher is served first, and may preempt lower."
    )
    reason: str = strawberry.field(description="Why: shown to whoever approves it.")
    starts_at: datetime | None = strawberry.field(
        default=None, description="Fulfil no earlier than this; null: as soon as it fits."
    )


@strawberry.input(description="Which requests to list; newest first.")
class ProvisionRequestFilter:
    state: ProvisionRequestState | None = None
    tenant: str | None = None
    project: str | None = strawberry.field(default=None, description="Needs tenant.")
    environment: str | None = None
    limit: int = strawberry.field(default=100, description="1 to 1000.")


@strawberry.type(
    description="A request for devices that may wait: for approval, for its startsAt, for capacity."
)
class ProvisionRequest:
    id: strawberry.ID
    state: ProvisionRequestState
    environment: str
    profile: str | None
    labels: JSON | None
    variables: JSON
    priority: int
    preemptible: bool
    gpus: int = strawberry.field(
        description="GPUs asked for (per node, times nodes): what approval policies judge."
    )
    reason: str
    starts_at: datetime | None
    requested_by: str
    requested_at: datetime
    decided_by: str | None = strawberry.field(
        description='Who approved or rejected it; "policy" when the tenant\'s policy approved it.'
    )
    decided_at: datetime | None
    note: str | None
    attempted_at: datetime | None = strawberry.field(description="Its last try.")
    last_error: str | None = strawberry.field(
        description="Why its last try did not fulfil it (NO_MATCH: nothing fits now; "
        "QUOTA_EXCEEDED: its quota is full; ENVIRONMENT_IN_USE: …)."
    )
    last_error_code: str | None
    updated_at: datetime
    _row: strawberry.Private[ProvisionRequestRow]

    @strawberry.field
    def tenant(self, info: Info[Context, None]) -> str | None:
        return info.context.directory.tenant(self._row.tenant_id)

    @strawberry.field
    def project(self, info: Info[Context, None]) -> str | None:
        return info.context.directory.project_slug(self._row.project_id)

    @strawberry.field(description="The allocation it was fulfilled with.")
    def allocation(self, info: Info[Context, None]) -> Allocation | None:
        if self._row.allocation_id is None:
            return None
        row = info.context.session.get(AllocationRow, self._row.allocation_id)
        return Allocation.from_row(row) if row is not None else None

    @strawberry.field(description="The funnel of its last try.")
    def explanation(self) -> Explanation | None:
        found = self._row.explanation
        return Explanation.from_dict(found) if found else None

    @strawberry.field(
        description="While it waits: its place in the queue among the requests the caller "
        "can see (a tenant: its own; platform staff: all), 1 first."
    )
    def queue_position(self, info: Info[Context, None]) -> int | None:
        if self._row.state not in (RequestState.APPROVED, RequestState.QUEUED):
            return None
        places = info.context.memo(
            "queue_positions",
            lambda: request_queue.queue_positions(info.context.session, info.context.who()),
        )
        return places.get(self._row.id)

    @classmethod
    def from_row(cls, row: ProvisionRequestRow) -> ProvisionRequest:
        error = row.last_error or {}
        return cls(
            id=strawberry.ID(row.id),
            state=RequestState(row.state),
            environment=row.environment,
            profile=row.profile,
            labels=row.labels,
            variables=JSON(row.variables),
            priority=row.priority,
            preemptible=row.preemptible,
            gpus=row.gpus,
            reason=row.reason,
            starts_at=row.starts_at,
            requested_by=row.requested_by,
            requested_at=row.requested_at,
            decided_by=row.decided_by,
            decided_at=row.decided_at,
            note=row.note,
            attempted_at=row.attempted_at,
            last_error=error.get("message"),
            last_error_code=error.get("code"),
            updated_at=row.updated_at,
            _row=row,
        )


@strawberry.input(description="Which of a tenant's requests are approved without a person.")
class ApprovalPolicyInput:
    tenant: str
    max_gpus: int | None = strawberry.field(
        default=None, description="Requests for at most this many GPUs; null: none by size."
    )
    projects: list[str] = strawberry.field(
        default_factory=list, description="Every request of these projects."
    )


@strawberry.type(description="A tenant's approval policy.")
class ApprovalPolicy:
    tenant: str
    max_gpus: int | None
    projects: list[str]

    @classmethod
    def of(cls, view: policy_db.PolicyView) -> ApprovalPolicy:
        return cls(tenant=view.tenant, max_gpus=view.max_gpus, projects=view.projects)


@strawberry.type
class ProvisionRequestQuery:
    @strawberry.field(permission_classes=AUTH, description="Provision requests, newest first.")
    def provision_requests(
        self, info: Info[Context, None], filter: ProvisionRequestFilter | None = None
    ) -> list[ProvisionRequest]:
        given = filter or ProvisionRequestFilter()
        found = requests_db.list_requests(
            info.context.session,
            info.context.who(),
            requests_db.RequestFilter(
                state=given.state,
                tenant=given.tenant,
                project=given.project,
                environment=given.environment,
                limit=given.limit,
            ),
        )
        return [ProvisionRequest.from_row(r) for r in found]

    @strawberry.field(permission_classes=AUTH)
    def provision_request(self, info: Info[Context, None], id: strawberry.ID) -> ProvisionRequest:
        ctx = info.context
        return ProvisionRequest.from_row(requests_db.get_request(ctx.session, ctx.who(), id))

    @strawberry.field(permission_classes=AUTH, description="null: the tenant has none.")
    def approval_policy(self, info: Info[Context, None], tenant: str) -> ApprovalPolicy | None:
        ctx = info.context
        view = policy_db.read_policy(ctx.session, ctx.who(), tenant)
        return ApprovalPolicy.of(view) if view is not None else None


@strawberry.type
class ProvisionRequestMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description="Ask for devices that may wait. Checked as matchDevice checks; approved "
        "at once when the requester could approve it or its tenant's policy does, else "
        "PENDING_APPROVAL. An approved request is tried at once (unless its startsAt is "
        "later, or a request that holds the queue came first) and else QUEUED.",
    )
    def request_devices(
        self, info: Info[Context, None], input: ProvisionRequestInput
    ) -> ProvisionRequest:
        ctx = info.context
        if input.starts_at is not None:
            check_time("startsAt", input.starts_at)
        given = requests_db.RequestInput(
            match=MatchInput(
                environment=input.environment,
                variables=input.variables,
                profile=input.profile,
                labels=input.labels,
                tenant=input.tenant,
                project=input.project,
                ttl_seconds=input.ttl_seconds,
                preemptible=bool(input.preemptible),
                priority=input.priority or 0,
            ),
            reason=input.reason,
            starts_at=input.starts_at,
        )
        with ctx.write() as session:
            row_id = requests_db.submit(session, ctx.who(), given).id
        return _after_decision(ctx, row_id)

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Approve a pending request (partner-admin: its tenant's; platform-admin: "
        "any); it is then tried at once, else QUEUED.",
    )
    def approve_request(
        self, info: Info[Context, None], id: strawberry.ID, note: str | None = None
    ) -> ProvisionRequest:
        ctx = info.context
        with ctx.write() as session:
            requests_db.approve(session, ctx.who(), id, note)
        return _after_decision(ctx, id)

    @strawberry.mutation(permission_classes=AUTH, description="Reject a pending request.")
    def reject_request(
        self, info: Info[Context, None], id: strawberry.ID, note: str | None = None
    ) -> ProvisionRequest:
        ctx = info.context
        with ctx.write() as session:
            row = requests_db.reject(session, ctx.who(), id, note)
        return ProvisionRequest.from_row(row)

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Withdraw an open request (the requester, or an admin of its tenant). "
        "Allocations being preempted for it keep their devices.",
    )
    def cancel_request(self, info: Info[Context, None], id: strawberry.ID) -> ProvisionRequest:
        ctx = info.context
        with ctx.write() as session:
            row = requests_db.cancel(session, ctx.who(), id)
        return ProvisionRequest.from_row(row)

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Set a tenant's approval policy (partner-admin: its own; platform-admin: any).",
    )
    def set_approval_policy(
        self, info: Info[Context, None], input: ApprovalPolicyInput
    ) -> ApprovalPolicy:
        ctx = info.context
        with ctx.write() as session:
            view = policy_db.set_policy(
                session, ctx.who(), input.tenant, input.max_gpus, input.projects
            )
        return ApprovalPolicy.of(view)


def _after_decision(ctx: Context, request_id: str) -> ProvisionRequest:
    """Try an approved request at once (api/db/request_queue.try_at_once), then answer it
    as it stands."""
    with lost_races_as_domain_errors():
        request_queue.try_at_once(
            ctx.sessions, ctx.live_index, request_id, queue_policy(ctx.settings)
        )
    ctx.start_over()  # the try committed on connections of its own: read afresh
    return ProvisionRequest.from_row(requests_db.get_request(ctx.session, ctx.who(), request_id))
