"""Preemption (DESIGN.md "Sharing the fleet"): which allocations to evict for a request.

A queued provision request that does not fit may take capacity from *preemptible*
allocations. This module answers, over the matching index and without touching anything,
which of them to evict: it frees their holdings in a what-if copy of the index and asks the
engine whether the request then matches. Victims are chosen as DESIGN.md orders them:
borrowed first, then lowest priority, then fewest, then newest.

Pure: the caller loads the victims (``Victim``, with what each holds) and the index; the
database then marks the victims ``PREEMPTING`` and, after the grace period, releases them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from api.domain.matching.engine import Outcome, QuotaCheck, match
from api.domain.matching.index import (
    DIMENSIONS,
    Candidate,
    CandidateIndex,
    Capacity,
    Mask,
    kind_for,
)
from api.domain.matching.request import Request
from api.domain.vocabulary import Status

PREEMPTED_BY = "system:preemption"  # releasedBy of an allocation released by preemption


class AllocationState(StrEnum):
    ACTIVE = "ACTIVE"
    PREEMPTING = "PREEMPTING"  # to be released at preemptAt, for a queued request
    RELEASED = "RELEASED"
    PREEMPTED = "PREEMPTED"  # released by preemption


def allocation_state(
    released_at: datetime | None, released_by: str | None, preempt_at: datetime | None
) -> AllocationState:
    if released_at is not None:
        preempted = released_by == PREEMPTED_BY
        return AllocationState.PREEMPTED if preempted else AllocationState.RELEASED
    return AllocationState.ACTIVE if preempt_at is None else AllocationState.PREEMPTING


@dataclass(frozen=True)
class Held:
    """One device part an allocation holds, as release gives it back."""

    device_id: str
    exclusive: bool  # the whole device (claimed 'allocated', all free 0), not a slice
    amounts: Capacity  # what it holds; for a whole device its totals (not read: all return)


@dataclass(frozen=True)
class Victim:
    """An active, preemptible allocation that could be evicted."""

    allocation_id: str
    priority: int
    borrowed: bool  # claimed beyond its tenant's GPU quota
    created_at: datetime
    holds: tuple[Held, ...]


def may_evict(victim: Victim, priority: int, within_quota: bool) -> bool:
    """Whether a request of ``priority`` may evict ``victim``.

    Only a request of higher priority may: equal priority evicting equal would let two
    requests take turns evicting each other. The exception is borrowed capacity: a request
    within its own quota reclaims what another tenant borrowed beyond theirs, whatever the
    priorities, since borrowing is only ever lent until its owner wants it back.
    """
    return victim.priority < priority or (victim.borrowed and within_quota)


def victim_order(victims: Iterable[Victim]) -> list[Victim]:
    """The order victims are considered in: borrowed first, then lowest priority, then
    newest (it has lost the least work), then allocation id, so equal victims always come
    out the same way. ("Fewest" is choose_victims' pruning, not an order.)"""
    ordered = sorted(victims, key=lambda v: v.allocation_id)
    ordered.sort(key=lambda v: v.created_at, reverse=True)  # stable: ids stay ascending
    ordered.sort(key=lambda v: (not v.borrowed, v.priority))
    return ordered


def freed(index: CandidateIndex, among: Mask | None, victims: Iterable[Victim]) -> CandidateIndex:
    """A what-if index: the candidates of ``index`` in ``among`` (all if None), with the
    victims' holdings given back as release gives them back: an exclusive hold makes the
    device whole again (free = total, and available if it was 'allocated'); a slice adds its
    amounts to free. Holdings on devices outside ``among`` are ignored. Never mutates
    ``index``."""
    what_if = _WhatIf(index, among)
    for victim in victims:
        what_if.free(victim)
    return what_if.index


@dataclass(frozen=True)
class Plan:
    """The victims to evict, in the order they were chosen, and what the request would
    then take: the engine's answer on the what-if index (its funnel counts only the
    candidates the request could have: see choose_victims)."""

    victims: tuple[Victim, ...]
    outcome: Outcome


def choose_victims(
    request: Request,
    index: CandidateIndex,
    victims: Sequence[Victim],
    within: Mask | None = None,
    quota: QuotaCheck | None = None,
) -> Plan | None:
    """The victims whose eviction lets ``request`` match, or None when even evicting every
    one of them would not.

    ``victims``: only those the caller may evict (filter with may_evict: this function
    does not know the request's priority or quota standing). ``within`` (a mask of
    ``index``) and ``quota`` are as for ``match``: the caller's inventory and limits, the
    latter as they stand now. When the request already matches without evicting anything,
    the plan has no victims and the outcome is ``match``'s own on ``index``: just claim.

    Victims are freed one by one in victim_order until the request matches, then each
    chosen one, from the last added back to the first, is dropped if the request still
    matches without it. So the plan holds no victim it does not need, but it is greedy: it
    is not searched for the fewest victims of all possible sets.
    """
    outcome = match(request, index, within=within, quota=quota)
    if outcome.matched:
        return Plan((), outcome)
    kind = index.of_kind(kind_for(request.profile.inventory_type))
    touched = {h.device_id for v in victims for h in v.holds}
    # A device no victim holds is in the what-if as it is now: if it is not eligible now it
    # will not be then. Leaving such devices out keeps the copy small.
    among = (index.eligible(request.profile.inventory_type) | index.having(touched)) & kind
    if within is not None:
        among = among & within
    what_if = _WhatIf(index, among)
    useful = victim_order(v for v in victims if what_if.holds_any(v))
    if not useful:
        return None
    for victim in useful:
        what_if.free(victim)
    if not what_if.try_match(request, quota).matched:
        return None
    for victim in useful:
        what_if.restore(victim)
    chosen: list[Victim] = []
    for victim in useful:
        what_if.free(victim)
        chosen.append(victim)
        outcome = what_if.try_match(request, quota)
        if outcome.matched:
            break
    # The last one added is needed: without it the request did not match.
    for victim in reversed(chosen[:-1]):
        what_if.restore(victim)
        without = what_if.try_match(request, quota)
        if without.matched:
            chosen.remove(victim)
            outcome = without
        else:
            what_if.free(victim)
    return Plan(tuple(chosen), outcome)


class _WhatIf:
    """A copy of part of an index whose devices can have victims freed and restored one at
    a time: each change recomputes only the victim's own devices, from their original
    candidates and the holdings of the victims freed at that moment."""

    def __init__(self, index: CandidateIndex, among: Mask | None) -> None:
        chosen = index.candidates_in(among) if among is not None else list(index.items.values())
        self.original: dict[str, Candidate] = {c.id: c for c in chosen}
        self.index = CandidateIndex(self.original.values())
        self._freed: dict[str, dict[str, tuple[Held, ...]]] = {}  # device -> allocation -> holds
        self._whole_documents: dict[str, Mapping[str, Any]] = {}

    def holds_any(self, victim: Victim) -> bool:
        return any(h.device_id in self.original for h in victim.holds)

    def try_match(self, request: Request, quota: QuotaCheck | None) -> Outcome:
        return match(request, self.index, quota=quota)

    def free(self, victim: Victim) -> None:
        for device_id, holds in self._by_device(victim).items():
            self._freed.setdefault(device_id, {})[victim.allocation_id] = holds
            self._recompute(device_id)

    def restore(self, victim: Victim) -> None:
        for device_id in self._by_device(victim):
            on_device = self._freed.get(device_id, {})
            on_device.pop(victim.allocation_id, None)
            if not on_device:
                self._freed.pop(device_id, None)
            self._recompute(device_id)

    def _by_device(self, victim: Victim) -> dict[str, tuple[Held, ...]]:
        grouped: dict[str, list[Held]] = {}
        for held in victim.holds:
            if held.device_id in self.original:
                grouped.setdefault(held.device_id, []).append(held)
        return {device_id: tuple(holds) for device_id, holds in grouped.items()}

    def _recompute(self, device_id: str) -> None:
        original = self.original[device_id]
        holds = [h for held in self._freed.get(device_id, {}).values() for h in held]
        self.index.upsert(self._given_back(original, holds))

    def _given_back(self, candidate: Candidate, holds: Sequence[Held]) -> Candidate:
        if not holds:
            return candidate
        if any(h.exclusive for h in holds):
            if candidate.status != Status.ALLOCATED:  # an operator's maintenance stays
                return replace(candidate, free=candidate.total)
            return replace(
                candidate,
                status=Status.AVAILABLE,
                free=candidate.total,
                document=self._whole_document(candidate),
            )
        free = {
            name: min(
                getattr(candidate.free, name) + sum(getattr(h.amounts, name) for h in holds),
                getattr(candidate.total, name),  # never more than the hardware has
            )
            for name in DIMENSIONS
        }
        return replace(candidate, free=Capacity(**free))

    def _whole_document(self, candidate: Candidate) -> Mapping[str, Any]:
        """The document with its status available, made once per device: the index skips
        its per-path work when a candidate keeps its document object."""
        document = self._whole_documents.get(candidate.id)
        if document is None:
            document = candidate.document
            if document.get("status") == Status.ALLOCATED.value:
                document = dict(document, status=Status.AVAILABLE.value)
            self._whole_documents[candidate.id] = document
        return document
