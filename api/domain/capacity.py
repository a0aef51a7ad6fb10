"""Capacity views (seed 004): how much there is, how much may be allocated, how much is.

For each resource (CPU, memory, storage, GPUs) four numbers, as seed 004 names them:

- ``capacity``: what the hardware has, over every device in the view that is not retired;
- ``allocatable``: the capacity of the devices that can take allocations now (status
  available or allocated, and healthy); a device in maintenance, offline or reserved, or
  with a health condition, counts in capacity but not here;
- ``allocated``: what active allocations hold (total minus free), wherever it sits, so
  it always equals the sum of the allocations' amounts;
- ``available``: what is free on the allocatable devices; what a match could take.

The database sums per group (site, tenant, GPU kind); this module adds the groups up into
the views. Pure: no SQL, no HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from api.domain.vocabulary import Status

# Devices in these statuses can take allocations (DESIGN.md: only AVAILABLE items are
# matched; an ALLOCATED device may hold slices and take more).
ALLOCATABLE = (Status.AVAILABLE.value, Status.ALLOCATED.value)
RESOURCES = ("cpu", "memory_mb", "storage_gb", "gpus")


@dataclass(frozen=True)
class Amounts:
    capacity: int = 0
    allocatable: int = 0
    allocated: int = 0
    available: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def utilization_percent(self) -> float:
        """Allocated over allocatable, in percent; 0 when nothing is allocatable."""
        return round(100.0 * self.allocated / self.allocatable, 2) if self.allocatable else 0.0


@dataclass(frozen=True)
class Resources:
    cpu: Amounts = Amounts()
    memory_mb: Amounts = Amounts()
    storage_gb: Amounts = Amounts()
    gpus: Amounts = Amounts()

    def __add__(self, other: Resources) -> Resources:
        return Resources(*(getattr(self, r) + getattr(other, r) for r in RESOURCES))


def node_resources(
    status: str, healthy: bool, total: Sequence[int], free: Sequence[int]
) -> tuple[Resources, bool]:
    """One device's resources (totals and frees in RESOURCES order), and whether it is
    allocatable. A retired device has none: it has left the fleet."""
    if status == Status.RETIRED.value:
        return Resources(), False
    allocatable = status in ALLOCATABLE and healthy
    amounts = [
        Amounts(t, t if allocatable else 0, t - f, f if allocatable else 0)
        for t, f in zip(total, free, strict=True)
    ]
    return Resources(*amounts), allocatable


@dataclass(frozen=True)
class GpuKind:
    vendor: str
    model: str


@dataclass
class GpuModelTally:
    """The GPUs of one vendor and model in a view, and on how many nodes they sit."""

    kind: GpuKind
    nodes: int = 0
    gpus: Amounts = Amounts()


@dataclass(frozen=True)
class Tally:
    """Sums over a set of devices: one grouped row from the database, or groups added."""

    site: str | None
    tenant_id: str | None
    gpu_kind: GpuKind | None  # None: no GPUs, or a mix (mixed_gpus below says which)
    nodes: int
    nodes_allocatable: int
    whole_nodes_free: int  # allocatable with nothing allocated: what a whole-node ask takes
    resources: Resources


@dataclass(frozen=True)
class MixedGpus:
    """The GPUs of one kind on devices whose GPUs are not all alike, per site and tenant."""

    site: str | None
    tenant_id: str | None
    kind: GpuKind
    nodes: int
    gpus: Amounts


@dataclass
class CapacityGroup:
    """A view's row: everything, or one site, or one tenant."""

    key: str | None
    nodes: int = 0
    nodes_allocatable: int = 0
    whole_nodes_free: int = 0
    resources: Resources = Resources()
    gpu_models: dict[GpuKind, GpuModelTally] = field(default_factory=dict)

    def add(self, tally: Tally) -> None:
        self.nodes += tally.nodes
        self.nodes_allocatable += tally.nodes_allocatable
        self.whole_nodes_free += tally.whole_nodes_free
        self.resources = self.resources + tally.resources
        if tally.gpu_kind is not None:
            self._add_gpus(tally.gpu_kind, tally.nodes, tally.resources.gpus)

    def add_mixed(self, mixed: MixedGpus) -> None:
        self._add_gpus(mixed.kind, mixed.nodes, mixed.gpus)

    def _add_gpus(self, kind: GpuKind, nodes: int, gpus: Amounts) -> None:
        tally = self.gpu_models.setdefault(kind, GpuModelTally(kind))
        tally.nodes += nodes
        tally.gpus = tally.gpus + gpus

    @property
    def models(self) -> list[GpuModelTally]:
        """By vendor, then model."""
        return sorted(self.gpu_models.values(), key=lambda t: (t.kind.vendor, t.kind.model))

    @property
    def utilization_percent(self) -> float:
        """Of the GPUs: allocated over allocatable."""
        return self.resources.gpus.utilization_percent


