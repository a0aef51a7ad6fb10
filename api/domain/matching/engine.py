"""The engine: a request against the index gives the chosen items and the funnel.

Choice (DESIGN.md): among eligible items the smallest that fits (packing key), ties by
hostname; N nodes are N distinct items; for mks, N on one site and one InfiniBand fabric if
possible, else on one site, else any N, topology outranking packing. Every answer, match or
no match, carries the funnel of how many items each filter let through.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from api.domain.matching.index import Candidate, CandidateIndex, kind_for
from api.domain.matching.profile import InventoryType
from api.domain.matching.request import Condition, Request, Skip, Threshold

# Below this many survivors we sort them; above, we walk the global packing order, where an
# eligible item turns up early because survivors are then a large share of the fleet.
_SORT_LIMIT = 4096

_NOUN = {"baremetal": "devices", "vm": "VMs"}
_FREE_LABEL = {"cpu": "CPU", "memory_mb": "memory MB", "storage_gb": "storage GB", "gpus": "GPUs"}


@dataclass(frozen=True)
class Step:
    filter: str
    entered: int
    left: int
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "filter": self.filter,
            "entered": self.entered,
            "left": self.left,
            "note": self.note,
        }


@dataclass
class Explanation:
    steps: list[Step] = field(default_factory=list)
    unused_variables: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.as_dict() for s in self.steps],
            "unusedVariables": list(self.unused_variables),
        }

    def summary(self) -> str:
        """One line, as DESIGN.md shows it: '1000 devices → 640 available → …'."""
        parts = [f"{self.steps[0].entered} in the inventory"] if self.steps else []
        parts += [f"{s.left} {s.filter}" for s in self.steps]
        return " → ".join(parts)


@dataclass
class Outcome:
    chosen: list[Candidate]
    explanation: Explanation

    @property
    def matched(self) -> bool:
        return bool(self.chosen)


def match(
    request: Request,
    index: CandidateIndex,
    exclude: Collection[str] = (),
    within: set[str] | None = None,
) -> Outcome:
    """Select items for ``request``.

    ``within``: the only items the caller may have (a tenant's inventory); None for all.
    ``exclude``: items the caller has ruled out (e.g. just lost in a claim race).
    """
    inventory_type = request.profile.inventory_type
    kind = kind_for(inventory_type)
    explanation = Explanation(unused_variables=list(request.unused_variables))
    of_kind = index.of_kind(kind)
    survivors = index.eligible(inventory_type)
    if within is not None:
        of_kind, survivors = of_kind & within, survivors & within
    if exclude:
        survivors = survivors - set(exclude)
    explanation.steps.append(
        Step(
            f"{inventory_type.value}: {_NOUN[kind]} available",
            len(of_kind),
            len(survivors),
            _eligibility_note(inventory_type),
        )
    )
    for step in request.steps:
        entered = len(survivors)
        if isinstance(step, Skip):
            explanation.steps.append(Step(step.label, entered, entered, step.note))
        elif isinstance(step, Condition):
            survivors = survivors & index.matching(step.path, step.values)
            explanation.steps.append(Step(step.label, entered, len(survivors)))
        else:
            survivors, note = _apply_threshold(step, survivors, index)
            explanation.steps.append(Step(step.label, entered, len(survivors), note))
    nodes = request.requirements.nodes
    chosen, note = _choose(inventory_type, request, survivors, index)
    noun = "node" if nodes == 1 else "nodes"
    explanation.steps.append(Step(f"choose {nodes} {noun}", len(survivors), len(chosen), note))
    return Outcome(chosen, explanation)


def _eligibility_note(inventory_type: InventoryType) -> str:
    if inventory_type == InventoryType.VCLUSTER:
        return "status available and shareable (not tagged shareable=false)"
    return "status available and not holding vcluster slices"


def _apply_threshold(
    step: Threshold, survivors: set[str], index: CandidateIndex
) -> tuple[set[str], str | None]:
    items = index.items
    kept = survivors
    for dimension, amount in step.amounts.items():
        if amount <= 0:
            continue
        if len(kept) <= index.count_free_at_least(dimension, amount):
            # fewer survivors than devices with that much free: look at each survivor
            free = index.free_amounts(dimension)
            kept = {i for i in kept if free[i] >= amount}
        else:  # intersect with the index's sorted "free at least" list, in C
            kept = kept.intersection(index.with_free_at_least(dimension, amount))
    if kept or not survivors:
        return kept, None
    largest = []
    for name in step.amounts:
        most = max(getattr(items[i].free, name) for i in survivors)
        largest.append(f"{_FREE_LABEL[name]} {most}")
    return kept, "largest free: " + ", ".join(largest)


def _choose(
    inventory_type: InventoryType, request: Request, survivors: set[str], index: CandidateIndex
) -> tuple[list[Candidate], str | None]:
    need = request.requirements
    nodes = need.nodes
    if len(survivors) < nodes:
        needed = f"need {nodes} distinct {'item' if nodes == 1 else 'items'}"
        return [], f"{needed}, {len(survivors)} eligible"
    if inventory_type == InventoryType.MKS and nodes > 1:
        return _choose_topology(nodes, [index.items[i] for i in survivors])
    return smallest(survivors, nodes, index, (need.gpus, need.cpu, need.memory_mb)), None


def smallest(
    ids: set[str], count: int, index: CandidateIndex, at_least: tuple[int, int, int]
) -> list[Candidate]:
    """The ``count`` smallest items by packing key (all of ``ids`` fit ``at_least``)."""
    if len(ids) <= _SORT_LIMIT:
        return heapq.nsmallest(count, (index.items[i] for i in ids), key=lambda c: c.packing_key)
    found: list[Candidate] = []
    for candidate in index.in_packing_order(at_least):
        if candidate.id in ids:
            found.append(candidate)
            if len(found) == count:
                break
    return found


def _best_group(
    groups: Iterable[tuple[Any, list[Candidate]]], nodes: int
) -> tuple[Any, list[Candidate]] | None:
    best: tuple[Any, ...] | None = None
    for key, members in groups:
        if len(members) < nodes:
            continue
        picked = heapq.nsmallest(nodes, members, key=lambda c: c.packing_key)
        rank = ([c.packing_key[:3] for c in picked], sorted(c.hostname for c in picked))
        if best is None or rank < best[0]:
            best = (rank, key, picked)
    return (best[1], best[2]) if best else None


def _choose_topology(nodes: int, candidates: list[Candidate]) -> tuple[list[Candidate], str | None]:
    by_fabric: dict[tuple[str | None, str], list[Candidate]] = defaultdict(list)
    by_site: dict[str | None, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_site[c.site].append(c)
        for fabric in c.fabrics:
            by_fabric[(c.site, fabric)].append(c)
    same_fabric = _best_group(by_fabric.items(), nodes)
    if same_fabric:
        (site, fabric), picked = same_fabric
        return picked, f"{nodes} on site {site}, fabric {fabric}"
    same_site = _best_group(((s, m) for s, m in by_site.items() if s is not None), nodes)
    if same_site:
        site, picked = same_site
        return picked, f"{nodes} on site {site}; no single fabric has {nodes} eligible"
    picked = heapq.nsmallest(nodes, candidates, key=lambda c: c.packing_key)
    return picked, f"no single site has {nodes} eligible; spread across sites"
