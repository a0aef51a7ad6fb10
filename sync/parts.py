"""What a NetBox server is made of, read from its modules, inventory items and
interfaces: its GPUs, the amounts its parts add up to, its InfiniBand ports; and the small
readers of NetBox's nested references the translation shares.

Pure, as sync/translate.py is: plain JSON dicts in, document fragments out.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from api.domain.vocabulary import normalise_gpu_vendor

Record = dict[str, Any]  # a NetBox object as its REST API (and pynetbox) returns it

_VENDORS = (  # manufacturer name (lower case) contains -> vendor code
    ("nvidia", "NVIDIA"),
    ("advanced micro devices", "AMD"),
    ("amd", "AMD"),
    ("habana", "INTEL"),
    ("intel", "INTEL"),
)
_GBPS = re.compile(r"(\d+(?:\.\d+)?)\s*Gbps", re.IGNORECASE)


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


def tags_of(tags: list[Record]) -> dict[str, str]:
    """NetBox tags named "key:value" become tags[key] = value; other tags are not synced."""
    found: dict[str, str] = {}
    for tag in tags:
        key, colon, value = str(tag.get("name") or "").partition(":")
        if colon and key.strip() and value.strip():
            found[key.strip()] = value.strip()
    return found


# -- GPUs and ports -----------------------------------------------------------------------


def gpus_by_device(
    modules: list[Record],
    inventory_items: list[Record],
    module_types: dict[int, Record],
    note: Callable[[str, str], None],
) -> dict[int, list[Record]]:
    """GPU modules (module types with NetBox's GPU profile); else inventory items. An
    unknown vendor is told to ``note(device, message)``."""
    found: dict[int, list[Record]] = defaultdict(list)
    unknown: set[tuple[str, str]] = set()  # (device, manufacturer): noted once, not per GPU

    def code_of(manufacturer: str, device: str) -> str:
        code, known = vendor_code(manufacturer)
        if not known and (device, manufacturer) not in unknown:
            unknown.add((device, manufacturer))
            note(device, f"unknown GPU vendor {manufacturer!r}")
        return code

    for module in sorted(modules, key=module_order):
        module_type = by_id(module_types, (module.get("module_type") or {}).get("id"))
        if module_type is None or name_of(module_type.get("profile")) != "GPU":
            continue
        device = module["device"]
        memory_gb = (module_type.get("attributes") or {}).get("memory")
        found[device["id"]].append(
            {
                "vendorCode": code_of(
                    name_of(module_type.get("manufacturer")) or "", device.get("name", "")
                ),
                "modelNo": module_type.get("model"),
                "memoryMB": int(memory_gb) * 1024 if memory_gb is not None else None,
            }
        )
    with_modules = set(found)  # their GPU modules win over inventory items
    for item in sorted(inventory_items, key=lambda i: (i["device"]["id"], i["id"])):
        device_id = item["device"]["id"]
        if device_id in with_modules:
            continue
        device = (item.get("device") or {}).get("name") or f"#{device_id}"
        found[device_id].append(
            {
                "vendorCode": code_of(name_of(item.get("manufacturer")) or "", device),
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


def parts_by_device(
    modules: list[Record], module_types: dict[int, Record]
) -> dict[int, dict[str, int]]:
    """CPU cores, memory and disk summed over modules with NetBox's CPU, Memory and Hard
    disk profiles: the fallback when a device has no custom fields for them."""
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for module in modules:
        module_type = by_id(module_types, (module.get("module_type") or {}).get("id")) or {}
        part = _PART_PROFILES.get(name_of(module_type.get("profile")) or "")
        if part is None:
            continue
        total, attribute, scale = part
        value = amount((module_type.get("attributes") or {}).get(attribute)) * scale
        totals = found[module["device"]["id"]]
        totals[total] = totals.get(total, 0) + value
    return found


def by_id[T](table: dict[int, T], netbox_id: int | None) -> T | None:
    """A NetBox object by its id, read from a nested reference that may be missing."""
    return None if netbox_id is None else table.get(netbox_id)


def module_order(module: Record) -> tuple[int, str, int]:
    bay = module.get("module_bay") or {}
    return (module["device"]["id"], str(bay.get("name") or ""), module["id"])


def ports_by_device(
    interfaces: list[Record], switches: dict[int, Record]
) -> dict[int, list[Record]]:
    found: dict[int, list[Record]] = defaultdict(list)
    for interface in sorted(interfaces, key=lambda i: (i["device"]["id"], i["name"])):
        peer = next(iter(interface.get("link_peers") or []), None)
        peer_device = (peer or {}).get("device") or {}
        switch = by_id(switches, peer_device.get("id"))
        fabric = tags_of((switch or {}).get("tags") or []).get("fabric")
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


def slug(nested: Record | None) -> str | None:
    return (nested or {}).get("slug")


def name_of(nested: Record | None) -> str | None:
    return (nested or {}).get("name")


def amount(value: Any) -> int:
    """A NetBox number (custom fields may hold text, vCPUs are decimals) as a whole number."""
    if value in (None, ""):
        return 0
    try:
        return max(0, int(float(value)))
    except (TypeError, ValueError):
        return 0
