"""The inventory side of a sync: read what it holds, apply a diff, keep the sync's state.

An apply is one transaction: every change or none (a NetBox answer that breaks half way
must not leave half a fleet synced). Writes go through the same repository functions as
the API (``api.db.inventory``), so validation, generations and the audit log are the same;
the actor is ``system:netbox-sync``.

The apply writes over what the diff saw, not over whatever is there by then: each update,
retire and flag names the item's id and the generation ``holdings`` read, and an item
changed since (by an operator, a claim, another writer) refuses the whole apply with
CONCURRENT_UPDATE; the next sync diffs it anew. So do creates whose name was taken since.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarResult, or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import audit, inventory
from api.db import device as device_db
from api.db import switch as switch_db
from api.db import tenant as tenant_db
from api.db.base import utcnow
from api.db.inventory_import import ImportCounts, import_batch
from api.db.items import check_generation, guarded_flush
from api.db.models import AllocationDeviceRow, DeviceRow, SwitchRow, SyncStateRow
from api.db.session import unit_of_work
from api.db.tenant import Directory
from api.domain.access import Principal, Role
from api.domain.document import parse_device, parse_switch
from api.domain.errors import CONCURRENT_UPDATE, DomainError
from api.domain.inventory_import import ImportBatch
from api.domain.vocabulary import Kind, Status
from sync.diff import CREATE, FLAG, RETIRE, UPDATE, Change, Held, Slot

SYNC_ACTOR = Principal(name="system:netbox-sync", role=Role.PLATFORM_ADMIN)
SOURCE = "netbox"
MASS_RETIRE_SHARE = 0.10
_KINDS = {"baremetal": Kind.BAREMETAL, "vm": Kind.VM, "switch": Kind.SWITCH}


class SyncError(Exception):
    """A sync that must not go ahead; the message says why and what to do. ``code``: the
    refusal's error code when the inventory refused a write (e.g. CONCURRENT_UPDATE)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Applied:
    counts: dict[str, int] = field(default_factory=dict)
    imported: ImportCounts = field(default_factory=ImportCounts)  # the bulk-created part


def holdings(
    session: Session, slots: set[Slot] | None = None, netbox_ids: set[int] | None = None
) -> list[Held]:
    """Every device, VM and switch as the diff sees it (rendered in bulk); or, for one
    webhook event, only those synced from one of the NetBox ``netbox_ids`` or holding one of
    the ``slots``, (kind, tenant, name): a name alone would find other tenants' items."""
    directory = Directory.load(session)
    device_query, switch_query = select(DeviceRow), select(SwitchRow)
    if slots is not None or netbox_ids is not None:
        slots, netbox_ids = slots or set(), netbox_ids or set()
        device_query = device_query.where(
            or_(
                (DeviceRow.source_system == SOURCE) & DeviceRow.source_id.in_(netbox_ids),
                *(
                    (DeviceRow.kind == kind)
                    & (DeviceRow.hostname == name)
                    & _in(DeviceRow, tenant, directory)
                    for kind, tenant, name in slots
                    if kind != "switch" and _known(directory, tenant)
                ),
            )
        )
        switch_query = switch_query.where(
            or_(
                (SwitchRow.source_system == SOURCE) & SwitchRow.source_id.in_(netbox_ids),
                *(
                    (SwitchRow.name == name) & _in(SwitchRow, tenant, directory)
                    for kind, tenant, name in slots
                    if kind == "switch" and _known(directory, tenant)
                ),
            )
        )
    devices = list(session.scalars(device_query.order_by(DeviceRow.hostname)))
    held = _held(session, [d.id for d in devices], everything=slots is None and netbox_ids is None)
    found = [
        Held(
            row.kind,
            row.hostname,
            document,
            held=row.id in held or row.status == Status.ALLOCATED,
            attention=_codes(row.attention),
            generation=row.generation,
        )
        for row, document in zip(
            devices, device_db.documents(session, devices, directory), strict=True
        )
    ]
    for row in session.scalars(switch_query.order_by(SwitchRow.name)):
        document = switch_db.render(row, directory)
        found.append(
            Held(
                "switch",
                row.name,
                document,
                attention=_codes(row.attention),
                generation=row.generation,
            )
        )
    return found


def _known(directory: Directory, tenant: str | None) -> bool:
    """A tenant the inventory does not have yet has no items to find."""
    return tenant is None or tenant in directory.tenant_id


