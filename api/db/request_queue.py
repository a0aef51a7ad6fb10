"""The provision request queue: fulfil waiting requests in order, preempt for them, and
hand preempted devices to the request that preempted them.

One round (run by one leader across replicas, api/queue_worker.py; or for one request at
once, ``try_at_once``):

1. Pending requests older than the approval time are EXPIRED.
2. Preemptions whose grace has ended are carried out: in one transaction the victims are
   released and the request is claimed on what they held, so nobody else can take the
   devices in between ("earmarked"). If the request no longer fits there, the victims keep
   their devices and the request is planned again.
3. The waiting requests (APPROVED and due, QUEUED) are tried in queue order
   (api/domain/provision_request.queue_order: priority, then the tenant's share of its
   quota, then age). Each try is a matchDevice as the requester: the same checks, the same
   claim, the same quotas. A request that does not fit:
   - over its quota: waits (QUEUED) and holds nothing up;
   - blocked only by preemptible allocations it may evict: they are marked PREEMPTING
     (``preempt_at`` = now + grace) and their owners told;
   - otherwise: waits; once it has waited the backfill window, it holds the queue, and
     nothing of its priority or lower behind it is tried until it is fulfilled.

Functions here own their transactions (a try is a claim: match_device's), so they take the
sessionmaker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import provision_request as requests_db
from api.db.base import utcnow
from api.db.candidates import LiveIndex
from api.db.models import DeviceRow, ProvisionRequestRow, QuotaRow
from api.db.preemption import carry_out_preemptions, could_ever_fit, has_victims, plan_preemption
from api.db.request_claim import QUEUE, enter_queue, try_fulfil
from api.db.scope import scoped
from api.db.session import unit_of_work
from api.domain.access import Principal
from api.domain.errors import NO_MATCH, QUOTA_EXCEEDED, DomainError
from api.domain.provision_request import (
    WAITING,
    QueueEntry,
    RequestState,
    holds_queue,
    positions,
    queue_order,
    share,
)
from api.domain.quota import NONE_KEY

log = logging.getLogger("gpuinv.requests")


@dataclass(frozen=True)
class QueuePolicy:
    grace: timedelta = timedelta(seconds=300)  # GPUINV_PREEMPTION_GRACE_SECONDS
    backfill_window: timedelta = timedelta(seconds=600)  # GPUINV_QUEUE_BACKFILL_SECONDS
    approval_ttl: timedelta = timedelta(days=7)  # GPUINV_REQUEST_APPROVAL_HOURS


@dataclass
class Round:
    expired: int = 0
    fulfilled: list[str] = field(default_factory=list)
    preempting: list[str] = field(default_factory=list)  # victims marked this round
    preempted: list[str] = field(default_factory=list)  # victims released this round
    waiting: int = 0


def serve(
    sessions: sessionmaker[Session], live: LiveIndex, policy: QueuePolicy, now: datetime
) -> Round:
    done = Round()
    done.expired = expire_pending(sessions, now - policy.approval_ttl)
    done.preempted = carry_out_preemptions(sessions, live, now)
    holding: int | None = None  # the priority of a request that holds the queue
    for row in ordered_waiting(sessions, now):
        if holding is not None and row.priority <= holding:
            done.waiting += 1
            continue
        outcome = try_fulfil(sessions, live, row, now)
        if outcome.fulfilled:
            done.fulfilled.append(row.id)
            continue
        if outcome.settled:
            continue  # fulfilled by another try meanwhile, or cancelled
        done.waiting += 1
        if outcome.code == QUOTA_EXCEEDED or outcome.code not in (NO_MATCH, None):
            continue  # waits on its own quota, or on its environment: holds nothing up
        if has_victims(sessions, row.id):
            continue  # its devices are on their way
        marked = plan_preemption(sessions, live, row, now + policy.grace)
        if marked:
            done.preempting.extend(marked)
            continue
        if _blocked(sessions, live, row, now, policy.backfill_window):
            holding = row.priority
    return done


def try_at_once(
    sessions: sessionmaker[Session], live: LiveIndex, request_id: str, policy: QueuePolicy
) -> None:
    """A request just approved is tried at once, unless it must wait for its startsAt or
    a request that holds the queue (of its priority or higher) was there first: the same
    rule as a round's, so matching at once never jumps the queue."""
    now = utcnow()
    with sessions() as session:
        row = session.get(ProvisionRequestRow, request_id)
        if row is None or row.state != RequestState.APPROVED:
            return
        if row.starts_at is not None and row.starts_at > now:
            return
        held_up = session.scalar(
            select(func.count())
            .select_from(ProvisionRequestRow)
            .where(
                ProvisionRequestRow.state.in_(WAITING),
                ProvisionRequestRow.id != row.id,
                ProvisionRequestRow.priority >= row.priority,
                ProvisionRequestRow.blocked_since <= now - policy.backfill_window,
            )
        )
    if held_up:
        enter_queue(sessions, row, None, None, now)
        return
    try_fulfil(sessions, live, row, now)


