"""NetBox's objects, as its REST API returns them, turned into inventory documents.

Pure: no NetBox client and no database here. ``Snapshot`` holds plain JSON dicts (what
pynetbox's records hold), ``translate`` returns the documents the inventory should hold,
keyed the way the inventory keys them (a name within its namespace: the tenant, or the
platform for items without one), plus notes for what could not be mapped cleanly
(DESIGN.md "NetBox sync", the default mapping, and "Namespaces").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from api.domain.document import DocumentError, parse_device, parse_switch
from api.domain.vocabulary import Kind
from sync.mapping import Mapping
from sync.parts import (
    Record,
    amount,
    by_id,
    gpus_by_device,
    parts_by_device,
    ports_by_device,
    slug,
    tags_of,
)

# NetBox status -> inventory status (DESIGN.md); an allocation is never changed by it.
STATUSES = {
    "active": "available",
    "offline": "maintenance",
    "failed": "maintenance",
    "planned": "offline",
    "staged": "offline",
    "inventory": "offline",
    "decommissioning": "retired",
}


@dataclass
class Snapshot:
    """Everything the sync reads from NetBox, as plain dicts."""

    devices: list[Record] = field(default_factory=list)  # GPU servers and switches
    sites: list[Record] = field(default_factory=list)
    module_types: list[Record] = field(default_factory=list)
    modules: list[Record] = field(default_factory=list)
    inventory_items: list[Record] = field(default_factory=list)  # role "gpu"
    interfaces: list[Record] = field(default_factory=list)  # InfiniBand types only
    virtual_machines: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class Note:
    """Something synced imperfectly, for the operator (e.g. an unknown GPU vendor)."""

    kind: str
    key: str
    message: str


# Where an item's name is unique in the inventory: (tenant slug, or None for the platform;
# name). NetBox is looser (device names are unique per site and tenant).
Key = tuple[str | None, str]


@dataclass
class Desired:
    devices: dict[Key, Record] = field(default_factory=dict)  # (tenant, hostname) -> document
    vms: dict[Key, Record] = field(default_factory=dict)
    switches: dict[Key, Record] = field(default_factory=dict)  # (tenant, name) -> document
    notes: list[Note] = field(default_factory=list)
    # NetBox objects that could not be mapped: ("device" | "vm", NetBox id). They still
    # exist in NetBox, so the inventory's copies are left alone, not retired.
    skipped: set[tuple[str, int]] = field(default_factory=set)
    # (kind, tenant, name) that several NetBox objects share (one tenant's gpu-01 in two
    # sites): all of them are skipped, and the inventory's item of that name is kept.
    clashes: set[tuple[str, str | None, str]] = field(default_factory=set)

    def items(self) -> Iterator[tuple[str, str | None, str, Record]]:
        """Every document as (kind, tenant, name, document)."""
        for kind, documents in (
            ("baremetal", self.devices),
            ("vm", self.vms),
            ("switch", self.switches),
        ):
            for (tenant, name), document in documents.items():
                yield kind, tenant, name, document


def translate(snapshot: Snapshot, mapping: Mapping) -> Desired:
    desired = Desired()
    regions = {s["id"]: slug(s.get("region")) for s in snapshot.sites}
    module_types = {t["id"]: t for t in snapshot.module_types}
    gpus = gpus_by_device(
        snapshot.modules,
        snapshot.inventory_items,
        module_types,
        lambda device, message: desired.notes.append(Note("device", device, message)),
    )
    parts = parts_by_device(snapshot.modules, module_types)
    switches = {d["id"]: d for d in snapshot.devices if slug(d.get("role")) in mapping.switch_roles}
    ports = ports_by_device(snapshot.interfaces, switches)
    # (kind, NetBox object, where its document goes, how to build it)
    wanted: list[tuple[str, Record, dict[Key, Record], Callable[[Record], Record]]] = []
    for device in snapshot.devices:
        role = slug(device.get("role"))
        if role in mapping.switch_roles:
            wanted.append(("switch", device, desired.switches, lambda d: _switch(d, regions)))
        elif role in mapping.device_roles:
            wanted.append(
                (
                    "baremetal",
                    device,
                    desired.devices,
                    lambda d: _server(d, regions, gpus, parts, ports, mapping, desired.notes),
                )
            )
    for vm in snapshot.virtual_machines:
        wanted.append(("vm", vm, desired.vms, lambda v: _vm(v, regions)))
    namesakes = _namesakes(wanted)
    desired.clashes = set(namesakes)
    for kind, record, into, build in wanted:
        _keep(desired, kind, record, into, build, namesakes)
    return desired


class _Unusable(ValueError):
    """A NetBox object the mapping cannot turn into a valid item; the message says why."""


def _namesakes(
    wanted: list[tuple[str, Record, dict[Key, Record], Callable[[Record], Record]]],
) -> dict[tuple[str, str | None, str], list[Record]]:
    """The NetBox objects that would share one inventory name: NetBox keeps device names
    unique per site and tenant, the inventory per tenant only. Counted over every named
    object, usable or not, so that none of them is mistaken for the only one."""
    # Counted first, then listed for the few shared names: a list per object would make
    # the garbage collector walk a large fleet's records over and over.
    counts: dict[tuple[str, str | None, str], int] = {}
    for kind, record, _, _ in wanted:
        key = _key(record)
        if key is not None:
            counts[(kind, *key)] = counts.get((kind, *key), 0) + 1
    found: dict[tuple[str, str | None, str], list[Record]] = {
        key: [] for key, count in counts.items() if count > 1
    }
    for kind, record, _, _ in wanted if found else ():
        key = _key(record)
        if key is not None and (kind, *key) in found:
            found[(kind, *key)].append(record)
    return found


def _key(record: Record) -> Key | None:
    """Where the object's item lives in the inventory; None when it has no name. Names are
    stripped as the inventory's validator strips them."""
    name = record.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    return slug(record.get("tenant")), name.strip()


