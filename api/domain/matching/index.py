"""Candidates and the in-memory index the engine searches.

A request must not scan every device: match filters are answered from an inverted index
(path -> normalised value -> ids), built lazily per path the first time a profile asks for
it and kept up to date on every change. Only the survivors of the match filters are looked
at one by one. The index may be a moment stale; the database, not this index, decides
whether a claim succeeds.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from api.domain.matching.profile import InventoryType
from api.domain.matching.request import normalise


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
    kind: str  # "baremetal" | "vm"
    hostname: str
    status: str
    document: Mapping[str, Any]
    total: Capacity
    free: Capacity
    site: str | None = None
    fabrics: frozenset[str] = frozenset()
    shareable: bool = True
    generation: int = 1

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
    """The first step of every funnel: the right kind, available, and whole or shareable."""
    if candidate.status != "available":
        return False
    if inventory_type == InventoryType.VM:
        return candidate.kind == "vm" and candidate.whole
    if candidate.kind != "baremetal":
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


class SortedIds:
    """Ids kept sorted by a key, with the ids also in a plain list: everything from a key
    onwards is a list slice (a memory copy), not a Python loop."""

    def __init__(self, pairs: Iterable[tuple[Any, str]] = ()):
        self.entries = sorted(pairs)
        self.ids = [item_id for _, item_id in self.entries]

    def add(self, key: Any, item_id: str) -> None:
        position = bisect.bisect_left(self.entries, (key, item_id))
        self.entries.insert(position, (key, item_id))
        self.ids.insert(position, item_id)

    def discard(self, key: Any, item_id: str) -> None:
        position = bisect.bisect_left(self.entries, (key, item_id))
        if position < len(self.entries) and self.entries[position] == (key, item_id):
            del self.entries[position]
            del self.ids[position]

    def ids_from(self, key: Any) -> list[str]:
        """Ids whose key is not below ``key`` (ids compare after every real key part)."""
        return self.ids[bisect.bisect_left(self.entries, (key, "")) :]


class CandidateIndex:
    """Every matchable item, with the lookups the engine needs kept current on change."""

    def __init__(self, candidates: Iterable[Candidate] = ()):
        self.items: dict[str, Candidate] = {c.id: c for c in candidates}
        self._by_kind: dict[str, set[str]] = {"baremetal": set(), "vm": set()}
        self._eligible: dict[InventoryType, set[str]] = {t: set() for t in InventoryType}
        self._paths: dict[str, dict[Any, set[str]]] = {}
        for candidate in self.items.values():
            self._add_to_sets(candidate)
        # Sorted once here; kept sorted by upsert/remove afterwards.
        self._order = SortedIds((c.packing_key, c.id) for c in self.items.values())
        self._by_free = {
            d: SortedIds((getattr(c.free, d), c.id) for c in self.items.values())
            for d in DIMENSIONS
        }
        self._free = {
            d: {c.id: getattr(c.free, d) for c in self.items.values()} for d in DIMENSIONS
        }

    def __len__(self) -> int:
        return len(self.items)

    def _add_to_sets(self, candidate: Candidate) -> None:
        self._by_kind.setdefault(candidate.kind, set()).add(candidate.id)
        for inventory_type, ids in self._eligible.items():
            if eligible_for(candidate, inventory_type):
                ids.add(candidate.id)
        for path, values in self._paths.items():
            for key in {normalise(v) for v in path_values(candidate.document, path)}:
                values.setdefault(key, set()).add(candidate.id)

    def upsert(self, candidate: Candidate) -> None:
        if candidate.id in self.items:
            self.remove(candidate.id)
        self.items[candidate.id] = candidate
        self._add_to_sets(candidate)
        self._order.add(candidate.packing_key, candidate.id)
        for dimension, entries in self._by_free.items():
            entries.add(getattr(candidate.free, dimension), candidate.id)
            self._free[dimension][candidate.id] = getattr(candidate.free, dimension)

    def remove(self, item_id: str) -> None:
        candidate = self.items.pop(item_id, None)
        if candidate is None:
            return
        self._by_kind.get(candidate.kind, set()).discard(item_id)
        for ids in self._eligible.values():
            ids.discard(item_id)
        for path, values in self._paths.items():
            for key in {normalise(v) for v in path_values(candidate.document, path)}:
                ids = values.get(key)
                if ids is not None:
                    ids.discard(item_id)
                    if not ids:
                        del values[key]
        self._order.discard(candidate.packing_key, item_id)
        for dimension, entries in self._by_free.items():
            entries.discard(getattr(candidate.free, dimension), item_id)
            del self._free[dimension][item_id]

    def of_kind(self, kind: str) -> set[str]:
        return self._by_kind.get(kind, set())

    def eligible(self, inventory_type: InventoryType) -> set[str]:
        return self._eligible[inventory_type]

    def matching(self, path: str, keys: Iterable[Any]) -> set[str]:
        """Ids whose document holds any of the normalised ``keys`` at ``path``."""
        values = self._paths.get(path)
        if values is None:
            values = {}
            for candidate in self.items.values():
                for key in {normalise(v) for v in path_values(candidate.document, path)}:
                    values.setdefault(key, set()).add(candidate.id)
            self._paths[path] = values
        keys = list(keys)
        if len(keys) == 1:
            return values.get(keys[0], set())  # no copy; callers only intersect it
        found: set[str] = set()
        for key in keys:
            found |= values.get(key, set())
        return found

    def with_free_at_least(self, dimension: str, amount: int) -> list[str]:
        """Ids with at least ``amount`` free in ``dimension``."""
        return self._by_free[dimension].ids_from(amount)

    def free_amounts(self, dimension: str) -> dict[str, int]:
        """Free amount by id, for one dimension (read only)."""
        return self._free[dimension]

    def count_free_at_least(self, dimension: str, amount: int) -> int:
        entries = self._by_free[dimension].entries
        return len(entries) - bisect.bisect_left(entries, (amount, ""))

    def in_packing_order(self, at_least: tuple[int, int, int] = (0, 0, 0)) -> Iterator[Candidate]:
        """Items smallest first (see Candidate.packing_key), starting at the first whose
        (GPUs, CPU, memory) free is not below ``at_least``: nothing before it can fit."""
        for item_id in self._order.ids_from((*at_least, "")):
            yield self.items[item_id]
