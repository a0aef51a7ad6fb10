"""Candidates and the in-memory index the engine searches.

A request must not look at every device one by one in Python. Each candidate owns a slot,
and every question the engine asks is a boolean array over the slots (numpy): "eligible
for vcluster", "gpus.vendorCode is nvidia" (an inverted index, path -> normalised value ->
slots, built lazily per path the first time a profile asks for it), "at least 8 GPUs
free". A funnel step is one vectorised AND and one count, whatever the fleet's size, and
the packing choice is a vectorised minimum. All of it is kept current on every change.

The index may be a moment stale; the database, not this index, decides whether a claim
succeeds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.domain.matching.profile import InventoryType
from api.domain.matching.request import normalise
from api.domain.vocabulary import Kind, Status


@dataclass(frozen=True, slots=True)
class Capacity:
    cpu: int = 0
    memory_mb: int = 0
    storage_gb: int = 0
    gpus: int = 0

    def covers(self, amounts: Mapping[str, int]) -> bool:
        return all(getattr(self, name) >= amount for name, amount in amounts.items())


@dataclass(frozen=True, slots=True)
class Candidate:
    """A device or VM as the engine sees it: its document and its capacity."""

    id: str
    kind: Kind  # BAREMETAL or VM
    hostname: str
    status: Status
    document: Mapping[str, Any]
    total: Capacity
    free: Capacity
    site: str | None = None
    fabrics: frozenset[str] = frozenset()
    shareable: bool = True
    generation: int = 1
    healthy: bool = True  # no health condition on it, its GPUs or its ports

    @property
    def whole(self) -> bool:
        """Holds no slice: may be offered whole to baremetal, mks and vm."""
        return self.free == self.total

    @property
    def packing_key(self) -> tuple[int, int, int, str]:
        """Smallest first: fewest free GPUs, then CPU, then memory; ties by hostname."""
        f = self.free
        return (f.gpus, f.cpu, f.memory_mb, self.hostname)


DIMENSIONS = ("cpu", "memory_mb", "storage_gb", "gpus")


def eligible_for(candidate: Candidate, inventory_type: InventoryType) -> bool:
    """The first step of every funnel: the right kind, available and healthy, and whole or
    shareable."""
    if candidate.status != Status.AVAILABLE or not candidate.healthy:
        return False
    if inventory_type == InventoryType.VM:
        return candidate.kind == Kind.VM and candidate.whole
    if candidate.kind != Kind.BAREMETAL:
        return False
    if inventory_type == InventoryType.VCLUSTER:
        return candidate.shareable
    return candidate.whole


def kind_for(inventory_type: InventoryType) -> str:
    return "vm" if inventory_type == InventoryType.VM else "baremetal"


def path_values(document: Any, path: str) -> list[Any]:
    """Values at a dotted path: a dict step takes the key, a list is mapped over, and a path
    that ends at a dict yields its values. A missing path yields nothing."""
    current: list[Any] = [document]
    for step in path.split("."):
        following: list[Any] = []
        for value in current:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Mapping) and step in item:
                    following.append(item[step])
        current = following
    out: list[Any] = []
    for value in current:
        if isinstance(value, Mapping):
            out.extend(value.values())
        elif isinstance(value, list):
            out.extend(v for v in value if not isinstance(v, Mapping | list))
        elif value is not None:
            out.append(value)
    return out


Mask = np.ndarray  # bool, one entry per slot; callers treat masks they get as read-only

# The key of "no value at this path", for ``CandidateIndex.matching``: a document without
# a tenant is the platform's shared pool. Normalised values are pairs, never this.
ABSENT = ("absent",)

# Values held by at least this many candidates keep a mask, updated in place on change;
# rarer ones (hostnames, serials) keep only their slots and get a mask built when asked.
_DENSE_VALUE = 256


class _Members:
    """The slots holding one value at one path."""

    __slots__ = ("mask", "slots")

    def __init__(self) -> None:
        self.slots: set[int] = set()
        self.mask: Mask | None = None


class CandidateIndex:
    """Every matchable item, with the lookups the engine needs kept current on change."""

    def __init__(self, candidates: Iterable[Candidate] = ()):
        self.items: dict[str, Candidate] = {}
        self._slot: dict[str, int] = {}
        self._at: list[Candidate | None] = []
        self._spare: list[int] = []
        self._size = 0
        self._free = np.zeros((len(DIMENSIONS), 0), dtype=np.int64)
        self._kind: dict[str, Mask] = {}
        self._eligible: dict[InventoryType, Mask] = {t: np.zeros(0, bool) for t in InventoryType}
        self._sites: dict[str | None, Mask] = {}
        self._fabrics: dict[tuple[str | None, str], Mask] = {}
        self._paths: dict[str, dict[Any, _Members]] = {}
        self._host_rank: np.ndarray | None = None  # recomputed when a hostname comes or goes
        candidates = list(candidates)
        self._grow(len(candidates))
        for candidate in candidates:
            self.upsert(candidate)

    def __len__(self) -> int:
        return len(self.items)

    # -- keeping it current ------------------------------------------------------------

    def _grow(self, needed: int) -> None:
        if needed <= self._size:
            return
        size = max(needed, 2 * self._size, 64)

        def wider(mask: Mask) -> Mask:
            grown = np.zeros(size, dtype=bool)
            grown[: len(mask)] = mask
            return grown

        free = np.zeros((len(DIMENSIONS), size), dtype=np.int64)
        free[:, : self._size] = self._free
        self._free = free
        self._kind = {k: wider(m) for k, m in self._kind.items()}
        self._eligible = {t: wider(self._eligible.get(t, np.zeros(0, bool))) for t in InventoryType}
        self._sites = {k: wider(m) for k, m in self._sites.items()}
        self._fabrics = {k: wider(m) for k, m in self._fabrics.items()}
        for values in self._paths.values():
            for members in values.values():
                members.mask = None if members.mask is None else wider(members.mask)
        self._spare.extend(range(size - 1, self._size - 1, -1))
        self._at.extend([None] * (size - self._size))
        self._size = size
        self._host_rank = None

    def upsert(self, candidate: Candidate) -> None:
        old = self.items.get(candidate.id)
        if old is None:
            if not self._spare:
                self._grow(self._size + 1)
            slot = self._spare.pop()
            self._slot[candidate.id] = slot
        else:
            slot = self._slot[candidate.id]
        self.items[candidate.id] = candidate
        self._at[slot] = candidate
        for row, dimension in enumerate(DIMENSIONS):
            self._free[row, slot] = getattr(candidate.free, dimension)
        if old is None or old.kind != candidate.kind:
            if old is not None:
                self._kind[old.kind][slot] = False
            self._mask(self._kind, candidate.kind)[slot] = True
        for inventory_type, mask in self._eligible.items():
            mask[slot] = eligible_for(candidate, inventory_type)
        if old is None or (old.site, old.fabrics) != (candidate.site, candidate.fabrics):
            if old is not None:
                self._leave_topology(old, slot)
            self._mask(self._sites, candidate.site)[slot] = True
            for fabric in candidate.fabrics:
                self._mask(self._fabrics, (candidate.site, fabric))[slot] = True
        if old is None or old.document is not candidate.document:
            # A capacity-only change keeps its document object: no path work at all.
            for path, values in self._paths.items():
                before = _keys(old.document, path) if old is not None else set()
                after = _keys(candidate.document, path)
                for key in before - after:
                    self._leave(values, key, slot)
                for key in after - before:
                    self._join(values, key, slot)
        if old is None or old.hostname != candidate.hostname:
            self._host_rank = None

    def remove(self, item_id: str) -> None:
        candidate = self.items.pop(item_id, None)
        if candidate is None:
            return
        slot = self._slot.pop(item_id)
        self._at[slot] = None
        self._spare.append(slot)
        self._free[:, slot] = 0
        self._kind[candidate.kind][slot] = False
        for mask in self._eligible.values():
            mask[slot] = False
        self._leave_topology(candidate, slot)
        for path, values in self._paths.items():
            for key in _keys(candidate.document, path):
                self._leave(values, key, slot)

    def _mask(self, masks: dict[Any, Mask], key: Any) -> Mask:
        mask = masks.get(key)
        if mask is None:
            mask = masks[key] = np.zeros(self._size, dtype=bool)
        return mask

    def _leave_topology(self, candidate: Candidate, slot: int) -> None:
        self._sites[candidate.site][slot] = False
        for fabric in candidate.fabrics:
            self._fabrics[(candidate.site, fabric)][slot] = False

    def _join(self, values: dict[Any, _Members], key: Any, slot: int) -> None:
        members = values.get(key)
        if members is None:
            members = values[key] = _Members()
        members.slots.add(slot)
        if members.mask is not None:
            members.mask[slot] = True

    def _leave(self, values: dict[Any, _Members], key: Any, slot: int) -> None:
        members = values.get(key)
        if members is None:
            return
        members.slots.discard(slot)
        if members.mask is not None:
            members.mask[slot] = False
        if not members.slots:
            del values[key]

    # -- questions the engine asks -----------------------------------------------------

    def nothing(self) -> Mask:
        return np.zeros(self._size, dtype=bool)

    def of_kind(self, kind: str) -> Mask:
        return self._kind.get(kind, self.nothing())

    def eligible(self, inventory_type: InventoryType) -> Mask:
        return self._eligible[inventory_type]

    def matching(self, path: str, keys: Iterable[Any]) -> Mask:
        """Items whose document holds any of the normalised ``keys`` at ``path`` (ABSENT:
        or none at all)."""
        values = self._paths.get(path)
        if values is None:
            values = self._paths[path] = {}
            for item_id, candidate in self.items.items():
                slot = self._slot[item_id]
                for key in _keys(candidate.document, path):
                    self._join(values, key, slot)
        found: Mask | None = None
        for key in keys:
            members = values.get(key)
            if members is None:
                continue
            if members.mask is None:
                mask = self.nothing()
                mask[list(members.slots)] = True
                if len(members.slots) >= _DENSE_VALUE:
                    members.mask = mask
            else:
                mask = members.mask
            found = mask if found is None else found | mask
        return self.nothing() if found is None else found

    def having(self, item_ids: Collection[str]) -> Mask:
        """The given items (those the index holds)."""
        mask = self.nothing()
        mask[[self._slot[i] for i in item_ids if i in self._slot]] = True
        return mask

    def free_at_least(self, dimension: str, amount: int) -> Mask:
        mask: Mask = self._free[DIMENSIONS.index(dimension)] >= amount
        return mask

    def largest_free(self, among: Mask, dimension: str) -> int:
        free = self._free[DIMENSIONS.index(dimension)][among]
        return int(free.max()) if len(free) else 0

    def sites(self) -> dict[str | None, Mask]:
        return self._sites

    def fabrics(self) -> dict[tuple[str | None, str], Mask]:
        """Items per (site, InfiniBand fabric)."""
        return self._fabrics

    def smallest(self, among: Mask, count: int) -> list[Candidate]:
        """The ``count`` smallest items by packing key (see Candidate.packing_key)."""
        slots = np.flatnonzero(among)
        if len(slots) == 0 or count <= 0:
            return []
        gpus, cpu, memory = (self._free[DIMENSIONS.index(d)] for d in ("gpus", "cpu", "memory_mb"))
        rank = self._hostname_rank()
        if count == 1:  # narrow key by key: a few vectorised passes, no sort
            for key in (gpus, cpu, memory, rank):
                values = key[slots]
                slots = slots[values == values.min()]
            return [self._candidate(int(slots[0]))]
        order = np.lexsort((rank[slots], memory[slots], cpu[slots], gpus[slots]))
        return [self._candidate(int(s)) for s in slots[order[:count]]]

    def candidates_in(self, among: Mask) -> list[Candidate]:
        """The items of a mask, in slot order."""
        return [self._candidate(int(slot)) for slot in np.flatnonzero(among)]

    def _candidate(self, slot: int) -> Candidate:
        candidate = self._at[slot]
        assert candidate is not None
        return candidate

    def _hostname_rank(self) -> np.ndarray:
        """Each slot's place in (hostname, id) order, the packing key's tie-break."""
        if self._host_rank is None:
            occupied = [(c.hostname, c.id, self._slot[c.id]) for c in self.items.values()]
            rank = np.zeros(self._size, dtype=np.int64)
            for place, (_, _, slot) in enumerate(sorted(occupied)):
                rank[slot] = place
            self._host_rank = rank
        return self._host_rank


def _keys(document: Any, path: str) -> set[Any]:
    """The normalised values at ``path``, or ABSENT when the document has none there."""
    return {normalise(v) for v in path_values(document, path)} or {ABSENT}
