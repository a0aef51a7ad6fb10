"""Provision requests: submit, decide, cancel, read; and the tenants' approval policies.

A request is checked at submission as a matchDevice is (shape, profile, variables, whose
inventory), and matched at fulfilment by the queue (api/db/request_queue.py). Every move is
a conditional UPDATE on the state it leaves, so two deciders (two admins, an admin and the
queue, an admin and the expiry) never both move one request: the second is told the state
the first left. Each move is audited and sends its event (DESIGN.md "Events").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from api.db import audit, events
from api.db.allocation import active_allocation, require_provisioning
from api.db.allocation_request import MatchInput, resolve_request
from api.db.approval_policy import approval_policy_of
from api.db.base import utcnow
from api.db.models import (
    AllocationRow,
    ProvisionRequestRow,
)
from api.db.scope import scoped
from api.db.session import rowcount
from api.db.tenant import project_id as find_project_id
from api.db.tenant import tenant_by_slug
from api.domain.access import Principal
from api.domain.errors import (
    ENVIRONMENT_IN_USE,
    FORBIDDEN,
    DomainError,
    bad_input,
    not_found,
)
from api.domain.events import PREFIX
from api.domain.provision_request import (
    OPEN,
    WAITING,
    RequestState,
    approved_at_once,
    check_move,
)

MAX_REASON = 2000
MAX_NOTE = 2000
MAX_LISTED = 1000
POLICY = "policy"  # decided_by of a request the tenant's approval policy approved


@dataclass
class RequestInput:
    """requestDevices' input: what matchDevice takes, and why, and from when."""

    match: MatchInput
    reason: str
    starts_at: datetime | None = None


@dataclass(frozen=True)
class RequestFilter:
    state: RequestState | None = None
    tenant: str | None = None
    project: str | None = None
    environment: str | None = None
    limit: int = 100


# -- submit ----------------------------------------------------------------------------------


def submit(session: Session, who: Principal, given: RequestInput) -> ProvisionRequestRow:
    """Check the request as matchDevice would, and record it: approved at once when the
    requester could approve it or the tenant's policy does, else pending approval. The
    queue tries an approved request at its next round (or the caller at once)."""
    require_provisioning(who)
    reason = _text("reason", given.reason, MAX_REASON, required=True)
    starts_at = _aware(given.starts_at)
    resolved = resolve_request(session.connection(), who, given.match)
    environment = given.match.environment
    held = active_allocation(session, resolved.scope, environment)
    if held is not None and held.request_hash != resolved.request_hash:
        raise DomainError(
            ENVIRONMENT_IN_USE,
            f"environment {environment!r} already holds allocation {held.id}; release it "
            "first, or use another environment",
            {"allocationId": held.id},
        )
    open_request = session.scalar(
        select(ProvisionRequestRow.id).where(
            ProvisionRequestRow.scope == resolved.scope,
            ProvisionRequestRow.environment == environment,
            ProvisionRequestRow.state.in_(OPEN),
        )
    )
    if open_request is not None:
        raise DomainError(
            ENVIRONMENT_IN_USE,
            f"environment {environment!r} already has open request {open_request}; cancel "
            "it first, or use another environment",
            {"requestId": open_request},
        )
    requirements = resolved.request.requirements
    gpus = requirements.gpus * requirements.nodes
    deciding = who.may_decide_for(resolved.tenant_id)
    policy = approval_policy_of(session, resolved.tenant_id)
    at_once = approved_at_once(policy, gpus, resolved.project_id, deciding)
    now = utcnow()
    match = given.match
    row = ProvisionRequestRow(
        scope=resolved.scope,
        tenant_id=resolved.tenant_id,
        project_id=resolved.project_id,
        environment=environment,
        profile=match.profile,
        labels=match.labels,
        variables=match.variables,
        ttl_seconds=match.ttl_seconds,
        preemptible=match.preemptible,
        priority=match.priority,
        gpus=gpus,
        reason=reason,
        starts_at=starts_at,
        state=RequestState.APPROVED if at_once else RequestState.PENDING_APPROVAL,
        requested_by=who.actor,
        requested_at=now,
        decided_by=(who.actor if deciding else POLICY) if at_once else None,
        decided_at=now if at_once else None,
        queued_at=now if at_once else None,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        who,
        "submit",
        "provision_request",
        row.id,
        environment,
        row.tenant_id,
        None,
        _audited(row),
    )
    announce(session, row, "submitted")
    if at_once:
        announce(session, row, "approved")
    return row