def expire_pending(sessions: sessionmaker[Session], before: datetime) -> int:
    with sessions() as session:
        stale = list(
            session.scalars(
                select(ProvisionRequestRow).where(
                    ProvisionRequestRow.state == RequestState.PENDING_APPROVAL,
                    ProvisionRequestRow.requested_at < before,
                )
            )
        )
    expired = 0
    for row in stale:
        try:
            with unit_of_work(sessions) as session:
                row = session.merge(row)
                requests_db.move(session, QUEUE, row, RequestState.EXPIRED, {}, "expire")
                expired += 1
        except DomainError:  # decided or cancelled meanwhile
            continue
    return expired


def ordered_waiting(sessions: sessionmaker[Session], now: datetime) -> list[ProvisionRequestRow]:
    """The waiting requests that are due, in queue order."""
    with sessions() as session:
        rows = list(
            session.scalars(
                select(ProvisionRequestRow).where(
                    ProvisionRequestRow.state.in_(WAITING),
                    (ProvisionRequestRow.starts_at.is_(None))
                    | (ProvisionRequestRow.starts_at <= now),
                )
            )
        )
        shares = tenant_shares(session)
    by_id = {r.id: r for r in rows}
    return [by_id[e.id] for e in queue_order(_entries(rows, shares))]


def tenant_shares(session: Session) -> dict[str | None, float]:
    """Each tenant's share of its GPU quota now (api/domain/provision_request.share)."""
    fleet = int(session.scalar(select(func.coalesce(func.sum(DeviceRow.total_gpus), 0))) or 0)
    rows = session.execute(
        select(QuotaRow.tenant_id, QuotaRow.used_gpus, QuotaRow.gpus, QuotaRow.enforced).where(
            QuotaRow.project_key == NONE_KEY, QuotaRow.model_key == NONE_KEY
        )
    ).all()
    return {r.tenant_id: share(r.used_gpus, r.gpus if r.enforced else None, fleet) for r in rows}


def queue_positions(session: Session, who: Principal) -> dict[str, int]:
    """Each waiting request's place among those ``who`` may see, from 1: a tenant's caller
    its own tenant's (how many of other tenants' wait ahead is theirs to know), platform
    staff all of them."""
    rows = list(
        session.execute(
            scoped(
                select(
                    ProvisionRequestRow.id,
                    ProvisionRequestRow.priority,
                    ProvisionRequestRow.tenant_id,
                    ProvisionRequestRow.queued_at,
                    ProvisionRequestRow.requested_at,
                ).where(ProvisionRequestRow.state.in_(WAITING)),
                ProvisionRequestRow.tenant_id,
                who,
            )
        )
    )
    return positions(queue_order(_entries(rows, tenant_shares(session))))


def _entries(rows: Sequence[Any], shares: dict[str | None, float]) -> list[QueueEntry]:
    """Waiting requests (rows with id, priority, tenant_id, queued_at, requested_at) as the
    queue orders them: age counts from approval, when the request entered the queue."""
    return [
        QueueEntry(r.id, r.priority, shares.get(r.tenant_id, 0.0), r.queued_at or r.requested_at)
        for r in rows
    ]


def _blocked(
    sessions: sessionmaker[Session],
    live: LiveIndex,
    row: ProvisionRequestRow,
    now: datetime,
    window: timedelta,
) -> bool:
    """Note since when ``row`` has not fitted; True if it now holds the queue: it has
    waited the backfill window, and it would fit if every allocation within its reach
    were released. One that could not starts waiting afresh (its ``blocked_since``
    cleared): it holds nothing up, and is asked again a window later (the fleet may have
    grown meanwhile)."""
    since = row.blocked_since
    if since is None:
        _note_blocked(sessions, row.id, now)
        since = now
    if not holds_queue(since, now, window):
        return False
    if could_ever_fit(sessions, live, row):
        return True
    _note_blocked(sessions, row.id, None)
    return False


def _note_blocked(sessions: sessionmaker[Session], request_id: str, since: datetime | None) -> None:
    with unit_of_work(sessions) as session:
        session.execute(
            update(ProvisionRequestRow)
            .where(ProvisionRequestRow.id == request_id)
            .values(blocked_since=since, updated_at=ProvisionRequestRow.updated_at)
            .execution_options(synchronize_session=False)
        )
