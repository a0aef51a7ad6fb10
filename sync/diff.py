"""Reconcile as a value: what NetBox wants against what the inventory holds -> changes.

Pure. NetBox owns the hardware facts; the inventory owns allocation state. So a held item
(allocated whole, or holding slices) never has its status or its tenant changed, nor is it
retired, by a sync: it is flagged for an operator instead (``attention``), and the next sync
after its release applies what NetBox says. Items the inventory did not get from NetBox are
never retired.

Which item a NetBox object is: the one synced from it (its NetBox id), else the one that has
its name in its namespace, ``(kind, tenant, name)``, when no other NetBox object holds that
item (a manual item NetBox now also has, or the item of an object deleted and re-created in
NetBox). So a tenant change or a rename in NetBox is an update of the same item, which
keeps its id, its ports (renamed with it) and its allocations; and a name alone never
matches across tenants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync.parts import Record
from sync.translate import Desired, Note, namespace

CREATE, UPDATE, RETIRE, FLAG = "create", "update", "retire", "flag"
NETBOX_DELETED, NETBOX_DEGRADED = "NETBOX_DELETED", "NETBOX_DEGRADED"
# NetBox gave a held item another tenant: it keeps its namespace until released.
NETBOX_TENANT_CHANGED = "NETBOX_TENANT_CHANGED"
_ORDER = {CREATE: 0, UPDATE: 1, RETIRE: 2, FLAG: 3}

Slot = tuple[str, str | None, str]  # (kind, tenant slug or None, name): unique in the inventory


@dataclass(frozen=True)
class Held:
    """An inventory item as the diff sees it."""

    kind: str  # "baremetal" | "vm" | "switch"
    key: str  # hostname, or switch name
    document: Record  # as the inventory renders it (with its "id")
    held: bool = False  # in an active allocation (whole or a slice)
    attention: tuple[str, ...] = ()  # codes already flagged
    generation: int | None = None  # the row's generation when it was read

    @property
    def from_netbox(self) -> bool:
        return (self.document.get("source") or {}).get("system") == "netbox"

    @property
    def netbox_id(self) -> int | None:
        return self.document["source"].get("id") if self.from_netbox else None

    @property
    def slot(self) -> Slot:
        return (self.kind, self.document.get("tenant"), self.key)


@dataclass(frozen=True)
class Change:
    action: str
    kind: str
    key: str
    netbox_id: int | None
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    patch: Record | None = None  # for create / update: the document (fields) to write
    code: str | None = None  # for flag
    item_id: str | None = None  # the inventory item an update, retire or flag is for
    # ... and its generation when the diff read it: the apply writes only over that one.
    generation: int | None = None

    def as_json(self) -> dict[str, Any]:
        """DESIGN.md's `sync --diff --json` entry."""
        return {
            "action": self.action,
            "kind": self.kind,
            "key": self.key,
            "netboxId": self.netbox_id,
            "fields": {name: [old, new] for name, (old, new) in self.fields.items()},
            **({"code": self.code} if self.code else {}),
        }


def diff(desired: Desired, current: list[Held], notes: list[Note] | None = None) -> list[Change]:
    """The changes that bring ``current`` in step with ``desired``. What has to wait for a
    name to be free in the inventory is left out and reported in ``notes``, if given."""
    notes = [] if notes is None else notes
    wanted = list(desired.items())
    # Items are told apart by their position in ``current``: every lookup below is exact.
    occupied = {item.slot: at for at, item in enumerate(current)}
    matched = _by_netbox_id(wanted, current)
    claimed = set(matched.values())
    kept = {  # still in NetBox, only unusable there (or sharing its name): left as they are
        at
        for at, item in enumerate(current)
        if (desired.skipped and (_family(item.kind), item.netbox_id) in desired.skipped)
        or (desired.clashes and item.slot in desired.clashes)
    }
    changes: list[Change] = []
    for index, (kind, tenant, name, document) in enumerate(wanted):
        netbox_id = document["source"]["id"]
        at = matched.get(index)
        if at is None:
            at = occupied.get((kind, tenant, name))
            if at is None:
                fields: dict[str, tuple[Any, Any]] = {
                    field: (None, value) for field, value in document.items()
                }
                changes.append(Change(CREATE, kind, name, netbox_id, fields, dict(document)))
                continue
            if at in claimed or at in kept:  # the name's item is another NetBox object's
                other = current[at].netbox_id
                notes.append(
                    Note(
                        "skipped",
                        name,
                        f"NetBox {_family(kind)} #{netbox_id}: not synced while the "
                        f"inventory's {kind} {name!r} in {namespace(tenant)} is NetBox "
                        f"#{other}'s",
                    )
                )
                continue
            claimed.add(at)  # adopted: a manual item, or a NetBox object's re-created
        item = current[at]
        target = (kind, document.get("tenant", item.document.get("tenant")), name)
        other_at = occupied.get(target, at)
        if other_at != at:
            notes.append(_blocked(item, target, current[other_at], netbox_id))
        changes.extend(_compare(item, document, netbox_id, movable=other_at == at))
    for at, item in enumerate(current):
        if at in claimed or at in kept or not item.from_netbox:
            continue
        netbox_id = item.netbox_id
        item_id = item.document.get("id")
        status = item.document.get("status")
        if item.held:
            changes.extend(_flag(item, netbox_id, NETBOX_DELETED))
        elif status != "retired":
            fields = {"status": (status, "retired")}
            if item.attention:
                fields["attention"] = (list(item.attention), None)
            changes.append(
                Change(
                    RETIRE,
                    item.kind,
                    item.key,
                    netbox_id,
                    fields,
                    item_id=item_id,
                    generation=item.generation,
                )
            )
    return sorted(changes, key=lambda c: (_ORDER[c.action], c.kind, c.key, c.netbox_id or 0))