def _in(model: type[DeviceRow] | type[SwitchRow], tenant: str | None, directory: Directory) -> Any:
    """The namespace condition: the tenant's items, or the platform's (no tenant)."""
    if tenant is None:
        return model.tenant_id.is_(None)
    return model.tenant_id == directory.tenant_id[tenant]


def _held(session: Session, device_ids: list[str], everything: bool) -> set[str]:
    """Which of the devices an active allocation holds (whole or a slice)."""
    query = select(AllocationDeviceRow.device_id).where(AllocationDeviceRow.active.is_(True))
    if not everything:
        query = query.where(AllocationDeviceRow.device_id.in_(device_ids))
    return set(session.scalars(query.distinct()))


def check_mass_retire(changes: list[Change], current: list[Held], allowed: bool) -> None:
    """An empty or partial answer from a broken NetBox must not retire the fleet."""
    synced = sum(1 for item in current if item.from_netbox)
    retiring = sum(1 for c in changes if c.action == RETIRE)
    if not allowed and synced and retiring > MASS_RETIRE_SHARE * synced:
        raise SyncError(
            f"this sync would retire {retiring} of {synced} items synced from NetBox "
            f"(more than {MASS_RETIRE_SHARE:.0%}); if NetBox really lost them, run again with "
            "--allow-mass-retire"
        )


def apply(
    session: Session, changes: list[Change], tick: Callable[[int], None] | None = None
) -> Applied:
    """Apply every change in the session's transaction; the caller commits.

    The items the changes are for are read by id in bulk (not one SELECT per change), and
    each must still be at the generation the diff saw; else SyncError (CONCURRENT_UPDATE).
    """
    tick = tick or (lambda n: None)
    directory = _create_missing_tenants(session, changes)
    applied = Applied()
    now = utcnow()
    creates = [c for c in changes if c.action == CREATE]
    if creates:
        applied.imported = _create(session, creates, tick)
        applied.counts[CREATE] = len(creates)
    items = _items(session, [c for c in changes if c.action != CREATE])
    written: set[str] = set()  # items this apply has changed: their generation is its own
    for change in changes:
        if change.action == CREATE:
            continue
        kind = _KINDS[change.kind]
        item = _item(items, change)
        seen = None if item.id in written else change.generation
        written.add(item.id)
        try:
            if change.action == UPDATE:
                patch = dict(change.patch or {})
                inventory.update_item(session, SYNC_ACTOR, kind, item, patch, seen, directory)
                if "attention" in change.fields:
                    _set_attention(session, item, _keeping(item, change), change)
            elif change.action == RETIRE:
                check_generation(item, seen)
                inventory.set_status(
                    session, SYNC_ACTOR, item.id, Status.RETIRED, False, "gone from NetBox"
                )
                if "attention" in change.fields:
                    _set_attention(session, item, _keeping(item, change), change)
            elif change.action == FLAG:
                check_generation(item, seen)
                entry: dict[str, Any] = {"code": change.code, "since": now.isoformat()}
                if "status" in change.fields:
                    entry["netboxStatus"] = change.fields["status"][1]
                if "tenant" in change.fields:
                    entry["netboxTenant"] = change.fields["tenant"][1]
                _set_attention(session, item, [*(item.attention or []), entry], change)
        except DomainError as exc:
            raise _refused(change, seen, exc) from exc
        applied.counts[change.action] = applied.counts.get(change.action, 0) + 1
        tick(1)
    return applied


def _create(session: Session, creates: list[Change], tick: Callable[[int], None]) -> ImportCounts:
    """New items take the import's bulk path (a first sync of a fleet is the big case): the
    same validation, audit and ports as one by one, in a few statements. The import
    upserts by name: an item it finds is one that took the name since the diff."""
    batch = ImportBatch()
    for change in creates:
        document = dict(change.patch or {})
        if change.kind == "switch":
            batch.switches.append(parse_switch(document))
        elif change.kind == "vm":
            batch.vms.append(parse_device(document, Kind.VM))
        else:
            batch.devices.append(parse_device(document, Kind.BAREMETAL))
    try:
        counts = import_batch(session, SYNC_ACTOR, batch, tick)
    except DomainError as exc:
        raise SyncError(f"creating {len(creates)} new items: {exc}", exc.code) from exc
    if counts.created != len(creates):
        taken = len(creates) - counts.created
        raise SyncError(
            f"CONCURRENT_UPDATE: {taken} of the {len(creates)} names this sync would create "
            "were taken in the inventory after it read the inventory; nothing was applied: "
            "run the sync again",
            CONCURRENT_UPDATE,
        )
    return counts


