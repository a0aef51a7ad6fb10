"""What a claim writes, planned before it is sent: the allocation, its devices and the
audit event as rows (claim.Claim), and as objects for the answer (in no session)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from api.db import audit, claim, events
from api.db.allocation_request import MatchInput, Resolved
from api.db.base import new_id, utcnow
from api.db.models import AllocationDeviceRow, AllocationRow
from api.domain.access import Principal
from api.domain.events import ALLOCATION_CREATED, allocation_data
from api.domain.matching.engine import Outcome
from api.domain.matching.profile import InventoryType
from api.domain.quota import Usage, counter_keys


def _slice(resolved: Resolved) -> dict[str, int] | None:
    if resolved.request.profile.inventory_type != InventoryType.VCLUSTER:
        return None
    need = resolved.request.requirements
    return {
        "cpu": need.cpu,
        "memoryMB": need.memory_mb,
        "storageGB": need.storage_gb,
        "gpus": need.gpus,
    }


def chosen_documents(outcome: Outcome, allocated: bool) -> list[dict[str, Any]]:
    """The chosen devices' documents from the index (caught up at the start of this
    request); a device just claimed whole reads ``allocated``."""
    return [
        dict(c.document, status="allocated") if allocated else dict(c.document)
        for c in outcome.chosen
    ]


def device_details(resolved: Resolved, documents: list[dict[str, Any]]) -> Any:
    """One document for one node, a list for several; slices carry what they took."""
    taken = _slice(resolved)
    if taken is not None:
        documents = [dict(d, slice=dict(taken)) for d in documents]
    return documents[0] if resolved.request.requirements.nodes == 1 else documents


def plan_claim(
    who: Principal,
    given: MatchInput,
    resolved: Resolved,
    outcome: Outcome,
    usage: Usage | None = None,
    borrowed: bool = False,
) -> tuple[AllocationRow, list[AllocationDeviceRow], claim.Claim]:
    """What the claim writes: the allocation, its devices and the audit event, as rows
    (claim.Claim), and as objects for the answer (in no session). ``usage``: what the claim
    counts against its tenant's quotas (None: a platform-wide claim, counted nowhere),
    as borrowed GPUs when ``borrowed``.

    ``device_details`` comes from the index's documents, caught up at the start of this
    attempt and confirmed available by the claim itself, so no re-read is needed; only the
    status the claim changes is patched in.
    """
    exclusive = resolved.request.profile.inventory_type != InventoryType.VCLUSTER
    need = resolved.request.requirements
    now = utcnow()
    counters: list[dict[str, Any]] | None = None
    if usage is not None:
        counters = [
            {
                "project_key": project_key,
                "model_key": key,
                "used_gpus": 0 if borrowed else usage.gpus_on(key),
                "used_nodes": usage.nodes_on(key),
                "borrowed_gpus": usage.gpus_on(key) if borrowed else 0,
            }
            for project_key, key in counter_keys(resolved.project_id, usage)
        ]
    allocation = AllocationRow(
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
        device_details=device_details(resolved, chosen_documents(outcome, allocated=exclusive)),
        explanation=outcome.explanation.as_dict(),
        actor=who.actor,
        created_at=now,
        expires_at=(now + timedelta(seconds=given.ttl_seconds)) if given.ttl_seconds else None,
        released_at=None,
        released_by=None,
        preemptible=given.preemptible,
        borrowed=borrowed,
        priority=given.priority,
        counted=None
        if counters is None
        else [
            [c["project_key"], c["model_key"], c["used_gpus"] + c["borrowed_gpus"], c["used_nodes"]]
            for c in counters
        ],
        preempt_at=None,
        preempted_for=None,
    )
    devices = [
        AllocationDeviceRow(
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
        counters=counters,
        outbox=events.event_values(
            ALLOCATION_CREATED,
            allocation.id,
            allocation.tenant_id,
            allocation_data(
                _columns(allocation),
                [_columns(d) for d in devices],
                resolved.tenant_slug,
                given.project,
            ),
            now,
        ),
    )
    return allocation, devices, planned


def _columns(row: AllocationRow | AllocationDeviceRow) -> dict[str, Any]:
    """A transient ORM object's column values, for a plain INSERT (an autoincremented id,
    never set, left out)."""
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if column.key in row.__dict__
    }
