"""matchDevice and releaseAllocation: select in memory, claim in one short transaction.

The engine chooses from the process's index, which may be a moment stale. The database
decides: every claim is a conditional UPDATE (``… WHERE status = 'available' AND free_gpus
>= :gpus …``) that matches no row when someone else got there first, and CHECK constraints
and partial unique indexes refuse what no UPDATE should ever do. A lost claim leaves
nothing behind (one statement that changed nothing, or a transaction rolled back) and
chooses again (the index catches up with the winner's change through the feed), so our
own uncommitted claim is never counted twice (DESIGN.md "Invariants"). The claim's
statements are in api/db/claim.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from api.db import audit, claim
from api.db.base import new_id, utcnow
from api.db.candidates import LiveIndex
from api.db.models import Allocation, AllocationDevice, Device
from api.db.profile import saved_profile
from api.db.session import session_on
from api.db.tenant import Directory, tenant_by_slug
from api.domain.access import Principal, Role
from api.domain.errors import (
    CONCURRENT_UPDATE,
    ENVIRONMENT_IN_USE,
    FORBIDDEN,
    NO_MATCH,
    DomainError,
    bad_input,
    not_found,
)
from api.domain.matching.engine import Explanation, Outcome, match
from api.domain.matching.index import CandidateIndex, Mask
from api.domain.matching.profile import InventoryType, parse_labels
from api.domain.matching.request import Request, normalise, resolve

log = logging.getLogger("gpuinv.allocation")

# Replicas given the same request choose the same smallest device, so under load a claim
# may lose a few races in a row before it finds a free one.
MAX_CLAIM_ATTEMPTS = 16
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
PLATFORM_SCOPE = "*"  # environments of platform-wide callers live in this scope


@dataclass
class MatchInput:
    environment: str
    variables: Any
    profile: str | None = None
    labels: Any = None
    dry_run: bool = False
    tenant: str | None = None
    project: str | None = None
    ttl_seconds: int | None = None


@dataclass
class MatchResult:
    allocation: Allocation | None
    device_details: Any
    explanation: dict[str, Any]
    attempts: int = 1
    replayed: bool = False
    devices: list[AllocationDevice] | None = None  # what the allocation holds, when known


@dataclass
class _Resolved:
    request: Request
    profile_name: str | None
    tenant_id: str | None
    tenant_slug: str | None
    project_id: str | None
    scope: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def request_hash(self) -> str:
        raw = json.dumps(self.fingerprint, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(raw.encode()).hexdigest()


def require_provisioning(who: Principal) -> None:
    if who.role == Role.VIEWER:
        raise DomainError(FORBIDDEN, "role 'viewer' may not allocate or release devices")


def _resolve(connection: Connection, who: Principal, given: MatchInput) -> _Resolved:
    """Validate the input in DESIGN.md's order: input shape, profile, variables."""
    environment = (given.environment or "").strip()
    if not environment or len(environment) > 255:
        raise bad_input(
            "environment: is required (1 to 255 characters), e.g. a Terraform resource id",
            field="environment",
        )
    given.environment = environment
    if (given.profile is None) == (given.labels is None):
        raise bad_input(
            "profile, labels: give exactly one: the name of a saved profile, or inline labels",
            field="profile",
        )
    if not isinstance(given.variables, dict):
        raise bad_input("variables: must be a JSON object of name: value", field="variables")
    if given.ttl_seconds is not None and not 1 <= given.ttl_seconds <= MAX_TTL_SECONDS:
        raise bad_input(
            f"ttlSeconds: must be between 1 and {MAX_TTL_SECONDS}, got {given.ttl_seconds}",
            field="ttlSeconds",
        )
    tenant_id, tenant_slug = _tenant(connection, who, given.tenant)
    project_id = None
    if given.project is not None:
        if tenant_id is None:
            raise bad_input("project: needs a tenant (pass tenant)", field="project")
        project_id = Directory.load(connection).project_id.get((tenant_id, given.project))
        if project_id is None:
            raise not_found("project", given.project)
    if given.profile is not None:
        profile = saved_profile(connection, tenant_id, given.profile)
    else:
        profile = parse_labels(given.labels)
    request = resolve(profile, given.variables)
    resolved = _Resolved(
        request, given.profile, tenant_id, tenant_slug, project_id, tenant_id or PLATFORM_SCOPE
    )
    resolved.fingerprint = {
        "profile": profile.canonical(),
        "variables": request.fingerprint_variables(given.variables),
        "tenant": tenant_slug,
        "project": given.project,
    }
    return resolved