# -- decide, cancel -----------------------------------------------------------------------------


def approve(
    session: Session, who: Principal, request_id: str, note: str | None
) -> ProvisionRequestRow:
    return _decide(session, who, request_id, note, RequestState.APPROVED)


def reject(
    session: Session, who: Principal, request_id: str, note: str | None
) -> ProvisionRequestRow:
    return _decide(session, who, request_id, note, RequestState.REJECTED)


def _decide(
    session: Session, who: Principal, request_id: str, note: str | None, to: RequestState
) -> ProvisionRequestRow:
    row = get_request(session, who, request_id)
    if not who.may_decide_for(row.tenant_id):
        raise DomainError(
            FORBIDDEN,
            f"role {who.role.value!r} may not approve or reject requests: a partner-admin "
            "of the request's tenant or a platform admin decides",
        )
    note = _text("note", note, MAX_NOTE, required=False)
    now = utcnow()
    values: dict[str, Any] = {"decided_by": who.actor, "decided_at": now, "note": note}
    if to == RequestState.APPROVED:
        values["queued_at"] = now
    return move(
        session, who, row, to, values, "approve" if to == RequestState.APPROVED else "reject"
    )


def cancel(session: Session, who: Principal, request_id: str) -> ProvisionRequestRow:
    """Withdraw an open request. Allocations marked for preemption on its behalf keep
    their devices: nothing needs them any more."""
    require_provisioning(who)
    row = get_request(session, who, request_id)
    if row.requested_by != who.actor and not who.may_decide_for(row.tenant_id):
        raise DomainError(
            FORBIDDEN, "only the requester or an admin of the request's tenant may cancel it"
        )
    moved = move(session, who, row, RequestState.CANCELLED, {}, "cancel")
    spare_victims(session, row.id)
    return moved


