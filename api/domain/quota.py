"""Quotas (DESIGN.md "Sharing the fleet"): what a claim counts against, and whether it fits.

Pure: the counters and limits come in as ``Limit`` values, a claim's amounts as ``Usage``.
A quota is a tenant's (``project_key`` empty) or one of its projects', on every GPU model
(``model_key`` empty) or on one. Usage counts against the allocation's tenant, whoever
owns the device: a whole device all its GPUs and one node, a VM its GPUs and no node, a
slice its GPUs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.domain.errors import QUOTA_EXCEEDED, DomainError
from api.domain.matching.index import Candidate, CandidateIndex, Mask
from api.domain.matching.profile import InventoryType
from api.domain.matching.request import Request, normalise

NONE_KEY = ""  # no project; every model

GPUS, NODES = "gpus", "nodes"


def model_key(model: str | None) -> str:
    """A GPU model as quotas compare it: ``gpuModel`` equals ``modelNo``, trimmed,
    case-insensitive."""
    return (model or "").strip().casefold()


@dataclass(frozen=True)
class Limit:
    """One quota row: its key, its limits (None: no limit) and what is held against it."""

    tenant: str  # the tenant's slug
    project: str | None  # the project's slug; None: the tenant's own limit
    project_key: str
    model_key: str
    gpu_model: str | None
    gpus: int | None
    nodes: int | None
    used_gpus: int = 0
    used_nodes: int = 0
    borrowed_gpus: int = 0

    @property
    def order(self) -> int:
        """The reporting order: tenant, tenant and model, project, project and model."""
        return 2 * (self.project_key != NONE_KEY) + (self.model_key != NONE_KEY)


@dataclass(frozen=True)
class Usage:
    """What one claim holds: its GPUs and its whole nodes, in all and by GPU model key (a
    whole node counts against each model it carries)."""

    gpus: int = 0
    nodes: int = 0
    models: Mapping[str, int] = field(default_factory=dict)
    model_nodes: Mapping[str, int] = field(default_factory=dict)

    def gpus_on(self, key: str) -> int:
        return self.gpus if key == NONE_KEY else self.models.get(key, 0)

    def nodes_on(self, key: str) -> int:
        return self.nodes if key == NONE_KEY else self.model_nodes.get(key, 0)

    def __add__(self, other: Usage) -> Usage:
        models, model_nodes = Counter(self.models), Counter(self.model_nodes)
        models.update(other.models)
        model_nodes.update(other.model_nodes)
        return Usage(
            self.gpus + other.gpus, self.nodes + other.nodes, dict(models), dict(model_nodes)
        )


def usage_of_device(
    document: Mapping[str, Any], *, whole: bool, slice_gpus: int = 0, free_gpus: int = 0
) -> Usage:
    """What holding ``document``'s device (whole, or a slice of ``slice_gpus``) counts.

    A slice of a mixed-GPU host takes the lowest free GPU indexes: those after the
    ``total - free_gpus`` already held (slices are taken in index order)."""
    listed = sorted(document.get("gpus") or [], key=lambda g: g.get("index", 0))
    models = [model_key(g.get("modelNo")) for g in listed]
    if whole:
        gpus = int(document.get("totalgpus") or len(models))
        nodes = 1 if document.get("kind", "baremetal") == "baremetal" else 0
        return Usage(gpus, nodes, dict(Counter(models)), dict.fromkeys(set(models), nodes))
    start = max(len(models) - free_gpus, 0)
    taken = models[start : start + slice_gpus]
    if len(set(models)) == 1:  # the usual host: every GPU one model
        taken = models[:1] * slice_gpus
    return Usage(slice_gpus, 0, dict(Counter(taken)))


def counter_keys(project_key: str | None, usage: Usage) -> list[tuple[str, str]]:
    """The (project_key, model_key) counters a claim adds to: the tenant's, the tenant's
    per model, and with a project the project's and the project's per model."""
    projects = [NONE_KEY] + ([project_key] if project_key else [])
    models = [NONE_KEY, *sorted(m for m in set(usage.models) | set(usage.model_nodes) if m)]
    return [(p, m) for p in projects for m in models]


@dataclass(frozen=True)
class Exceeded:
    """The first limit a claim would pass, as ``extensions.quota`` reports it."""

    limit: Limit
    resource: str  # GPUS or NODES
    requested: int

    def as_dict(self) -> dict[str, Any]:
        limit = self.limit.gpus if self.resource == GPUS else self.limit.nodes
        used = self.limit.used_gpus if self.resource == GPUS else self.limit.used_nodes
        return {
            "tenant": self.limit.tenant,
            "project": self.limit.project,
            "gpuModel": self.limit.gpu_model,
            "resource": self.resource,
            "limit": limit,
            "used": used,
            "requested": self.requested,
        }

    def message(self) -> str:
        d = self.as_dict()
        whose = f"tenant {d['tenant']!r}" + (f" project {d['project']!r}" if d["project"] else "")
        model = f" {d['gpuModel']}" if d["gpuModel"] else ""
        return (
            f"quota exceeded: {whose} may hold {d['limit']}{model} {d['resource']}, holds "
            f"{d['used']}, this request needs {d['requested']} more"
        )


def first_exceeded(
    limits: Iterable[Limit], usage: Usage, *, borrowing: bool = False
) -> Exceeded | None:
    """The first limit ``usage`` would pass, in the reporting order (GPUs before nodes);
    None when it fits. ``borrowing``: GPU limits do not apply (borrowed GPUs count apart)."""
    for limit in sorted(limits, key=lambda q: q.order):
        gpus = usage.gpus_on(limit.model_key)
        if (
            not borrowing
            and limit.gpus is not None
            and gpus
            and limit.used_gpus + gpus > limit.gpus
        ):
            return Exceeded(limit, GPUS, gpus)
        nodes = usage.nodes_on(limit.model_key)
        if limit.nodes is not None and nodes and limit.used_nodes + nodes > limit.nodes:
            return Exceeded(limit, NODES, nodes)
    return None


def quota_exceeded(exceeded: Exceeded, explanation: dict[str, Any]) -> DomainError:
    return DomainError(
        QUOTA_EXCEEDED,
        exceeded.message(),
        {"quota": exceeded.as_dict(), "explanation": explanation},
    )


@dataclass(frozen=True)
class QuotaStep:
    """The funnel's quota step (DESIGN.md: after every other filter): the candidates whose
    claim would take an applicable limit past it are removed, so an exhausted H100 quota
    steers a request that allows other models elsewhere. ``borrowing``: a preemptible
    claim beyond its GPU quota, on which only node limits apply.

    The step judges one candidate at a time, by masks over the whole index; ``exceeded``
    then judges the chosen set together (N nodes add up). The database has the last word: the
    claim's own statement checks every limit again, under the counters' row locks.
    """

    limits: tuple[Limit, ...]
    borrowing: bool = False

    def admit(
        self, index: CandidateIndex, survivors: Mask, request: Request
    ) -> tuple[Mask, str | None]:
        whole = request.profile.inventory_type != InventoryType.VCLUSTER
        slice_gpus = 0 if whole else request.requirements.gpus
        nodes_held = whole and request.profile.inventory_type != InventoryType.VM
        kept = survivors
        for limit in self.limits:
            having = (
                None
                if limit.model_key == NONE_KEY
                else index.matching("gpus.modelNo", [normalise(limit.gpu_model or "")])
            )
            if limit.gpus is not None and not self.borrowing:
                room = max(limit.gpus - limit.used_gpus, 0)
                # Whole devices offered here are wholly free: each counts its free GPUs,
                # or for a model's limit its GPUs of that model (fewer on a mixed host,
                # counted one by one among those the mask would remove).
                too_big = (
                    index.free_at_least("gpus", room + 1)
                    if whole
                    else (index.nothing() | (slice_gpus > room))
                )
                if having is not None:
                    too_big = too_big & having
                    if whole:
                        fit = [
                            c.id
                            for c in index.candidates_in(kept & too_big)
                            if _model_gpus(c, limit.model_key) <= room
                        ]
                        too_big = too_big & ~index.having(fit)
                kept = kept & ~too_big
            if limit.nodes is not None and nodes_held and limit.used_nodes + 1 > limit.nodes:
                kept = kept & (index.nothing() if having is None else ~having)
        left = int(np.count_nonzero(kept))
        held = ", ".join(_describe(q) for q in self.limits)
        if self.borrowing:
            return kept, f"preemptible: borrowing beyond the GPU quota ({held})"
        if left == int(np.count_nonzero(survivors)):
            return kept, None
        return kept, f"beyond the quota ({held})"

    def exceeded(self, chosen: Sequence[Candidate], request: Request) -> Exceeded | None:
        return first_exceeded(self.limits, usage_of(chosen, request), borrowing=self.borrowing)


def usage_of(chosen: Sequence[Candidate], request: Request) -> Usage:
    """What a claim of ``chosen`` for ``request`` counts (whole devices, or slices)."""
    whole = request.profile.inventory_type != InventoryType.VCLUSTER
    total = Usage()
    for candidate in chosen:
        total = total + usage_of_device(
            candidate.document,
            whole=whole,
            slice_gpus=request.requirements.gpus,
            free_gpus=candidate.free.gpus,
        )
    return total


def _model_gpus(candidate: Candidate, key: str) -> int:
    """A whole device's GPUs of one model."""
    return usage_of_device(candidate.document, whole=True).gpus_on(key)


def _describe(limit: Limit) -> str:
    whose = limit.project or limit.tenant
    model = f" {limit.gpu_model}" if limit.gpu_model else ""
    parts = []
    if limit.gpus is not None:
        parts.append(f"{limit.used_gpus}/{limit.gpus}{model} GPUs")
    if limit.nodes is not None:
        parts.append(f"{limit.used_nodes}/{limit.nodes}{model} nodes")
    return f"{whose} holds " + " and ".join(parts)
