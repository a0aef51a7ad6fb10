"""A provision request tried as the matchDevice it stands for: as whom, with what input,
and what a try leaves on the request (FULFILLED with its allocation, or QUEUED with the
funnel and the reason of its last try).

These own their transactions (a try is a claim: match_device's), so they take the
sessionmaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import events
from api.db import provision_request as requests_db
from api.db.allocation import match_device
from api.db.allocation_request import MatchInput
from api.db.candidates import LiveIndex
from api.db.models import AllocationRow, ProvisionRequestRow
from api.db.release import free_allocation
from api.db.session import engine_of, rowcount, unit_of_work
from api.domain.access import Principal, Role
from api.domain.errors import DomainError
from api.domain.provision_request import WAITING, RequestState

QUEUE = Principal(name="system:queue", role=Role.PLATFORM_ADMIN)


@dataclass(frozen=True)
class Tried:
    fulfilled: bool  # by this try
    code: str | None = None  # why not
    settled: bool = False  # no longer waits: fulfilled by another try, or cancelled


FULFILLED_NOW, FULFILLED_BEFORE, NOT_WAITING = "now", "before", "not waiting"


def match_input(session: Session | Connection, row: ProvisionRequestRow) -> MatchInput:
    """The matchDevice a request stands for, asked for its tenant by name."""
    tenant, project = events.slugs(session, row.tenant_id, row.project_id)
    return MatchInput(
        environment=row.environment,
        variables=row.variables,
        profile=row.profile,
        labels=row.labels,
        tenant=tenant,
        project=project,
        ttl_seconds=row.ttl_seconds,
        preemptible=row.preemptible,
        priority=row.priority,
    )


def requester(row: ProvisionRequestRow) -> Principal:
    """Who a request's claim is made as: named for its requester in the audit log, and
    matching for the request's tenant by name (a platform-wide principal given the tenant
    is limited exactly like that tenant), never for anyone else."""
    return Principal(name=row.requested_by, role=Role.PLATFORM_ADMIN)


def try_fulfil(
    sessions: sessionmaker[Session], live: LiveIndex, row: ProvisionRequestRow, now: datetime
) -> Tried:
    with sessions() as session:
        given = match_input(session, row)
    try:
        result = match_device(
            engine_of(sessions), requester(row), live, given, announce_refusal=False
        )
    except DomainError as refused:
        explanation = refused.extensions.get("explanation")
        error = {"code": refused.code, "message": refused.message}
        enter_queue(sessions, row, explanation, error, now)
        return Tried(False, refused.code)
    assert result.allocation is not None  # not a dry run
    done = fulfilled(sessions, row, result.allocation.id, result.explanation, now)
    return Tried(done == FULFILLED_NOW, settled=done != FULFILLED_NOW)


def fulfilled(
    sessions: sessionmaker[Session],
    row: ProvisionRequestRow,
    allocation_id: str,
    explanation: dict[str, Any] | None,
    now: datetime,
) -> str:
    """Mark the request FULFILLED with its allocation: FULFILLED_NOW. Another try may have
    got there first (an approval's try at once beside a round, two replicas' rounds):
    matchDevice then answered this try with that try's allocation (one per environment),
    and there is nothing to do: FULFILLED_BEFORE. If the request was cancelled meanwhile,
    the cancel wins: the allocation made for it is released: NOT_WAITING."""
    with unit_of_work(sessions) as session:
        current = requests_db.lock_waiting(session, row.id)
        if current is not None:
            values = {
                "allocation_id": allocation_id,
                "explanation": explanation,
                "last_error": None,
                "attempted_at": now,
                "blocked_since": None,
            }
            requests_db.move(session, QUEUE, current, RequestState.FULFILLED, values, "fulfil")
            requests_db.spare_victims(session, row.id)
            return FULFILLED_NOW
        settled = session.get(ProvisionRequestRow, row.id)
        if settled is not None and settled.allocation_id == allocation_id:
            return FULFILLED_BEFORE
        allocation = session.get(AllocationRow, allocation_id)
        if allocation is not None and allocation.released_at is None:
            free_allocation(session, QUEUE, allocation, "cancel")
        return NOT_WAITING


def enter_queue(
    sessions: sessionmaker[Session],
    row: ProvisionRequestRow,
    explanation: dict[str, Any] | None,
    error: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Record a try that did not fulfil, if the request still waits (another try may have
    fulfilled it, or someone cancelled it, since); an APPROVED request becomes QUEUED."""
    # updated_at kept: a try that changes nothing else is no news to the queue's worker,
    # which serves a round when requests move (api/queue_worker.signature).
    attempt = {
        "explanation": explanation,
        "last_error": error,
        "attempted_at": now,
        "updated_at": ProvisionRequestRow.updated_at,
    }
    try:
        with unit_of_work(sessions) as session:
            recorded = session.execute(
                update(ProvisionRequestRow)
                .where(ProvisionRequestRow.id == row.id, ProvisionRequestRow.state.in_(WAITING))
                .values(**attempt)
                .execution_options(synchronize_session=False)
            )
            current = session.get(ProvisionRequestRow, row.id)
            if rowcount(recorded) == 1 and current and current.state == RequestState.APPROVED:
                requests_db.move(session, QUEUE, current, RequestState.QUEUED, {}, "queue")
    except DomainError:
        pass  # moved meanwhile (fulfilled by another try, cancelled): nothing to record
