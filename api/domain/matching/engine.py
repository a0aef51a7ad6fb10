"""The engine: a request against the index gives the chosen items and the funnel.

Choice (DESIGN.md): among eligible items the smallest that fits (packing key), ties by
hostname; N nodes are N distinct items; for mks, N on one site and one InfiniBand fabric if
possible, else on one site, else any N, topology outranking packing. Every answer, match or
no match, carries the funnel of how many items each filter let through.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from api.domain.matching.index import Candidate, CandidateIndex, Mask, kind_for
from api.domain.matching.profile import InventoryType
from api.domain.matching.request import Condition, Request, Skip, Threshold

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
    # When the quota step alone stood in the way: the limit the choice without it passes.
    over_quota: Any = None

    @property
    def matched(self) -> bool:
        return bool(self.chosen)


class QuotaCheck(Protocol):
    """The quota step (api/domain/quota.py's QuotaStep), last of the filters."""

    def admit(
        self, index: CandidateIndex, survivors: Mask, request: Request
    ) -> tuple[Mask, str | None]: ...

    def exceeded(self, chosen: Sequence[Candidate], request: Request) -> Any: ...


def match(
    request: Request,
    index: CandidateIndex,
    exclude: Collection[str] = (),
    within: Mask | None = None,
    quota: QuotaCheck | None = None,
) -> Outcome:
    """Select items for ``request``.

    ``within``: the only items the caller may have (a tenant's inventory, as a mask of the
    index); None for all. ``exclude``: ids the caller has ruled out. ``quota``: the limits
    the caller's claim is under (None: none).
    """
    inventory_type = request.profile.inventory_type
    kind = kind_for(inventory_type)
    explanation = Explanation(unused_variables=list(request.unused_variables))
    of_kind = index.of_kind(kind)
    survivors = index.eligible(inventory_type)
    if within is not None:
        of_kind, survivors = of_kind & within, survivors & within
    if exclude:
        survivors = survivors & ~index.having(exclude)
    count = _count(survivors)
    explanation.steps.append(
        Step(
            f"{inventory_type.value}: {_NOUN[kind]} available",
            _count(of_kind),
            count,
            _eligibility_note(inventory_type),
        )
    )
    for step in request.steps:
        entered = count
        note = None
        if isinstance(step, Skip):
            note = step.note
        elif isinstance(step, Condition):
            survivors = survivors & index.matching(step.path, step.values)
            count = _count(survivors)
        else:
            survivors, count, note = _apply_threshold(step, survivors, entered, index)
        explanation.steps.append(Step(step.label, entered, count, note))
    before_quota, counted_before = survivors, count
    if quota is not None:
        survivors, note = quota.admit(index, survivors, request)
        count = _count(survivors)
        explanation.steps.append(Step("quota", counted_before, count, note))
    nodes = request.requirements.nodes
    chosen, note = _choose(inventory_type, request, survivors, count, index)
    over_quota = None
    if quota is not None:
        if chosen and quota.exceeded(chosen, request) is not None:
            chosen, note = [], "together they pass the quota"
        if not chosen and counted_before:
            would, _ = _choose(inventory_type, request, before_quota, counted_before, index)
            over_quota = quota.exceeded(would, request) if would else None
    noun = "node" if nodes == 1 else "nodes"
    explanation.steps.append(Step(f"choose {nodes} {noun}", count, len(chosen), note))
    return Outcome(chosen, explanation, over_quota)


def _count(mask: Mask) -> int:
    return int(np.count_nonzero(mask))


def _eligibility_note(inventory_type: InventoryType) -> str:
    if inventory_type == InventoryType.VCLUSTER:
        return "status available and shareable (not tagged shareable=false)"
    return "status available and not holding vcluster slices"


def _apply_threshold(
    step: Threshold, survivors: Mask, entered: int, index: CandidateIndex
) -> tuple[Mask, int, str | None]:
    kept = survivors
    for dimension, amount in step.amounts.items():
        if amount > 0:
            kept = kept & index.free_at_least(dimension, amount)
    count = _count(kept)
    if count or not entered:
        return kept, count, None
    largest = [
        f"{_FREE_LABEL[name]} {index.largest_free(survivors, name)}" for name in step.amounts
    ]
    return kept, count, "largest free: " + ", ".join(largest)


def _choose(
    inventory_type: InventoryType,
    request: Request,
    survivors: Mask,
    count: int,
    index: CandidateIndex,
) -> tuple[list[Candidate], str | None]:
    nodes = request.requirements.nodes
    if count < nodes:
        needed = f"need {nodes} distinct {'item' if nodes == 1 else 'items'}"
        return [], f"{needed}, {count} eligible"
    if inventory_type == InventoryType.MKS and nodes > 1:
        return _choose_topology(nodes, survivors, index)
    return index.smallest(survivors, nodes), None


def _best_group(
    groups: Iterable[tuple[Any, Mask]], nodes: int, survivors: Mask, index: CandidateIndex
) -> tuple[Any, list[Candidate]] | None:
    best: tuple[Any, ...] | None = None
    for key, members in groups:
        eligible = members & survivors
        if _count(eligible) < nodes:
            continue
        picked = index.smallest(eligible, nodes)
        rank = ([c.packing_key[:3] for c in picked], sorted(c.hostname for c in picked))
        if best is None or rank < best[0]:
            best = (rank, key, picked)
    return (best[1], best[2]) if best else None


def _in_key_order(groups: dict[Any, Mask]) -> list[tuple[Any, Mask]]:
    """Groups in a fixed order (None sorts first), so equal ranks resolve the same way."""
    return sorted(groups.items(), key=lambda item: repr(item[0]))


def _choose_topology(
    nodes: int, survivors: Mask, index: CandidateIndex
) -> tuple[list[Candidate], str | None]:
    same_fabric = _best_group(_in_key_order(index.fabrics()), nodes, survivors, index)
    if same_fabric:
        (site, fabric), picked = same_fabric
        return picked, f"{nodes} on site {site}, fabric {fabric}"
    sites = {site: mask for site, mask in index.sites().items() if site is not None}
    same_site = _best_group(_in_key_order(sites), nodes, survivors, index)
    if same_site:
        site, picked = same_site
        return picked, f"{nodes} on site {site}; no single fabric has {nodes} eligible"
    picked = index.smallest(survivors, nodes)
    return picked, f"no single site has {nodes} eligible; spread across sites"