@dataclass
class CapacityView:
    total: CapacityGroup
    sites: list[CapacityGroup]
    tenants: list[CapacityGroup]


def summarise(
    tallies: Iterable[Tally],
    mixed: Iterable[MixedGpus],
    tenant_slug: Callable[[str | None], str | None],
) -> CapacityView:
    """Adds the database's groups up into the whole, per site and per tenant (by slug).
    Groups are ordered by key, the unset key (no site, no tenant) last."""
    total = CapacityGroup(None)
    sites: dict[str | None, CapacityGroup] = {}
    tenants: dict[str | None, CapacityGroup] = {}
    for tally in tallies:
        total.add(tally)
        sites.setdefault(tally.site, CapacityGroup(tally.site)).add(tally)
        slug = tenant_slug(tally.tenant_id)
        tenants.setdefault(slug, CapacityGroup(slug)).add(tally)
    for entry in mixed:
        total.add_mixed(entry)
        sites.setdefault(entry.site, CapacityGroup(entry.site)).add_mixed(entry)
        slug = tenant_slug(entry.tenant_id)
        tenants.setdefault(slug, CapacityGroup(slug)).add_mixed(entry)
    return CapacityView(total, _ordered(sites), _ordered(tenants))


def _ordered(groups: dict[str | None, CapacityGroup]) -> list[CapacityGroup]:
    return sorted(groups.values(), key=lambda g: (g.key is None, g.key or ""))


def merged(groups: Iterable[CapacityGroup], key: str | None = None) -> CapacityGroup:
    """Several groups as one: sums of nodes and amounts, GPU models merged by kind."""
    total = CapacityGroup(key)
    for group in groups:
        total.nodes += group.nodes
        total.nodes_allocatable += group.nodes_allocatable
        total.whole_nodes_free += group.whole_nodes_free
        total.resources = total.resources + group.resources
        for model in group.gpu_models.values():
            total._add_gpus(model.kind, model.nodes, model.gpus)
    return total


# -- another inventory's answer, as JSON (the fleet view reads other gpuinv services) ----

_AMOUNT_KEYS = ("capacity", "allocatable", "allocated", "available")
_RESOURCE_KEYS = {"cpu": "cpu", "memoryMB": "memory_mb", "storageGB": "storage_gb", "gpus": "gpus"}


def group_from_json(data: Any) -> CapacityGroup:
    """A CapacityGroup from another inventory's GraphQL answer (``capacity.total``).
    Raises ValueError saying what is wrong: a source's answer is not trusted blindly."""
    group = CapacityGroup(_text(data, "key", optional=True))
    group.nodes = _count(data, "nodes")
    group.nodes_allocatable = _count(data, "nodesAllocatable")
    group.whole_nodes_free = _count(data, "wholeNodesFree")
    resources = _field(data, "resources", dict)
    group.resources = Resources(
        **{name: _amounts(_field(resources, key, dict)) for key, name in _RESOURCE_KEYS.items()}
    )
    for model in _field(data, "gpuModels", list):
        kind = GpuKind(_text(model, "vendor"), _text(model, "model"))
        group._add_gpus(kind, _count(model, "nodes"), _amounts(_field(model, "gpus", dict)))
    return group


def _field(data: Any, key: str, kind: type) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise ValueError(f"{key}: expected {kind.__name__}, got {_shown(data, key)}")
    return data[key]


def _count(data: Any, key: str) -> int:
    value: int = _field(data, key, int)
    if isinstance(value, bool) or value < 0:
        raise ValueError(f"{key}: expected a count, got {value!r}")
    return value


def _text(data: Any, key: str, optional: bool = False) -> Any:
    if optional and isinstance(data, dict) and data.get(key) is None:
        return None
    return _field(data, key, str)


def _amounts(data: Any) -> Amounts:
    return Amounts(*(_count(data, key) for key in _AMOUNT_KEYS))


def _shown(data: Any, key: str) -> str:
    if not isinstance(data, dict):
        return type(data).__name__
    return repr(data.get(key))[:60] if key in data else "nothing"