def _tenant(
    connection: Connection | Session, who: Principal, slug: str | None
) -> tuple[str | None, str | None]:
    """Whose inventory is matched: the named tenant, else the caller's, else all."""
    if slug is None or slug == who.tenant_slug:
        return who.tenant_id, who.tenant_slug
    if isinstance(connection, Session):
        tenant = tenant_by_slug(connection, who, slug)
    else:
        with session_on(connection) as session:
            tenant = tenant_by_slug(session, who, slug)
    return tenant.id, tenant.slug


def active_allocation(session: Session, scope: str, environment: str) -> Allocation | None:
    return session.scalar(
        select(Allocation).where(
            Allocation.scope == scope,
            Allocation.environment == environment,
            Allocation.released_at.is_(None),
        )
    )


def _active_allocation(connection: Connection, scope: str, environment: str) -> Allocation | None:
    with session_on(connection) as session:
        return active_allocation(session, scope, environment)


def _replay(existing: Allocation, resolved: _Resolved) -> MatchResult:
    if existing.request_hash != resolved.request_hash:
        raise DomainError(
            ENVIRONMENT_IN_USE,
            f"environment {existing.environment!r} already "
            f"holds allocation {existing.id} made with a different request; "
            "release it first, or use another environment",
            {"allocationId": existing.id},
        )
    return MatchResult(existing, existing.device_details, existing.explanation, 0, True)


def match_device(engine: Engine, who: Principal, live: LiveIndex, given: MatchInput) -> MatchResult:
    """Select and (unless a dry run) allocate, atomically.

    Owns its transactions, so it takes the pool rather than a session: each attempt
    catches the index up, matches, and claims (api/db/claim.py: on PostgreSQL one
    statement, on SQLite one transaction), with the fewest round trips a claim can take.
    """
    require_provisioning(who)
    resolved: _Resolved | None = None
    attempts = 0
    with claim.connect(engine) as connection:
        while True:
            attempts += 1
            claim.begin_attempt(connection, writing=not given.dry_run)
            try:
                resolved = resolved or _resolve(connection, who, given)
                answer = _attempt(connection, who, live, given, resolved, attempts)
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


def _attempt(
    connection: Connection,
    who: Principal,
    live: LiveIndex,
    given: MatchInput,
    resolved: _Resolved,
    attempts: int,
) -> MatchResult | list[str]:
    """One attempt on the connection: the answer, or the devices lost to another
    request."""
    with live.reading(connection) as current:
        outcome = _choose(resolved, current, live.being_claimed())
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
        raise _no_match(outcome.explanation)
    if given.dry_run:
        return MatchResult(
            None,
            _details(resolved, _documents(outcome, allocated=False)),
            outcome.explanation.as_dict(),
            attempts,
        )
    try:
        return _claim_and_record(connection, who, given, resolved, outcome, attempts)
    finally:
        live.claim_ended(chosen)  # committed (the feed shows it) or given up


def _claim_and_record(
    connection: Connection,
    who: Principal,
    given: MatchInput,
    resolved: _Resolved,
    outcome: Outcome,
    attempts: int,
) -> MatchResult | list[str]:
    """Claim, record and commit: the allocation (or, for a repeated request, its first
    one), or the devices lost to another request (the caller then rolls back)."""
    allocation, devices, planned = _plan(who, given, resolved, outcome)
    try:
        if not claim.take(connection, planned):
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


def _choose(resolved: _Resolved, index: CandidateIndex, being_claimed: frozenset[str]) -> Outcome:
    """The match, leaving alone what other requests of this process are claiming now; if
    that leaves nothing, the match over all (their claims may yet fail: the database
    decides, as between processes)."""
    within = _within(index, resolved)
    if being_claimed:
        free = ~index.having(being_claimed)
        outcome = match(resolved.request, index, within=free if within is None else within & free)
        if outcome.matched:
            return outcome
    return match(resolved.request, index, within=within)