def _keep(
    desired: Desired,
    kind: str,
    record: Record,
    into: dict[Key, Record],
    build: Callable[[Record], Record],
    namesakes: dict[tuple[str, str | None, str], list[Record]],
) -> None:
    """Build one item's document and check it with the inventory's own validator; an
    object that fails is reported and skipped (and, being in NetBox, never retired).

    What the validator parsed is dropped, and a create parses its document again: kept for
    every item, it would cost each sync more (the garbage collector walking 20,000 kept
    specs: +0.1 s a sync) than it saves the first (0.4 s for 20,000 creates, once)."""
    family = "vm" if kind == "vm" else "device"
    key = _key(record)
    try:
        if key is None:
            raise _Unusable("has no name in NetBox")
        others = [r for r in namesakes.get((kind, *key), []) if r["id"] != record["id"]]
        if others:
            raise _Unusable(_clash(key, record, others))
        document = build(record)
        if "name" in document:
            parse_switch(document)
        else:
            parse_device(document, Kind.VM if kind == "vm" else Kind.BAREMETAL)
    except (_Unusable, DocumentError) as exc:
        desired.skipped.add((family, record["id"]))
        shown = key[1] if key is not None else f"#{record['id']}"
        desired.notes.append(Note("skipped", shown, f"NetBox {family} #{record['id']}: {exc}"))
        return
    into[key] = document


def namespace(tenant: str | None) -> str:
    """A namespace as an operator reads it."""
    return f"tenant {tenant!r}" if tenant else "the platform (no tenant)"


def _clash(key: Key, record: Record, others: list[Record]) -> str:
    tenant, name = key

    def site(r: Record) -> str:
        return f"site {slug(r.get('site')) or '-'}"

    listed = ", ".join(f"#{r['id']} ({site(r)})" for r in others)
    return (
        f"{name!r} ({site(record)}) is also the name of NetBox {listed} in "
        f"{namespace(tenant)}; the inventory keeps names unique per tenant, so none of them "
        "is synced until they differ"
    )


# -- devices ----------------------------------------------------------------------------


def _server(
    device: Record,
    regions: dict[int, str | None],
    gpus: dict[int, list[Record]],
    parts: dict[int, dict[str, int]],
    ports: dict[int, list[Record]],
    mapping: Mapping,
    notes: list[Note],
) -> Record:
    name = device["name"]
    fields = device.get("custom_fields") or {}
    summed = parts.get(device["id"], {})

    def amount(custom_field: str, part: str) -> int:
        """The custom field when set, else the sum over the device's modules."""
        value = fields.get(custom_field)
        if value in (None, ""):
            return summed.get(part, 0)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _Unusable(f"custom field {custom_field}: {value!r} is not a number") from None
        if number < 0 or number != int(number):
            raise _Unusable(f"custom field {custom_field}: {value!r} is not a whole number ≥ 0")
        return int(number)

    document = _common(device, regions) | {
        "hostname": name,
        "serial": device.get("serial") or None,
        "totalcpu": amount(mapping.cpu_field, "cpu"),
        "totalmemoryMB": amount(mapping.memory_field, "memoryMB"),
        "totalstorageGB": amount(mapping.storage_field, "storageGB"),
        "gpus": [dict(g, index=i) for i, g in enumerate(gpus.get(device["id"], []))],
        "location": slug(device.get("location")),
        "rack": (device.get("rack") or {}).get("name"),
        "infiniband": ports.get(device["id"], []),
    }
    document["totalgpus"] = len(document["gpus"])
    for label, value in (("CPU", "totalcpu"), ("memory", "totalmemoryMB")):
        if not document[value]:
            notes.append(Note("device", name, f"no {label} amount in NetBox: synced as 0"))
    return document


def _vm(vm: Record, regions: dict[int, str | None]) -> Record:
    disk_mb = amount(vm.get("disk"))
    return _common(vm, regions) | {
        "hostname": vm["name"],
        "totalcpu": amount(vm.get("vcpus")),
        "totalmemoryMB": amount(vm.get("memory")),
        "totalstorageGB": disk_mb // 1000,
        "cluster": (vm.get("cluster") or {}).get("name"),
        "host": (vm.get("device") or {}).get("name"),
    }


def _switch(device: Record, regions: dict[int, str | None]) -> Record:
    document = _common(device, regions)
    tags = document["tags"]
    primary = (device.get("primary_ip") or {}).get("address")
    return document | {
        "name": device["name"],
        "role": slug(device.get("role")),
        "managementAddress": primary.split("/")[0] if primary else None,
        "fabric": tags.pop("fabric", None),
    }


def _common(record: Record, regions: dict[int, str | None]) -> Record:
    """What every kind takes the same way: type, site, tenant, status, tags, source."""
    device_type = record.get("device_type") or {}
    site = record.get("site") or {}
    tags = tags_of(record.get("tags") or [])
    region = by_id(regions, site.get("id")) if site else None
    if region and "location" not in tags:
        tags["location"] = region
    status = (record.get("status") or {}).get("value")
    document: Record = {
        "status": STATUSES.get(status or "", "offline"),
        "manufacturer": (device_type.get("manufacturer") or {}).get("name"),
        "model": device_type.get("model"),
        "site": site.get("slug"),
        "tenant": slug(record.get("tenant")),
        "tags": tags,
        "source": {"system": "netbox", "id": record["id"], "url": record.get("url")},
    }
    # Absent in NetBox: left out, so the inventory keeps what it has (e.g. a tenant set there).
    return {k: v for k, v in document.items() if v is not None}
