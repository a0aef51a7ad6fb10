"""The benchmarks' fleets: realistic GPU servers as import documents, seeded.

Made of api/demo.py's SHAPES (8-GPU NVIDIA H100/H200/B200, AMD MI300X, Intel Gaudi3 and
4-GPU L40S servers) on its SITES (five sites, three regions), hostnames
``<site>-gpu-NNNNNN``. The same seed gives the same fleet, document for document, so a
benchmark's figures can be compared between runs and commits. Two flavours, kept as they
were measured: ``fleet_documents`` (matching, claims, ops, liveness: InfiniBand fabrics,
some servers not shareable) and ``tenant_fleet`` (inventory: spread over the demo's
tenants).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from api.demo import SHAPES, SITES, TENANTS, server_document

SHAPE_WEIGHTS = [shape[-1] for shape in SHAPES]  # how common each shape is
SLICE_CPU, SLICE_MEMORY_MB = 16, 131072  # a vcluster slice's CPUs and MB per GPU it holds


@dataclass(frozen=True)
class Placement:
    """One server of a fleet: its shape, its site and its number there, its serial."""

    serial: int
    shape: tuple[Any, ...]
    site: str
    region: str
    halls: list[str]
    number: int

    def document(self, rng: random.Random, serial_base: int, **extra: Any) -> dict[str, Any]:
        """Its import document (api/demo.py's ``server_document``), hostname
        ``<site>-gpu-NNNNNN``, serial ``SN<serial_base + serial>``."""
        return server_document(
            rng,
            self.shape,
            self.site,
            self.region,
            self.halls,
            self.number,
            f"{self.site}-gpu-{self.number:06d}",
            f"SN{serial_base + self.serial}",
            **extra,
        )


def placements(rng: random.Random, count: int) -> Iterator[Placement]:
    """``count`` servers, drawn lazily: a caller's own draws from ``rng`` for one server
    come before the next's, as they did when each fleet had its own loop."""
    per_site: dict[str, int] = {}
    for serial in range(count):
        shape = rng.choices(SHAPES, SHAPE_WEIGHTS)[0]
        site, region, halls = rng.choice(SITES)
        number = per_site[site] = per_site.get(site, 0) + 1
        yield Placement(serial, shape, site, region, halls, number)


def fleet_documents(count: int, seed: int, all_available: bool = False) -> list[dict[str, Any]]:
    """``count`` device documents in the import format: the demo's shapes and sites, two
    InfiniBand fabrics a site, hostnames ``<site>-gpu-NNNNNN``, 5% tagged shareable=false."""
    rng = random.Random(seed)
    documents = []
    for placed in placements(rng, count):
        fabric = f"{placed.site}-fabric-{'a' if placed.number % 3 else 'b'}"
        shareable = rng.random() >= 0.05
        document = placed.document(
            rng,
            2_000_000,
            fabric=fabric,
            leaf_prefix=f"{fabric}-leaf",
            status="available" if all_available else None,
        )
        if not shareable:
            document["tags"]["shareable"] = "false"
        documents.append(document)
    return documents


def tenant_fleet(count: int, seed: int = 42) -> list[dict[str, Any]]:
    """``count`` device documents: demo shapes and sites, unique hostnames and serials,
    each of one of the demo's tenants or of none."""
    rng = random.Random(seed)
    documents = []
    for placed in placements(rng, count):
        document = placed.document(rng, 1_000_000)
        tenant = rng.choice([slug for slug, _ in TENANTS] + [None])
        if tenant:
            document["tenant"] = tenant
        documents.append(document)
    return documents