def _within(index: CandidateIndex, resolved: _Resolved) -> Mask | None:
    if resolved.tenant_slug is None:
        return None
    return index.matching("tenant", [normalise(resolved.tenant_slug)])


def _no_match(explanation: Explanation) -> DomainError:
    return DomainError(
        NO_MATCH, "no device fits: " + explanation.summary(), {"explanation": explanation.as_dict()}
    )


def _slice(resolved: _Resolved) -> dict[str, int] | None:
    if resolved.request.profile.inventory_type != InventoryType.VCLUSTER:
        return None
    need = resolved.request.requirements
    return {
        "cpu": need.cpu,
        "memoryMB": need.memory_mb,
        "storageGB": need.storage_gb,
        "gpus": need.gpus,
    }


def _documents(outcome: Outcome, allocated: bool) -> list[dict[str, Any]]:
    """The chosen devices' documents from the index (caught up at the start of this
    request); a device just claimed whole reads ``allocated``."""
    return [
        dict(c.document, status="allocated") if allocated else dict(c.document)
        for c in outcome.chosen
    ]


def _details(resolved: _Resolved, documents: list[dict[str, Any]]) -> Any:
    """One document for one node, a list for several; slices carry what they took."""
    taken = _slice(resolved)
    if taken is not None:
        documents = [dict(d, slice=dict(taken)) for d in documents]
    return documents[0] if resolved.request.requirements.nodes == 1 else documents


def _plan(
    who: Principal, given: MatchInput, resolved: _Resolved, outcome: Outcome
) -> tuple[Allocation, list[AllocationDevice], claim.Claim]:
    """What the claim writes: the allocation, its devices and the audit event, as rows
    (claim.Claim), and as objects for the answer (in no session).

    ``device_details`` comes from the index's documents, caught up at the start of this
    attempt and confirmed available by the claim itself, so no re-read is needed; only the
    status the claim changes is patched in.
    """
    exclusive = resolved.request.profile.inventory_type != InventoryType.VCLUSTER
    need = resolved.request.requirements
    now = utcnow()
    allocation = Allocation(
        id=new_id(),
        environment=given.environment,
        scope=resolved.scope,
        tenant_id=resolved.tenant_id,
        project_id=resolved.project_id,
        profile=resolved.profile_name,
        inventory_type=resolved.request.profile.inventory_type.value,
        request=resolved.fingerprint,
        request_hash=resolved.request_hash,
        variables=dict(given.variables),
        device_details=_details(resolved, _documents(outcome, allocated=exclusive)),
        explanation=outcome.explanation.as_dict(),
        actor=who.actor,
        created_at=now,
        expires_at=(now + timedelta(seconds=given.ttl_seconds)) if given.ttl_seconds else None,
        released_at=None,
        released_by=None,
    )
    devices = [
        AllocationDevice(
            allocation_id=allocation.id,
            device_id=c.id,
            hostname=c.hostname,
            position=position,
            exclusive=exclusive,
            active=True,
            cpu=c.total.cpu if exclusive else need.cpu,
            memory_mb=c.total.memory_mb if exclusive else need.memory_mb,
            storage_gb=c.total.storage_gb if exclusive else need.storage_gb,
            gpus=c.total.gpus if exclusive else need.gpus,
        )
        for position, c in enumerate(outcome.chosen)
    ]
    event = audit.audit_row(
        who,
        "allocate",
        "allocation",
        allocation.id,
        allocation.environment,
        allocation.tenant_id,
        None,
        {
            "inventoryType": allocation.inventory_type,
            "profile": allocation.profile,
            "devices": [c.hostname for c in outcome.chosen],
            "variables": allocation.variables,
            "expiresAt": allocation.expires_at.isoformat() if allocation.expires_at else None,
        },
    )
    taken = None
    if not exclusive:
        taken = {
            "cpu": need.cpu,
            "memory_mb": need.memory_mb,
            "storage_gb": need.storage_gb,
            "gpus": need.gpus,
        }
    planned = claim.Claim(
        device_ids=[c.id for c in outcome.chosen],
        slice=taken,
        allocation=_columns(allocation),
        devices=[_columns(d) for d in devices],
        event=event,
        now=now,
    )
    return allocation, devices, planned


