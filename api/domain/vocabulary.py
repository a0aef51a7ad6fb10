"""The words of the inventory: kinds, statuses, vendors. Shared by every layer."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    BAREMETAL = "baremetal"
    VM = "vm"
    SWITCH = "switch"
    INFINIBAND = "infiniband"


# The kinds stored as "device documents" (same shape, same table, both matchable).
DOCUMENT_KINDS = (Kind.BAREMETAL, Kind.VM)


class Status(StrEnum):
    AVAILABLE = "available"
    ALLOCATED = "allocated"
    RESERVED = "reserved"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"
    RETIRED = "retired"


class SourceSystem(StrEnum):
    MANUAL = "manual"
    NETBOX = "netbox"


KNOWN_GPU_VENDORS = ("NVIDIA", "AMD", "INTEL")


def normalise_gpu_vendor(raw: str) -> str:
    """Vendor codes are compared case-insensitively; we store the canonical upper case.

    Unknown vendors are kept (upper-cased) rather than refused: a new accelerator vendor
    must not block an import.
    """
    return raw.strip().upper()
