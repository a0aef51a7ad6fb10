"""What the inventory benchmark sends: the fleet, encoded as import requests before any
clock starts, and the device-list queries whose latency it measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.fleet import tenant_fleet
from bench.graphql import import_bodies

SLOW_REQUEST = 10.0  # seconds; a page request slower than this is logged as it happens
MAX_PAGE = 500  # the service's default GPUINV_MAX_PAGE_SIZE; used to walk to a deep cursor

FILTER_SITE, FILTER_VENDOR = "blr-1", "NVIDIA"
PAGE_FIELDS = (
    "edges { node { id hostname freeGpus gpus { modelNo } } } pageInfo { endCursor hasNextPage }"
)
FILTERED_QUERY = (
    "query($first: Int!, $after: String) { devices(first: $first, after: $after, "
    f'filter: {{status: [AVAILABLE], gpuVendor: "{FILTER_VENDOR}", site: ["{FILTER_SITE}"]}}) '
    f"{{ {PAGE_FIELDS} }} }}"
)
UNFILTERED_QUERY = f"query {{ devices(first: 50) {{ {PAGE_FIELDS} }} }}"
SHAPE_NAMES = {
    "filtered": "filtered first page",
    "deep": "filtered, deep cursor",
    "unfiltered": "unfiltered first page",
}


def matches_filter(document: dict[str, Any]) -> bool:
    """What FILTERED_QUERY should select, computed locally to know the list's length."""
    return (
        document["status"] == "available"
        and document["site"] == FILTER_SITE
        and any(g["vendorCode"] == FILTER_VENDOR for g in document["gpus"])
    )


@dataclass
class Fleet:
    """One fleet size, ready to send: encoded import requests, and the filter's hit count.

    The device dicts themselves are not kept: millions of small objects in the client
    would make its own garbage collector part of the measured latency.
    """

    size: int
    bodies: list[bytes]
    matching: int


def prepare_fleet(size: int, batch_size: int) -> Fleet:
    devices = tenant_fleet(size)
    return Fleet(size, import_bodies(devices, batch_size), sum(map(matches_filter, devices)))
