"""NetBox's objects, as its REST API returns them, turned into inventory documents.

Pure: no NetBox client and no database here. ``Snapshot`` holds plain JSON dicts (what
pynetbox's records hold), ``translate`` returns the documents the inventory should hold,
keyed the way the inventory keys them (a name within its namespace: the tenant, or the
platform for items without one), plus notes for what could not be mapped cleanly
(DESIGN.md "NetBox sync", the default mapping, and "Namespaces").
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from api.domain.document import DocumentError, parse_device, parse_switch
from api.domain.vocabulary import Kind, normalise_gpu_vendor
from sync.mapping import Mapping

Record = dict[str, Any]

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
_VENDORS = (  # manufacturer name (lower case) contains -> vendor code
    ("nvidia", "NVIDIA"),
    ("advanced micro devices", "AMD"),
    ("amd", "AMD"),
    ("habana", "INTEL"),
    ("intel", "INTEL"),
)
_GBPS = re.compile(r"(\d+(?:\.\d+)?)\s*Gbps", re.IGNORECASE)


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
    regions = {s["id"]: _slug(s.get("region")) for s in snapshot.sites}
    module_types = {t["id"]: t for t in snapshot.module_types}
    gpus = _gpus_by_device(snapshot, module_types, desired.notes)
    parts = _parts_by_device(snapshot.modules, module_types)
    switches = {
        d["id"]: d for d in snapshot.devices if _slug(d.get("role")) in mapping.switch_roles
    }
    ports = _ports_by_device(snapshot.interfaces, switches)
    # (kind, NetBox object, where its document goes, how to build it)
    wanted: list[tuple[str, Record, dict[Key, Record], Callable[[Record], Record]]] = []
    for device in snapshot.devices:
        role = _slug(device.get("role"))
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
    return _slug(record.get("tenant")), name.strip()


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
        return f"site {_slug(r.get('site')) or '-'}"

    listed = ", ".join(f"#{r['id']} ({site(r)})" for r in others)
    return (
        f"{name!r} ({site(record)}) is also the name of NetBox {listed} in "
        f"{namespace(tenant)}; the inventory keeps names unique per tenant, so none of them "
        "is synced until they differ"
    )


def vendor_code(manufacturer: str) -> tuple[str, bool]:
    """The GPU vendor code of a NetBox manufacturer name, and whether it is a known one."""
    lowered = manufacturer.strip().lower()
    for needle, code in _VENDORS:
        if needle in lowered:
            return code, True
    return normalise_gpu_vendor(manufacturer), False


def ib_rate_gbps(interface: Record) -> int | None:
    """The interface's speed (NetBox stores Kbps) when set, else the rate its type's label
    gives. NetBox 4.7's labels carry the port's whole rate: "NDR (100 Gbps)" is one lane,
    "NDR 4X (400 Gbps)" (infiniband-ndr-4x, the usual NDR port) four."""
    if interface.get("speed"):
        return int(interface["speed"]) // 1_000_000
    label = str((interface.get("type") or {}).get("label") or "")
    found = _GBPS.search(label)
    return round(float(found.group(1))) if found else None


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
        "location": _slug(device.get("location")),
        "rack": (device.get("rack") or {}).get("name"),
        "infiniband": ports.get(device["id"], []),
    }
    document["totalgpus"] = len(document["gpus"])
    for label, value in (("CPU", "totalcpu"), ("memory", "totalmemoryMB")):
        if not document[value]:
            notes.append(Note("device", name, f"no {label} amount in NetBox: synced as 0"))
    return document


def _vm(vm: Record, regions: dict[int, str | None]) -> Record:
    disk_mb = _amount(vm.get("disk"))
    return _common(vm, regions) | {
        "hostname": vm["name"],
        "totalcpu": _amount(vm.get("vcpus")),
        "totalmemoryMB": _amount(vm.get("memory")),
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
        "role": _slug(device.get("role")),
        "managementAddress": primary.split("/")[0] if primary else None,
        "fabric": tags.pop("fabric", None),
    }


def _common(record: Record, regions: dict[int, str | None]) -> Record:
    """What every kind takes the same way: type, site, tenant, status, tags, source."""
    device_type = record.get("device_type") or {}
    site = record.get("site") or {}
    tags = _tags(record.get("tags") or [])
    region = _by_id(regions, site.get("id")) if site else None
    if region and "location" not in tags:
        tags["location"] = region
    status = (record.get("status") or {}).get("value")
    document: Record = {
        "status": STATUSES.get(status or "", "offline"),
        "manufacturer": (device_type.get("manufacturer") or {}).get("name"),
        "model": device_type.get("model"),
        "site": site.get("slug"),
        "tenant": _slug(record.get("tenant")),
        "tags": tags,
        "source": {"system": "netbox", "id": record["id"], "url": record.get("url")},
    }
    # Absent in NetBox: left out, so the inventory keeps what it has (e.g. a tenant set there).
    return {k: v for k, v in document.items() if v is not None}


def _tags(tags: list[Record]) -> dict[str, str]:
    """NetBox tags named "key:value" become tags[key] = value; other tags are not synced."""
    found: dict[str, str] = {}
    for tag in tags:
        key, colon, value = str(tag.get("name") or "").partition(":")
        if colon and key.strip() and value.strip():
            found[key.strip()] = value.strip()
    return found


# -- GPUs and ports -----------------------------------------------------------------------


def _gpus_by_device(
    snapshot: Snapshot, module_types: dict[int, Record], notes: list[Note]
) -> dict[int, list[Record]]:
    """GPU modules (module types with NetBox's GPU profile); else inventory items."""
    found: dict[int, list[Record]] = defaultdict(list)
    unknown: set[tuple[str, str]] = set()  # (device, manufacturer): noted once, not per GPU

    def code_of(manufacturer: str, device: str) -> str:
        code, known = vendor_code(manufacturer)
        if not known and (device, manufacturer) not in unknown:
            unknown.add((device, manufacturer))
            notes.append(Note("device", device, f"unknown GPU vendor {manufacturer!r}"))
        return code

    for module in sorted(snapshot.modules, key=_module_order):
        module_type = _by_id(module_types, (module.get("module_type") or {}).get("id"))
        if module_type is None or _name(module_type.get("profile")) != "GPU":
            continue
        device = module["device"]
        memory_gb = (module_type.get("attributes") or {}).get("memory")
        found[device["id"]].append(
            {
                "vendorCode": code_of(
                    _name(module_type.get("manufacturer")) or "", device.get("name", "")
                ),
                "modelNo": module_type.get("model"),
                "memoryMB": int(memory_gb) * 1024 if memory_gb is not None else None,
            }
        )
    with_modules = set(found)  # their GPU modules win over inventory items
    for item in sorted(snapshot.inventory_items, key=lambda i: (i["device"]["id"], i["id"])):
        device_id = item["device"]["id"]
        if device_id in with_modules:
            continue
        device = (item.get("device") or {}).get("name") or f"#{device_id}"
        found[device_id].append(
            {
                "vendorCode": code_of(_name(item.get("manufacturer")) or "", device),
                "modelNo": item.get("part_id") or item["name"],
                "memoryMB": None,  # an inventory item carries no memory size
            }
        )
    return found


# NetBox 4.7's native module profiles, and what one module of each adds up to.
_PART_PROFILES = {
    "CPU": ("cpu", "cores", 1),
    "Memory": ("memoryMB", "size", 1024),  # GB
    "Hard disk": ("storageGB", "size", 1),  # GB
}


def _parts_by_device(
    modules: list[Record], module_types: dict[int, Record]
) -> dict[int, dict[str, int]]:
    """CPU cores, memory and disk summed over modules with NetBox's CPU, Memory and Hard
    disk profiles: the fallback when a device has no custom fields for them."""
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for module in modules:
        module_type = _by_id(module_types, (module.get("module_type") or {}).get("id")) or {}
        part = _PART_PROFILES.get(_name(module_type.get("profile")) or "")
        if part is None:
            continue
        total, attribute, scale = part
        value = _amount((module_type.get("attributes") or {}).get(attribute)) * scale
        totals = found[module["device"]["id"]]
        totals[total] = totals.get(total, 0) + value
    return found


def _by_id[T](table: dict[int, T], netbox_id: int | None) -> T | None:
    """A NetBox object by its id, read from a nested reference that may be missing."""
    return None if netbox_id is None else table.get(netbox_id)


def _module_order(module: Record) -> tuple[int, str, int]:
    bay = module.get("module_bay") or {}
    return (module["device"]["id"], str(bay.get("name") or ""), module["id"])


def _ports_by_device(
    interfaces: list[Record], switches: dict[int, Record]
) -> dict[int, list[Record]]:
    found: dict[int, list[Record]] = defaultdict(list)
    for interface in sorted(interfaces, key=lambda i: (i["device"]["id"], i["name"])):
        peer = next(iter(interface.get("link_peers") or []), None)
        peer_device = (peer or {}).get("device") or {}
        switch = _by_id(switches, peer_device.get("id"))
        fabric = _tags((switch or {}).get("tags") or []).get("fabric")
        found[interface["device"]["id"]].append(
            {
                "name": interface["name"],
                "rateGbps": ib_rate_gbps(interface),
                "switch": peer_device.get("name"),
                "fabric": fabric,
            }
        )
    return found


# -- small readers ----------------------------------------------------------------------


def _slug(nested: Record | None) -> str | None:
    return (nested or {}).get("slug")


def _name(nested: Record | None) -> str | None:
    return (nested or {}).get("name")


def _amount(value: Any) -> int:
    """A NetBox number (custom fields may hold text, vCPUs are decimals) as a whole number."""
    if value in (None, ""):
        return 0
    try:
        return max(0, int(float(value)))
    except (TypeError, ValueError):
        return 0
