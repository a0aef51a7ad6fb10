"""matchDevice: select in memory, claim in one short transaction.

The engine chooses from the process's index, which may be a moment stale. The database
decides: every claim is a conditional UPDATE (``… WHERE status = 'available' AND free_gpus
>= :gpus …``) that matches no row when someone else got there first, and CHECK constraints
and partial unique indexes refuse what no UPDATE should ever do. A lost claim leaves
nothing behind (one statement that changed nothing, or a transaction rolled back) and
chooses again (the index catches up with the winner's change through the feed), so our
own uncommitted claim is never counted twice (DESIGN.md "Invariants").

Beside this module: the request checked and resolved (allocation_request.py), the rows a
claim writes (allocation_plan.py), the claim's statements (claim.py, claim_counters.py),
the reads (allocation_query.py), and releases (release.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db import claim, events
from api.db.allocation_plan import chosen_documents, device_details, plan_claim
from api.db.allocation_request import (
    MatchInput,
    Resolved,
    resolve_request,
)
from api.db.candidates import LiveIndex
from api.db.models import AllocationDeviceRow, AllocationRow
from api.db.session import session_on
from api.domain.access import Principal, Role
from api.domain.errors import (
    CONCURRENT_UPDATE,
    ENVIRONMENT_IN_USE,
    FORBIDDEN,
    NO_MATCH,
    QUOTA_EXCEEDED,
    DomainError,
)
from api.domain.events import QUOTA_EXCEEDED as QUOTA_EXCEEDED_EVENT
from api.domain.matching.engine import Explanation, Outcome, match
from api.domain.matching.index import ABSENT, CandidateIndex, Mask
from api.domain.matching.request import normalise
from api.domain.quota import GPUS, Limit, QuotaStep, Usage, quota_exceeded, usage_of

log = logging.getLogger("gpuinv.allocation")

# Replicas given the same request choose the same smallest device, so under load a claim
# may lose a few races in a row before it finds a free one.
MAX_CLAIM_ATTEMPTS = 16


@dataclass
class MatchResult:
    allocation: AllocationRow | None
    device_details: Any
    explanation: dict[str, Any]
    attempts: int = 1
    replayed: bool = False
    devices: list[AllocationDeviceRow] | None = None  # what the allocation holds, when known


def require_provisioning(who: Principal) -> None:
    if who.role == Role.VIEWER:
        raise DomainError(FORBIDDEN, "role 'viewer' may not allocate or release devices")


def active_allocation(session: Session, scope: str, environment: str) -> AllocationRow | None:
    return session.scalar(
        select(AllocationRow).where(
            AllocationRow.scope == scope,
            AllocationRow.environment == environment,
            AllocationRow.released_at.is_(None),
        )
    )


def _active_allocation(
    connection: Connection, scope: str, environment: str
) -> AllocationRow | None:
    with session_on(connection) as session:
        return active_allocation(session, scope, environment)


def _replay(existing: AllocationRow, resolved: Resolved) -> MatchResult:
    if existing.request_hash != resolved.request_hash:
        raise DomainError(
            ENVIRONMENT_IN_USE,
            f"environment {existing.environment!r} already "
            f"holds allocation {existing.id} made with a different request; "
            "release it first, or use another environment",
            {"allocationId": existing.id},
        )
    return MatchResult(existing, existing.device_details, existing.explanation, 0, True)


def match_device(
    engine: Engine,
    who: Principal,
    live: LiveIndex,
    given: MatchInput,
    announce_refusal: bool = True,
) -> MatchResult:
    """Select and (unless a dry run) allocate, atomically.

    Owns its transactions, so it takes the pool rather than a session: each attempt
    catches the index up, matches, and claims (api/db/claim.py: on PostgreSQL one
    statement, on SQLite one transaction), with the fewest round trips a claim can take.
    ``announce_refusal``: send io.gpuinv.quota.exceeded when a quota refuses the claim;
    the queue, which retries a request round after round, tells of it once itself.
    """
    require_provisioning(who)
    resolved: Resolved | None = None
    attempts = 0
    with claim.connect(engine) as connection:
        while True:
            attempts += 1
            claim.begin_attempt(connection, writing=not given.dry_run)
            try:
                resolved = resolved or resolve_request(connection, who, given)
                answer = _attempt(connection, who, live, given, resolved, attempts)
            except DomainError as refused:
                if connection.in_transaction():
                    connection.rollback()
                if (
                    refused.code == QUOTA_EXCEEDED
                    and announce_refusal
                    and not given.dry_run
                    and resolved
                ):
                    _announce_refusal(engine, given, resolved, refused)
                raise
            finally:
                if connection.in_transaction():
                    connection.rollback()  # a dry run, a refusal, or a lost claim
            if isinstance(answer, MatchResult):
                return answer
            # The winner's change is committed, so the feed shows it to the index at the
            # top of the next attempt.
            log.info("claim lost on %s (attempt %d)", answer, attempts)
            if attempts >= MAX_CLAIM_ATTEMPTS:
                raise DomainError(
                    CONCURRENT_UPDATE,
                    f"lost {attempts} claim races in a row: the fleet is under heavy "
                    "contention; retry",
                    {"attempts": attempts},
                )


def _announce_refusal(
    engine: Engine, given: MatchInput, resolved: Resolved, refused: DomainError
) -> None:
    """io.gpuinv.quota.exceeded, in a transaction of its own: the claim's rolled back.
    Its subject is the tenant's id (no allocation was made)."""
    assert resolved.tenant_id is not None  # only a tenant's claim has quotas
    data = {
        "environment": given.environment,
        "tenant": resolved.tenant_slug,
        "project": given.project,
        "quota": refused.extensions.get("quota"),
        "explanation": refused.extensions.get("explanation"),
    }
    tenant_id = resolved.tenant_id
    with engine.connect() as connection:
        claim.begin_attempt(connection, writing=True)  # SQLite: BEGIN IMMEDIATE
        events.record(connection, QUOTA_EXCEEDED_EVENT, tenant_id, tenant_id, data)
        connection.commit()


