"""Preemption (DESIGN.md "Priority, preemption, provision requests"), the service's side:
which preemptible allocations stand in a queued request's way (api/domain/preemption.py
chooses), marking them PREEMPTING with their owners told, and at the end of the grace
period releasing them and claiming for the request in one transaction, so the devices go
to the request that preempted them and to nobody who asks first.

These own their transactions, so they take the sessionmaker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.db import audit, claim, events
from api.db import provision_request as requests_db
from api.db import quota as quota_db
from api.db.allocation import within_reach
from api.db.allocation_plan import plan_claim
from api.db.allocation_request import MatchInput, resolve_request
from api.db.candidates import LiveIndex
from api.db.models import AllocationDeviceRow, AllocationRow, ProvisionRequestRow
from api.db.release import free_allocation
from api.db.request_claim import QUEUE, match_input, requester
from api.db.session import begin, engine_of, rowcount, session_on, unit_of_work
from api.domain.access import Principal, Role
from api.domain.errors import DomainError
from api.domain.events import ALLOCATION_PREEMPTING, allocation_data
from api.domain.matching.engine import match
from api.domain.matching.index import Capacity
from api.domain.preemption import PREEMPTED_BY, Held, Victim, choose_victims, freed, may_evict
from api.domain.provision_request import WAITING, RequestState
from api.domain.quota import QuotaStep, Usage, first_exceeded, usage_of

log = logging.getLogger("gpuinv.requests")

PREEMPTION = Principal(name=PREEMPTED_BY, role=Role.PLATFORM_ADMIN)


def has_victims(sessions: sessionmaker[Session], request_id: str) -> bool:
    with sessions() as session:
        return (
            session.scalar(
                select(AllocationRow.id)
                .where(
                    AllocationRow.preempted_for == request_id, AllocationRow.released_at.is_(None)
                )
                .limit(1)
            )
            is not None
        )


def victims_of(session: Session | Connection) -> list[Victim]:
    """Active preemptible allocations not already being preempted, with what they hold."""
    query = select(
        AllocationRow.id, AllocationRow.priority, AllocationRow.borrowed, AllocationRow.created_at
    ).where(
        AllocationRow.released_at.is_(None),
        AllocationRow.preemptible.is_(True),
        AllocationRow.preempt_at.is_(None),
    )
    return _with_holds(session, list(session.execute(query)))


def _with_holds(session: Session | Connection, allocations: Sequence[Any]) -> list[Victim]:
    """``allocations`` (rows with id, priority, borrowed, created_at) as Victims, with the
    device parts each holds."""
    if not allocations:
        return []
    holds: dict[str, list[Held]] = {}
    parts = session.execute(
        select(AllocationDeviceRow.__table__).where(
            AllocationDeviceRow.allocation_id.in_([a.id for a in allocations]),
            AllocationDeviceRow.active.is_(True),
        )
    )
    for p in parts:
        holds.setdefault(p.allocation_id, []).append(
            Held(p.device_id, p.exclusive, Capacity(p.cpu, p.memory_mb, p.storage_gb, p.gpus))
        )
    return [
        Victim(a.id, a.priority, a.borrowed, a.created_at, tuple(holds.get(a.id, ())))
        for a in allocations
    ]


def plan_preemption(
    sessions: sessionmaker[Session], live: LiveIndex, row: ProvisionRequestRow, at: datetime
) -> list[str]:
    """Mark the fewest preemptible allocations whose eviction lets ``row`` fit, and tell
    their owners; the victims' ids, or [] when none would do."""
    engine = engine_of(sessions)
    with engine.connect() as connection:
        with session_on(connection) as session:
            given = match_input(session, row)
        resolved = resolve_request(connection, requester(row), given)
        limits = (
            quota_db.limits_for(connection, resolved.tenant_id, resolved.project_id)
            if resolved.tenant_id
            else ()
        )
        # Borrowed capacity is reclaimed only by a request within its own quota: its GPUs
        # under its tenant's and project's limits as they stand.
        within_quota = first_exceeded(limits, Usage(gpus=row.gpus)) is None
        candidates = [v for v in victims_of(connection) if may_evict(v, row.priority, within_quota)]
        if not candidates:
            return []
        with live.reading(connection) as index:
            plan = choose_victims(
                resolved.request,
                index,
                candidates,
                within=within_reach(index, resolved),
                quota=QuotaStep(limits) if limits else None,
            )
        connection.rollback()
    if plan is None or not plan.victims:
        return []
    ids = [v.allocation_id for v in plan.victims]
    with unit_of_work(sessions) as session:
        if requests_db.lock_waiting(session, row.id) is None:
            return []  # cancelled or fulfilled meanwhile: nobody to preempt for
        marked = rowcount(
            session.execute(
                update(AllocationRow)
                .where(
                    AllocationRow.id.in_(ids),
                    AllocationRow.released_at.is_(None),
                    AllocationRow.preempt_at.is_(None),
                )
                .values(preempt_at=at, preempted_for=row.id)
                .execution_options(synchronize_session=False)
            )
        )
        if marked != len(ids):
            # A victim was released or marked by someone else meanwhile: plan again later.
            session.rollback()
            return []
        for victim in session.scalars(select(AllocationRow).where(AllocationRow.id.in_(ids))):
            audit.record(
                session,
                PREEMPTION,
                "preempting",
                "allocation",
                victim.id,
                victim.environment,
                victim.tenant_id,
                None,
                # Not the request's id: the victim's tenant may be another than its.
                {"preemptAt": at.isoformat()},
            )
            _tell(session, victim, ALLOCATION_PREEMPTING)
    log.info("request %s: preempting %s at %s", row.id, ", ".join(ids), at.isoformat())
    return ids