def move(
    session: Session,
    who: Principal,
    row: ProvisionRequestRow,
    to: RequestState,
    values: dict[str, Any],
    action: str,
) -> ProvisionRequestRow:
    """Move ``row`` to ``to`` if it is still in the state it was read in; else refuse,
    naming the state someone else moved it to first."""
    seen = RequestState(row.state)
    check_move(row.id, seen, to)
    now = utcnow()
    won = rowcount(
        session.execute(
            update(ProvisionRequestRow)
            .where(ProvisionRequestRow.id == row.id, ProvisionRequestRow.state == seen.value)
            .values(state=to.value, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(row)
    if won != 1:
        check_move(row.id, RequestState(row.state), to)  # raises unless the move is still allowed
        return move(session, who, row, to, values, action)
    audit.record(
        session,
        who,
        action,
        "provision_request",
        row.id,
        row.environment,
        row.tenant_id,
        {"state": seen.value},
        {"state": to.value, **_plain(values)},
    )
    announce(session, row, to.value.lower())
    return row


def lock_waiting(session: Session, request_id: str) -> ProvisionRequestRow | None:
    """The request, locked for this transaction (FOR UPDATE; SQLite's writer holds the
    whole database already), if it still waits for capacity. Taken first by whatever
    changes both a request and its victims (a take-over, a preemption's marking), as a
    cancel does, so the two always lock in one order and never deadlock."""
    row = session.scalar(
        select(ProvisionRequestRow)
        .where(ProvisionRequestRow.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return row if row is not None and row.state in WAITING else None


def spare_victims(session: Session | Connection, request_id: str) -> int:
    """Clear the preemption marks made for a request that no longer needs them."""
    return rowcount(
        session.execute(
            update(AllocationRow)
            .where(AllocationRow.preempted_for == request_id, AllocationRow.released_at.is_(None))
            .values(preempt_at=None, preempted_for=None)
            .execution_options(synchronize_session=False)
        )
    )


# -- read --------------------------------------------------------------------------------------


def get_request(session: Session, who: Principal, request_id: str) -> ProvisionRequestRow:
    """Another tenant's request reads as unknown, like one that does not exist."""
    row = session.scalar(
        scoped(
            select(ProvisionRequestRow).where(ProvisionRequestRow.id == request_id),
            ProvisionRequestRow.tenant_id,
            who,
        )
    )
    if row is None:
        raise not_found("provision request", request_id)
    return row


def list_requests(
    session: Session, who: Principal, given: RequestFilter
) -> Sequence[ProvisionRequestRow]:
    if not 1 <= given.limit <= MAX_LISTED:
        raise bad_input(
            f"limit: must be between 1 and {MAX_LISTED}, got {given.limit}", field="limit"
        )
    query = scoped(select(ProvisionRequestRow), ProvisionRequestRow.tenant_id, who)
    if given.state is not None:
        query = query.where(ProvisionRequestRow.state == given.state.value)
    if given.environment is not None:
        query = query.where(ProvisionRequestRow.environment == given.environment)
    if given.tenant is not None:
        tenant = tenant_by_slug(session, who, given.tenant)
        query = query.where(ProvisionRequestRow.tenant_id == tenant.id)
        if given.project is not None:
            project = find_project_id(session, tenant.id, given.project)
            if project is None:
                raise not_found("project", given.project)
            query = query.where(ProvisionRequestRow.project_id == project)
    elif given.project is not None:
        raise bad_input("project: needs a tenant (pass tenant)", field="project")
    query = query.order_by(ProvisionRequestRow.requested_at.desc(), ProvisionRequestRow.id)
    return list(session.scalars(query.limit(given.limit)))


# -- events ----------------------------------------------------------------------------------------


def announce(session: Session | Connection, row: ProvisionRequestRow, what: str) -> None:
    """io.gpuinv.request.<what>, its data the request as the API renders it."""
    if events.anyone_wants(session, row.tenant_id):
        data = request_data(session, row)
        events.record(session, PREFIX + "request." + what, row.id, row.tenant_id, data)


def request_data(session: Session | Connection, row: ProvisionRequestRow) -> dict[str, Any]:
    tenant, project = events.slugs(session, row.tenant_id, row.project_id)
    return {
        "id": row.id,
        "state": row.state,
        "environment": row.environment,
        "tenant": tenant,
        "project": project,
        "profile": row.profile,
        "priority": row.priority,
        "preemptible": row.preemptible,
        "gpus": row.gpus,
        "reason": row.reason,
        "startsAt": _iso(row.starts_at),
        "requestedBy": row.requested_by,
        "requestedAt": _iso(row.requested_at),
        "decidedBy": row.decided_by,
        "decidedAt": _iso(row.decided_at),
        "note": row.note,
        "allocationId": row.allocation_id,
        "lastError": (row.last_error or {}).get("message"),
        "lastErrorCode": (row.last_error or {}).get("code"),
    }


# -- helpers ---------------------------------------------------------------------------------------


def _text(field: str, value: str | None, most: int, required: bool) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise bad_input(f"{field}: is required (1 to {most} characters)", field=field)
    if len(text) > most:
        raise bad_input(f"{field}: at most {most} characters, got {len(text)}", field=field)
    return text or None


def _aware(value: datetime | None) -> datetime | None:
    """In UTC, as every time is stored (the API has checked it has an offset)."""
    return None if value is None else value.astimezone(UTC)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in values.items()}


def _audited(row: ProvisionRequestRow) -> dict[str, Any]:
    return {
        "state": row.state,
        "environment": row.environment,
        "priority": row.priority,
        "preemptible": row.preemptible,
        "gpus": row.gpus,
        "reason": row.reason,
        "startsAt": _iso(row.starts_at),
    }