def _items(session: Session, changes: list[Change]) -> dict[str, DeviceRow | SwitchRow]:
    """The items the changes are for, by id: a SELECT per table and 900 ids, not per change
    (kept here, the writes below find them in the session without reading them again)."""
    found: dict[str, DeviceRow | SwitchRow] = {}
    models: tuple[type[DeviceRow] | type[SwitchRow], ...] = (DeviceRow, SwitchRow)
    for model in models:
        ids = sorted(
            {
                c.item_id
                for c in changes
                if c.item_id and (c.kind == "switch") == (model is SwitchRow)
            }
        )
        for start in range(0, len(ids), 900):
            found.update((row.id, row) for row in _rows(session, model, ids[start : start + 900]))
    return found


def _rows[M: DeviceRow | SwitchRow](
    session: Session, model: type[M], ids: list[str]
) -> ScalarResult[M]:
    return session.scalars(select(model).where(model.id.in_(ids)))


def _item(items: dict[str, DeviceRow | SwitchRow], change: Change) -> DeviceRow | SwitchRow:
    """The item the diff matched (by NetBox id, or by kind, tenant and name), by its id."""
    item = items.get(change.item_id) if change.item_id else None
    if item is None:  # deleted since the diff was made
        raise SyncError(
            f"{change.kind} {change.key!r} ({change.action}): the inventory's item "
            f"{change.item_id} is gone; run the sync again"
        )
    return item


def _refused(change: Change, seen: int | None, exc: DomainError) -> SyncError:
    what = f"{change.kind} {change.key!r} ({change.action})"
    if exc.code != CONCURRENT_UPDATE:
        return SyncError(f"{what}: {exc}", exc.code)
    now = exc.extensions.get("generation")
    at = f" (generation {seen}, now {now})" if seen is not None and now is not None else ""
    return SyncError(
        f"{what}: CONCURRENT_UPDATE: the item changed in the inventory after this sync read "
        f"it{at}; nothing was applied: run the sync again",
        CONCURRENT_UPDATE,
    )


def _keeping(item: DeviceRow | SwitchRow, change: Change) -> list[dict[str, Any]] | None:
    """The item's attention entries whose codes the change keeps (the rest are resolved)."""
    codes = change.fields["attention"][1] or []
    kept = [entry for entry in item.attention or [] if entry.get("code") in codes]
    return kept or None


def _set_attention(
    session: Session,
    item: DeviceRow | SwitchRow,
    value: list[dict[str, Any]] | None,
    change: Change,
) -> None:
    before = {"attention": item.attention}
    with guarded_flush(session, item):  # a lost race: CONCURRENT_UPDATE
        item.attention = value
    audit.record(
        session,
        SYNC_ACTOR,
        "flag" if change.action == FLAG else "unflag",
        change.kind,
        item.id,
        change.key,
        item.tenant_id,
        before,
        {"attention": value},
    )


def _create_missing_tenants(session: Session, changes: list[Change]) -> Directory:
    """NetBox's tenants become the inventory's (by slug), created on first sight; the
    tenant directory as it is then."""
    wanted = {
        c.patch["tenant"] for c in changes if c.patch and isinstance(c.patch.get("tenant"), str)
    }
    directory = Directory.load(session)
    missing = sorted(wanted - set(directory.tenant_id))
    for slug in missing:
        tenant_db.create_tenant(session, SYNC_ACTOR, slug, None)
    session.flush()
    return Directory.load(session) if missing else directory


def _codes(attention: list[dict[str, Any]] | None) -> tuple[str, ...]:
    return tuple(str(entry.get("code")) for entry in attention or [])


# -- sync state and the leader lease ------------------------------------------------------


def worker_name() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


def record_outcome(
    sessions: sessionmaker[Session],
    started: datetime,
    error: str | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Remember how this run went (what the API's syncState shows)."""
    with unit_of_work(sessions) as session:
        state = session.get(SyncStateRow, SOURCE) or SyncStateRow(source=SOURCE)
        session.add(state)
        state.last_attempt_at = started
        if error is None:
            state.last_success_at = started
            state.last_summary = summary
        else:
            state.last_error, state.last_error_at = error[:2000], utcnow()
