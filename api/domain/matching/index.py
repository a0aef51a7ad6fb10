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


class CandidateIndex:
    """Every matchable item, with the lookups the engine needs kept current on change."""

    def __init__(self, candidates: Iterable[Candidate] = ()):
        self.items: dict[str, Candidate] = {}
        self._by_kind: dict[str, set[str]] = {"baremetal": set(), "vm": set()}
        self._eligible: dict[InventoryType, set[str]] = {t: set() for t in InventoryType}
        self._paths: dict[str, dict[Any, set[str]]] = {}
        self._order: list[tuple[tuple[int, int, int, str], str]] = []
        for candidate in candidates:
            self.upsert(candidate)

    def __len__(self) -> int:
        return len(self.items)

    def upsert(self, candidate: Candidate) -> None:
        if candidate.id in self.items:
            self.remove(candidate.id)
        self.items[candidate.id] = candidate
        self._by_kind.setdefault(candidate.kind, set()).add(candidate.id)
        for inventory_type, ids in self._eligible.items():
            if eligible_for(candidate, inventory_type):
                ids.add(candidate.id)
        for path, values in self._paths.items():
            for key in {normalise(v) for v in path_values(candidate.document, path)}:
                values.setdefault(key, set()).add(candidate.id)
        bisect.insort(self._order, (candidate.packing_key, candidate.id))

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
        position = bisect.bisect_left(self._order, (candidate.packing_key, item_id))
        if position < len(self._order) and self._order[position][1] == item_id:
            del self._order[position]

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
        found: set[str] = set()
        for key in keys:
            found |= values.get(key, set())
        return found

    def in_packing_order(self) -> Iterator[Candidate]:
        """Every item, smallest first (see Candidate.packing_key)."""
        for _, item_id in self._order:
            yield self.items[item_id]