def _attempt(
    connection: Connection,
    who: Principal,
    live: LiveIndex,
    given: MatchInput,
    resolved: Resolved,
    attempts: int,
) -> MatchResult | list[str]:
    """One attempt on the connection: the answer, or the devices lost to another
    request (or to a quota's limit reached meanwhile: the next attempt reads it anew)."""
    limits: tuple[Limit, ...] = ()
    fresh = True
    if resolved.tenant_id is not None:  # a platform-wide match is not limited
        # A dry run (no claim checks its answer) and a retry (a lost device, or a limit
        # the database said this claim would pass) read the limits afresh.
        limits, fresh = live.quota_limits.limits(
            connection,
            resolved.tenant_id,
            resolved.project_id,
            fresh=given.dry_run or attempts > 1,
        )
    with live.reading(connection) as current:
        being_claimed = live.being_claimed()
        outcome, borrowing = _within_quota(resolved, current, being_claimed, limits, given)
        if limits and not fresh and (not outcome.matched or borrowing):
            # Refused, or borrowing, on what was read a moment ago (usage since released,
            # a limit since raised or lifted): decide on what holds now.
            assert resolved.tenant_id is not None
            limits, _ = live.quota_limits.limits(
                connection, resolved.tenant_id, resolved.project_id, fresh=True
            )
            outcome, borrowing = _within_quota(resolved, current, being_claimed, limits, given)
        chosen = [c.id for c in outcome.chosen]
        claiming = outcome.matched and not given.dry_run
        if claiming:
            live.claim_started(chosen)
    if not outcome.matched:
        # No look for the environment's allocation before matching: a repeated request is
        # rare, and the partial unique index refuses its second allocation (the
        # IntegrityError in _claim_and_record). Here, a repeated request may find its own
        # devices taken: by its first allocation.
        if not given.dry_run:
            existing = _active_allocation(connection, resolved.scope, given.environment)
            if existing is not None:
                return _replay(existing, resolved)
        if outcome.over_quota is not None:
            raise quota_exceeded(outcome.over_quota, outcome.explanation.as_dict())
        raise _no_match(outcome.explanation)
    if given.dry_run:
        return MatchResult(
            None,
            device_details(resolved, chosen_documents(outcome, allocated=False)),
            outcome.explanation.as_dict(),
            attempts,
        )
    usage = usage_of(outcome.chosen, resolved.request) if resolved.tenant_id else None
    try:
        return _claim_and_record(
            connection, who, given, resolved, outcome, attempts, usage, borrowing
        )
    finally:
        live.claim_ended(chosen)  # committed (the feed shows it) or given up


