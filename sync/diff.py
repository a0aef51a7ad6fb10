"""Reconcile as a value: what NetBox wants against what the inventory holds -> changes.

Pure. NetBox owns the hardware facts; the inventory owns allocation state. So a held item
(allocated whole, or holding slices) never has its status changed or is retired by a sync:
it is flagged for an operator instead (``attention``), and the next sync after its release
applies what NetBox says. Items the inventory did not get from NetBox are never retired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync.translate import Desired, Record

CREATE, UPDATE, RETIRE, FLAG = "create", "update", "retire", "flag"
NETBOX_DELETED, NETBOX_DEGRADED = "NETBOX_DELETED", "NETBOX_DEGRADED"
_ORDER = {CREATE: 0, UPDATE: 1, RETIRE: 2, FLAG: 3}


@dataclass(frozen=True)
class Held:
    """An inventory item as the diff sees it."""

    kind: str  # "baremetal" | "vm" | "switch"
    key: str  # hostname, or switch name
    document: Record  # as the inventory renders it
    held: bool = False  # in an active allocation (whole or a slice)
    attention: tuple[str, ...] = ()  # codes already flagged

    @property
    def from_netbox(self) -> bool:
        return (self.document.get("source") or {}).get("system") == "netbox"


@dataclass(frozen=True)
class Change:
    action: str
    kind: str
    key: str
    netbox_id: int | None
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    patch: Record | None = None  # for create / update: the document (fields) to write
    code: str | None = None  # for flag

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


def diff(desired: Desired, current: list[Held]) -> list[Change]:
    have = {(item.kind, item.key): item for item in current}
    changes: list[Change] = []
    wanted = {
        **{("baremetal", k): d for k, d in desired.devices.items()},
        **{("vm", k): d for k, d in desired.vms.items()},
        **{("switch", k): d for k, d in desired.switches.items()},
    }
    for (kind, key), document in wanted.items():
        netbox_id = document["source"]["id"]
        item = have.get((kind, key))
        if item is None:
            fields = {name: (None, value) for name, value in document.items()}
            changes.append(Change(CREATE, kind, key, netbox_id, fields, dict(document)))
        else:
            changes.extend(_compare(item, document, netbox_id))
    for (kind, key), item in have.items():
        if (kind, key) in wanted or not item.from_netbox:
            continue
        netbox_id = item.document["source"].get("id")
        if ("vm" if kind == "vm" else "device", netbox_id) in desired.skipped:
            continue  # still in NetBox, only unusable there: keep what we have
        status = item.document.get("status")
        if item.held:
            if NETBOX_DELETED not in item.attention:
                changes.append(Change(FLAG, kind, key, netbox_id, code=NETBOX_DELETED))
        elif status != "retired":
            fields: dict[str, tuple[Any, Any]] = {"status": (status, "retired")}
            if item.attention:
                fields["attention"] = (list(item.attention), None)
            changes.append(Change(RETIRE, kind, key, netbox_id, fields))
    return sorted(changes, key=lambda c: (_ORDER[c.action], c.kind, c.key))


def _compare(item: Held, document: Record, netbox_id: int) -> list[Change]:
    fields = {
        name: (item.document.get(name), value)
        for name, value in document.items()
        if name != "status" and item.document.get(name) != value
    }
    patch = {name: value for name, value in document.items() if name != "status"}
    have, want = item.document.get("status"), document["status"]
    changes: list[Change] = []
    if item.held:
        if want != "available" and NETBOX_DEGRADED not in item.attention:
            changes.append(
                Change(
                    FLAG,
                    item.kind,
                    item.key,
                    netbox_id,
                    {"status": (have, want)},
                    None,
                    NETBOX_DEGRADED,
                )
            )
        elif want == "available" and item.attention:
            fields["attention"] = (list(item.attention), None)  # healthy again in NetBox
    else:
        if want != have:
            fields["status"] = (have, want)
            patch["status"] = want
        if item.attention:
            fields["attention"] = (list(item.attention), None)  # released: now applied
    if fields:
        changes.append(Change(UPDATE, item.kind, item.key, netbox_id, fields, patch))
    return changes
