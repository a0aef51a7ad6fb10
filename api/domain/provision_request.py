"""Provision requests (DESIGN.md "Priority, preemption, provision requests"): their states
and the moves between them, the approval policy, and the order the queue serves them in.
Pure: the rows, the queue's rounds and the claims are the service's
(api/db/provision_request.py, api/db/request_queue.py).

A request moves ``PENDING_APPROVAL → APPROVED → QUEUED → FULFILLED``, or ends
``REJECTED``, ``CANCELLED`` or ``EXPIRED``. APPROVED is the short step between a decision
(or a policy's) and the first try, and the state of a request waiting for its ``startsAt``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from api.domain.errors import BAD_INPUT, DomainError


class RequestState(StrEnum):
    PENDING_APPROVAL = "PENDING_APPROVAL"
    APPROVED = "APPROVED"
    QUEUED = "QUEUED"
    FULFILLED = "FULFILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


# Open: may still become an allocation; one open request per environment.
OPEN = (RequestState.PENDING_APPROVAL, RequestState.APPROVED, RequestState.QUEUED)
# Waiting for capacity: what the queue serves.
WAITING = (RequestState.APPROVED, RequestState.QUEUED)

MOVES: dict[RequestState, frozenset[RequestState]] = {
    RequestState.PENDING_APPROVAL: frozenset(
        {
            RequestState.APPROVED,
            RequestState.REJECTED,
            RequestState.CANCELLED,
            RequestState.EXPIRED,
        }
    ),
    RequestState.APPROVED: frozenset(
        {RequestState.QUEUED, RequestState.FULFILLED, RequestState.CANCELLED}
    ),
    RequestState.QUEUED: frozenset({RequestState.FULFILLED, RequestState.CANCELLED}),
    RequestState.FULFILLED: frozenset(),
    RequestState.REJECTED: frozenset(),
    RequestState.CANCELLED: frozenset(),
    RequestState.EXPIRED: frozenset(),
}


def check_move(request_id: str, current: RequestState, to: RequestState) -> None:
    """Refuse a move the state machine does not have, naming both states: approving a
    request twice, cancelling a fulfilled one (release its allocation instead)."""
    if to in MOVES[current]:
        return
    hint = ""
    if current == RequestState.FULFILLED and to == RequestState.CANCELLED:
        hint = "; it holds an allocation: release that instead"
    raise DomainError(
        BAD_INPUT,
        f"id: request {request_id} is {current.value}, so it cannot become {to.value}{hint}",
        {"field": "id", "state": current.value},
    )


@dataclass(frozen=True)
class ApprovalPolicy:
    """What a tenant approves without a person: requests for at most ``max_gpus`` GPUs, and
    every request of the listed projects. No policy (or an empty one): every request of a
    provisioner waits for a partner-admin or a platform admin."""

    max_gpus: int | None = None
    projects: frozenset[str] = frozenset()  # project ids

    def approves(self, gpus: int, project_id: str | None) -> bool:
        if self.max_gpus is not None and gpus <= self.max_gpus:
            return True
        return project_id is not None and project_id in self.projects


def approved_at_once(
    policy: ApprovalPolicy | None, gpus: int, project_id: str | None, requester_decides: bool
) -> bool:
    """A request needs no one's approval when its requester could approve it (an admin
    for its tenant) or the tenant's policy approves it."""
    return requester_decides or (policy is not None and policy.approves(gpus, project_id))


@dataclass(frozen=True)
class QueueEntry:
    """A waiting request as the queue orders it."""

    id: str
    priority: int
    share: float  # the fraction of its tenant's GPU quota the tenant holds now (see share)
    queued_at: datetime


def share(used_gpus: int, limit_gpus: int | None, fleet_gpus: int) -> float:
    """How much of what it may hold a tenant holds: its GPUs over its GPU limit, or over
    the fleet's GPUs when it has none (as if its quota were the whole fleet). The tenant
    with the smaller share goes first among equal priorities (Kueue's fair sharing, on one
    resource): a tenant that has had little gets served before one that has had much."""
    denominator = limit_gpus if limit_gpus is not None else fleet_gpus
    if denominator <= 0:
        return 0.0 if used_gpus <= 0 else float("inf")
    return used_gpus / denominator


def queue_order(entries: Iterable[QueueEntry]) -> list[QueueEntry]:
    """Highest priority first; among equals the smaller share; then the oldest; then id,
    so every replica orders the same queue the same way."""
    return sorted(entries, key=lambda e: (-e.priority, e.share, e.queued_at, e.id))


def holds_queue(blocked_since: datetime, now: datetime, window: timedelta) -> bool:
    """Whether a request that does not fit holds the queue (Slurm's and Kueue's backfill,
    with a limit): while it has waited less than ``window``, a later request that fits
    takes what is free; once it has waited that long, nothing of its priority or lower
    behind it is fulfilled, so capacity freed accumulates for it instead of going to a
    stream of smaller requests. (A request that would not fit even on an empty fleet
    never holds the queue: the caller asks that last, as it costs a match.)"""
    return now - blocked_since >= window


def positions(ordered: Sequence[QueueEntry]) -> dict[str, int]:
    """Each waiting request's place in the queue, from 1."""
    return {entry.id: place for place, entry in enumerate(ordered, start=1)}