def _claim_and_record(
    connection: Connection,
    who: Principal,
    given: MatchInput,
    resolved: Resolved,
    outcome: Outcome,
    attempts: int,
    usage: Usage | None,
    borrowed: bool,
) -> MatchResult | list[str]:
    """Claim, record and commit: the allocation (or, for a repeated request, its first
    one), or the devices lost to another request (the caller then rolls back)."""
    allocation, devices, planned = plan_claim(who, given, resolved, outcome, usage, borrowed)
    try:
        taken = claim.take(connection, planned)
        if taken != claim.Taken.TAKEN:
            # Lost a device, or a quota filled meanwhile (by claims the limits read at the
            # top of this attempt did not count yet): the next attempt sees both.
            return planned.device_ids
        connection.commit()
    except IntegrityError:
        # This environment holds an allocation already (a repeated request, or another
        # made at the same instant), or another request took a device.
        connection.rollback()
        existing = _active_allocation(connection, resolved.scope, given.environment)
        if existing is not None:
            return _replay(existing, resolved)
        return planned.device_ids
    return MatchResult(
        allocation, allocation.device_details, allocation.explanation, attempts, devices=devices
    )


def _within_quota(
    resolved: Resolved,
    index: CandidateIndex,
    being_claimed: frozenset[str],
    limits: tuple[Limit, ...],
    given: MatchInput,
) -> tuple[Outcome, bool]:
    """The match under the caller's quotas, and whether it borrows: a preemptible claim
    refused by a GPU limit is admitted on idle capacity, its GPUs counted as borrowed
    (DESIGN.md "Borrowing"); a node limit is never borrowed past."""
    outcome = _choose(resolved, index, being_claimed, QuotaStep(limits) if limits else None)
    over = outcome.over_quota
    if outcome.matched or not given.preemptible or over is None or over.resource != GPUS:
        return outcome, False
    borrowed = _choose(resolved, index, being_claimed, QuotaStep(limits, borrowing=True))
    if borrowed.matched:
        return borrowed, True
    # Refused by a limit borrowing cannot pass (nodes): that one is reported.
    return (borrowed if borrowed.over_quota is not None else outcome), False


def _choose(
    resolved: Resolved,
    index: CandidateIndex,
    being_claimed: frozenset[str],
    quota: QuotaStep | None,
) -> Outcome:
    """The match, leaving alone what other requests of this process are claiming now; if
    that leaves nothing, the match over all (their claims may yet fail: the database
    decides, as between processes)."""
    within = within_reach(index, resolved)
    if being_claimed:
        free = ~index.having(being_claimed)
        outcome = match(
            resolved.request, index, within=free if within is None else within & free, quota=quota
        )
        if outcome.matched:
            return outcome
    return match(resolved.request, index, within=within, quota=quota)


def within_reach(index: CandidateIndex, resolved: Resolved) -> Mask | None:
    """What a tenant's match may take: its own machines and the platform's shared pool
    (those without a tenant: DESIGN.md "The pool"), the rule ``Principal.may_see_shared``
    states and ``scope.pooled`` applies to reads. A platform-wide match takes any."""
    if resolved.tenant_slug is None:
        return None
    return index.matching("tenant", [normalise(resolved.tenant_slug), ABSENT])


def _no_match(explanation: Explanation) -> DomainError:
    return DomainError(
        NO_MATCH, "no device fits: " + explanation.summary(), {"explanation": explanation.as_dict()}
    )