def _tell(session: Session, allocation: AllocationRow, kind: str) -> None:
    if not events.anyone_wants(session, allocation.tenant_id):
        return
    columns = {c.key: getattr(allocation, c.key) for c in AllocationRow.__table__.columns}
    parts = [
        {c.key: getattr(p, c.key) for c in AllocationDeviceRow.__table__.columns}
        for p in session.scalars(
            select(AllocationDeviceRow).where(
                AllocationDeviceRow.allocation_id == allocation.id,
                AllocationDeviceRow.active.is_(True),
            )
        )
    ]
    tenant, project = events.slugs(session, allocation.tenant_id, allocation.project_id)
    events.record(
        session,
        kind,
        allocation.id,
        allocation.tenant_id,
        allocation_data(columns, parts, tenant, project),
    )


def could_ever_fit(
    sessions: sessionmaker[Session], live: LiveIndex, row: ProvisionRequestRow
) -> bool:
    engine = engine_of(sessions)
    with engine.connect() as connection:
        with session_on(connection) as session:
            given = match_input(session, row)
        try:
            resolved = resolve_request(connection, requester(row), given)
        except DomainError:
            return False
        everyone = _with_holds(
            connection,
            list(
                connection.execute(
                    select(
                        AllocationRow.id,
                        AllocationRow.priority,
                        AllocationRow.borrowed,
                        AllocationRow.created_at,
                    ).where(AllocationRow.released_at.is_(None))
                )
            ),
        )
        with live.reading(connection) as index:
            empty = freed(index, within_reach(index, resolved), everyone)
        connection.rollback()
    return match(resolved.request, empty).matched


def carry_out_preemptions(
    sessions: sessionmaker[Session], live: LiveIndex, now: datetime
) -> list[str]:
    """Release the victims whose grace has ended and give their devices to the request
    they were preempted for, in one transaction; the released victims' ids."""
    with sessions() as session:
        due = list(
            session.scalars(
                select(AllocationRow.preempted_for)
                .where(
                    AllocationRow.released_at.is_(None),
                    AllocationRow.preempt_at.is_not(None),
                    AllocationRow.preempt_at <= now,
                )
                .distinct()
            )
        )
    released: list[str] = []
    for request_id in due:
        assert request_id is not None
        released.extend(_take_over(sessions, live, request_id, now))
    return released


def _take_over(
    sessions: sessionmaker[Session], live: LiveIndex, request_id: str, now: datetime
) -> list[str]:
    with sessions() as session:
        row = session.get(ProvisionRequestRow, request_id)
        given = match_input(session, row) if row is not None and row.state in WAITING else None
    if row is None or given is None:
        # Cancelled or fulfilled elsewhere: nothing needs the victims any more.
        with unit_of_work(sessions) as session:
            requests_db.spare_victims(session, request_id)
        return []
    # A transaction on both backends (not the claim path's autocommit connection): the
    # releases, the claim and the request's move commit together or not at all.
    with engine_of(sessions).connect() as connection:
        begin(connection, writing=True)
        try:
            victims = _release_and_claim(connection, live, row, given, now)
        except (DomainError, IntegrityError) as exc:
            log.info("request %s: preempted devices not taken (%s)", request_id, exc)
            victims = None
        if victims is None:
            if connection.in_transaction():
                connection.rollback()
            # The victims keep their devices; the request is planned afresh next round.
            with unit_of_work(sessions) as session:
                requests_db.spare_victims(session, request_id)
            return []
        connection.commit()
    log.info("request %s: fulfilled on the devices of %s", request_id, ", ".join(victims))
    return victims


def _release_and_claim(
    connection: Connection,
    live: LiveIndex,
    row: ProvisionRequestRow,
    given: MatchInput,
    now: datetime,
) -> list[str] | None:
    """In the connection's one transaction: release the victims, claim for the request on
    the index as it is once they are released, and mark the request FULFILLED, so no other
    claim can take the devices in between and a cancel cannot be missed. The victims' ids,
    or None when the request does not fit there (the caller rolls back)."""
    who = requester(row)
    resolved = resolve_request(connection, who, given)
    with session_on(connection) as session:
        current = requests_db.lock_waiting(session, row.id)
        if current is None:
            return None  # cancelled, or fulfilled elsewhere, since it was read
        victims = list(
            session.scalars(
                select(AllocationRow).where(
                    AllocationRow.preempted_for == row.id,
                    AllocationRow.released_at.is_(None),
                    AllocationRow.preempt_at <= now,
                )
            )
        )
        holds = _with_holds(session, victims)
        with live.reading(connection) as index:
            what_if = freed(index, within_reach(index, resolved), holds)
        for victim in victims:
            free_allocation(session, PREEMPTION, victim, "preempt")
        session.flush()
        limits = (
            quota_db.limits_for(connection, resolved.tenant_id, resolved.project_id)
            if resolved.tenant_id
            else ()
        )
        outcome = match(resolved.request, what_if, quota=QuotaStep(limits) if limits else None)
        if not outcome.matched:
            return None
        usage = usage_of(outcome.chosen, resolved.request) if resolved.tenant_id else None
        allocation, _, planned = plan_claim(who, given, resolved, outcome, usage, False)
        if claim.take(connection, planned) != claim.Taken.TAKEN:
            return None
        values = {
            "allocation_id": allocation.id,
            "explanation": outcome.explanation.as_dict(),
            "last_error": None,
            "attempted_at": now,
            "blocked_since": None,
        }
        requests_db.move(session, QUEUE, current, RequestState.FULFILLED, values, "fulfil")
        session.flush()
    return [v.id for v in victims]