def _columns(row: Allocation | AllocationDevice) -> dict[str, Any]:
    """A transient ORM object's column values, for a plain INSERT (an autoincremented id,
    never set, left out)."""
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if column.key in row.__dict__
    }


def release(
    session: Session,
    who: Principal,
    environment: str,
    tenant: str | None = None,
    reason: str = "release",
) -> Allocation | None:
    """Free everything the environment's allocation holds; idempotent. Caller commits.

    Returns the released allocation (also on a second call), or None if the environment
    never held one.
    """
    require_provisioning(who)
    tenant_id, _ = _tenant(session, who, tenant)
    scope = tenant_id or PLATFORM_SCOPE
    allocation = active_allocation(session, scope, environment)
    if allocation is None:
        return session.scalar(
            select(Allocation)
            .where(Allocation.scope == scope, Allocation.environment == environment)
            .order_by(Allocation.released_at.desc())
            .limit(1)
        )
    free_allocation(session, who, allocation, reason)
    return allocation


def free_allocation(session: Session, who: Principal, allocation: Allocation, reason: str) -> bool:
    """Give back the devices; False when another release got there first."""
    now = utcnow()
    won = (
        session.execute(
            update(Allocation)
            .where(Allocation.id == allocation.id, Allocation.released_at.is_(None))
            .values(released_at=now, released_by=who.actor)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    if not won:
        return False
    # Deactivate and learn what was held in one statement.
    held = session.execute(
        update(AllocationDevice)
        .where(AllocationDevice.allocation_id == allocation.id, AllocationDevice.active.is_(True))
        .values(active=False)
        .returning(
            AllocationDevice.device_id,
            AllocationDevice.hostname,
            AllocationDevice.exclusive,
            AllocationDevice.cpu,
            AllocationDevice.memory_mb,
            AllocationDevice.storage_gb,
            AllocationDevice.gpus,
            AllocationDevice.position,
        )
        .execution_options(synchronize_session=False)
    ).all()
    held.sort(key=lambda part: part.position)
    for part in held:
        _give_back(session, part, now)
    # Already written above: tell the session so, or it would UPDATE the row again.
    set_committed_value(allocation, "released_at", now)
    set_committed_value(allocation, "released_by", who.actor)
    audit.record(
        session,
        who,
        reason,
        "allocation",
        allocation.id,
        allocation.environment,
        allocation.tenant_id,
        {"devices": [p.hostname for p in held]},
        None,
    )
    return True


def _give_back(session: Session, part: Any, now: datetime) -> None:
    """``part``: an allocation_device row (device_id, exclusive and the amounts)."""
    if part.exclusive:
        values: dict[str, Any] = {
            # A device an operator forced into maintenance stays there.
            "status": case((Device.status == "allocated", "available"), else_=Device.status),
            "free_cpu": Device.total_cpu,
            "free_memory_mb": Device.total_memory_mb,
            "free_storage_gb": Device.total_storage_gb,
            "free_gpus": Device.total_gpus,
        }
    else:
        values = {
            "free_cpu": Device.free_cpu + part.cpu,
            "free_memory_mb": Device.free_memory_mb + part.memory_mb,
            "free_storage_gb": Device.free_storage_gb + part.storage_gb,
            "free_gpus": Device.free_gpus + part.gpus,
        }
    session.execute(
        update(Device)
        .where(Device.id == part.device_id)
        .values(**values, generation=Device.generation + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def expire_leases(session: Session, now: datetime | None = None, limit: int = 100) -> int:
    """Release allocations whose lease ran out; returns how many. Caller commits."""
    who = Principal(name="system:lease-expiry", role=Role.PLATFORM_ADMIN)
    due = list(
        session.scalars(
            select(Allocation)
            .where(
                and_(
                    Allocation.released_at.is_(None),
                    Allocation.expires_at.is_not(None),
                    Allocation.expires_at <= (now or utcnow()),
                )
            )
            .limit(limit)
        )
    )
    return sum(free_allocation(session, who, allocation, "expire") for allocation in due)