def _family(kind: str) -> str:
    """NetBox's side of a kind: switches and servers are both NetBox devices."""
    return "vm" if kind == "vm" else "device"


def _by_netbox_id(
    wanted: list[tuple[str, str | None, str, Record]], current: list[Held]
) -> dict[int, int]:
    """Which wanted document (by index) is which synced item (by index in ``current``)."""
    # Plain ints, and lists only for the rare copies: a list per item makes the garbage
    # collector walk a 100k-item fleet's documents over and over (2-3x the diff's time).
    synced: dict[tuple[str, int], int] = {}
    copies: dict[tuple[str, int], list[int]] = {}
    for at, item in enumerate(current):
        if item.netbox_id is None:
            continue
        key = (item.kind, item.netbox_id)
        if key in synced:
            copies.setdefault(key, []).append(at)
        else:
            synced[key] = at
    found: dict[int, int] = {}
    for index, (kind, tenant, name, document) in enumerate(wanted):
        key = (kind, document["source"]["id"])
        first = synced.get(key)
        if first is None:
            continue
        if key not in copies:
            found[index] = first  # renamed in NetBox or not: the same item
            continue
        # Several items of one NetBox object (imported copies, or an old one retired after a
        # rename by an earlier version): the one of the same name and tenant, else a live
        # one, else the first.
        found[index] = min(
            (first, *copies[key]),
            key=lambda at: (
                current[at].slot != (kind, tenant, name),
                current[at].document.get("status") == "retired",
                at,
            ),
        )
    return found


def _blocked(item: Held, target: Slot, occupant: Held, netbox_id: int) -> Note:
    kind, tenant, name = target
    here = item.document.get("tenant")
    owner = f"NetBox #{occupant.netbox_id}'s" if occupant.from_netbox else "a manual item"
    occupied = (
        f"where the inventory's {kind} {name!r} is {owner} (id {occupant.document.get('id')})"
    )
    if tenant == here:  # a rename only
        return Note(
            kind,
            item.key,
            f"NetBox #{netbox_id} renamed it {name!r}, {occupied}; it keeps the name "
            f"{item.key!r} until that name is free",
        )
    moves = f"to {namespace(tenant)}" + (f" as {name!r}" if name != item.key else "")
    return Note(
        kind,
        item.key,
        f"NetBox #{netbox_id} moved it {moves}, {occupied}; it stays in {namespace(here)} "
        "until that name is free",
    )


def _flag(
    item: Held, netbox_id: int | None, code: str, fields: dict[str, tuple[Any, Any]] | None = None
) -> list[Change]:
    """A condition for an operator, flagged once: nothing while the item carries it."""
    if code in item.attention:
        return []
    return [
        Change(
            FLAG,
            item.kind,
            item.key,
            netbox_id,
            fields or {},
            code=code,
            item_id=item.document.get("id"),
            generation=item.generation,
        )
    ]


def _compare(item: Held, document: Record, netbox_id: int, movable: bool) -> list[Change]:
    item_id, generation = item.document.get("id"), item.generation
    fields = {
        name: (item.document.get(name), value)
        for name, value in document.items()
        if name != "status" and item.document.get(name) != value
    }
    patch = {name: value for name, value in document.items() if name != "status"}
    moving = "tenant" in fields
    changes: list[Change] = []
    if not movable:  # another item has the name where NetBox puts it (reported)
        for name in ("tenant", "name", "hostname"):
            fields.pop(name, None)
            patch.pop(name, None)
    elif moving and item.held:
        # Held back like a status: inventory.update refuses to move an allocated item.
        old_and_new = fields.pop("tenant")
        del patch["tenant"]
        changes.extend(_flag(item, netbox_id, NETBOX_TENANT_CHANGED, {"tenant": old_and_new}))
    elif moving and item.document.get("project") is not None:
        # A project is its tenant's: the item leaves it behind (else the write is refused).
        fields["project"] = (item.document["project"], None)
        patch["project"] = None
    have, want = item.document.get("status"), document["status"]
    if item.held:
        resolved = {NETBOX_DELETED}  # NetBox has it (again)
        if want == "available":
            resolved.add(NETBOX_DEGRADED)  # healthy again in NetBox
        else:
            changes.extend(_flag(item, netbox_id, NETBOX_DEGRADED, {"status": (have, want)}))
        if not moving:
            resolved.add(NETBOX_TENANT_CHANGED)  # NetBox's tenant is the inventory's again
    else:
        resolved = set(item.attention)  # released: what NetBox says is applied now
        if want != have:
            fields["status"] = (have, want)
            patch["status"] = want
    remaining = [code for code in item.attention if code not in resolved]
    if remaining != list(item.attention):
        fields["attention"] = (list(item.attention), remaining or None)
    if fields:
        changes.append(
            Change(UPDATE, item.kind, item.key, netbox_id, fields, patch, None, item_id, generation)
        )
    return changes
