"""Part 4 of the matchmaking benchmark: packing quality. The pure engine with simulated
claims against first-fit and a random choice among the eligible: how much of the fleet's
GPUs each policy places before a whole node no longer fits (see bench.matching).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from api.domain.matching.engine import match
from api.domain.matching.index import (
    Candidate,
    CandidateIndex,
    Capacity,
    eligible_for,
    path_values,
)
from api.domain.matching.profile import InventoryType, parse_labels
from api.domain.matching.request import Request, normalise, resolve
from api.domain.vocabulary import Status
from bench.fleet import fleet_documents
from bench.matching.report import look_around
from bench.matching.workload import candidates_of, labels, slice_variables
from bench.report import problem, table

Chooser = Callable[[Request, CandidateIndex, random.Random], Candidate | None]


def eligible_ids(request: Request, index: CandidateIndex) -> list[str]:
    """What engine.match lets through, computed on its own by looking at every item: the
    inventory type's eligibility, the match conditions, then free capacity covering every
    requirement."""
    need = request.requirements.as_dict()
    need.pop("nodes")
    return [
        c.id
        for c in index.items.values()
        if eligible_for(c, request.profile.inventory_type)
        and all(
            {normalise(v) for v in path_values(c.document, condition.path)} & set(condition.values)
            for condition in request.conditions
        )
        and c.free.covers(need)
    ]


def choose_smallest(request: Request, index: CandidateIndex, _: random.Random) -> Candidate | None:
    chosen = match(request, index).chosen
    return chosen[0] if chosen else None


def choose_first_fit(request: Request, index: CandidateIndex, _: random.Random) -> Candidate | None:
    ids = eligible_ids(request, index)
    return min((index.items[i] for i in ids), key=lambda c: c.hostname) if ids else None


def choose_random(request: Request, index: CandidateIndex, rng: random.Random) -> Candidate | None:
    ids = sorted(eligible_ids(request, index))  # sorted: set order varies between runs
    return index.items[rng.choice(ids)] if ids else None


POLICIES: dict[str, Chooser] = {
    "engine (smallest fit)": choose_smallest,
    "first-fit (hostname order)": choose_first_fit,
    "random eligible": choose_random,
}


def claim(index: CandidateIndex, chosen: Candidate, request: Request) -> None:
    """What a successful claim does to the device, simulated: a slice subtracts its
    amounts, anything else takes the device whole."""
    if request.profile.inventory_type == InventoryType.VCLUSTER:
        need, f = request.requirements, chosen.free
        free = Capacity(
            f.cpu - need.cpu,
            f.memory_mb - need.memory_mb,
            f.storage_gb - need.storage_gb,
            f.gpus - need.gpus,
        )
        index.upsert(replace(chosen, free=free, generation=chosen.generation + 1))
    else:
        index.upsert(
            replace(
                chosen, status=Status.ALLOCATED, free=Capacity(), generation=chosen.generation + 1
            )
        )


@dataclass
class PackingRun:
    policy: str
    seed: int
    total_gpus: int
    allocated_gpus: int = 0
    whole: int = 0
    slices: int = 0
    slice_misses: int = 0
    stopped: bool = False  # a whole-node request found no match
    split_nodes: int = 0  # 8-GPU nodes holding slices with GPUs still free, at the stop

    @property
    def share(self) -> float:
        return self.allocated_gpus / self.total_gpus


def packing_stream(seed: int, length: int) -> list[Request]:
    rng = random.Random(seed)
    whole = parse_labels(labels("baremetal"))
    slices = parse_labels(labels("vcluster"))
    stream = []
    for _ in range(length):
        if rng.random() < 0.6:
            stream.append(resolve(whole, {"gpu": 8}))
        else:
            stream.append(resolve(slices, slice_variables(rng)))
    return stream


def run_packing(
    policy: str, documents: list[dict[str, Any]], stream: list[Request], seed: int
) -> PackingRun:
    chooser, rng = POLICIES[policy], random.Random(seed)
    index = CandidateIndex(candidates_of(documents, seed))
    run = PackingRun(policy, seed, sum(c.total.gpus for c in index.items.values()))
    for request in stream:
        chosen = chooser(request, index, rng)
        if policy.startswith("engine") and (chosen is None) != (not eligible_ids(request, index)):
            problem(f"[packing] the engine and the local eligibility disagree on {request}")
        whole = request.profile.inventory_type != InventoryType.VCLUSTER
        if chosen is None:
            if whole:
                run.stopped = True
                break
            run.slice_misses += 1
            continue
        claim(index, chosen, request)
        run.allocated_gpus += chosen.total.gpus if whole else request.requirements.gpus
        run.whole += whole
        run.slices += not whole
    run.split_nodes = sum(
        1
        for c in index.items.values()
        if c.total.gpus == 8 and c.status == "available" and 0 < c.free.gpus < 8
    )
    return run


def packing_part(args: argparse.Namespace) -> list[str]:
    look_around("packing")
    documents = fleet_documents(args.packing_size, args.seed, all_available=True)
    runs: list[PackingRun] = []
    for seed in range(args.seed, args.seed + args.packing_seeds):
        stream = packing_stream(seed, 4 * args.packing_size)
        for policy in POLICIES:
            run = run_packing(policy, documents, stream, seed)
            if not run.stopped:
                problem(f"[packing] {policy}, seed {seed}: the stream ended before a NO_MATCH")
            runs.append(run)
    total_gpus = runs[0].total_gpus
    eight = sum(1 for d in documents if len(d["gpus"]) == 8)
    rows = []
    for policy in POLICIES:
        mine = [r for r in runs if r.policy == policy]
        shares = [r.share for r in mine]
        rows.append(
            [
                policy,
                f"{sum(shares) / len(shares):.1%}",
                f"{min(shares):.1%} - {max(shares):.1%}",
                " ".join(f"{s:.1%}" for s in shares),
                f"{sum(r.whole for r in mine) / len(mine):,.0f}",
                f"{sum(r.slices for r in mine) / len(mine):,.0f}",
                f"{sum(r.split_nodes for r in mine) / len(mine):,.0f}",
                f"{sum(r.slice_misses for r in mine)}",
            ]
        )
    return [
        "4. Packing quality: share of the fleet's GPUs allocated at the first NO_MATCH of a "
        "whole-node request (pure engine, simulated claims, no releases)",
        f"   Fleet: {args.packing_size:,} devices, all available ({eight:,} with 8 GPUs, "
        f"{args.packing_size - eight:,} L40S with 4; {total_gpus:,} GPUs; 5% tagged "
        "shareable=false). Stream: 60% whole 8-GPU nodes (baremetal gpu=8), 40% vcluster "
        "slices of 1/2/4 GPUs (16 CPU, 128 GiB per GPU); the same stream for every policy, "
        f"{args.packing_seeds} seeds ({args.seed}..{args.seed + args.packing_seeds - 1}).",
        "   'split 8-GPU' = 8-GPU nodes holding slices with GPUs left at the stop (the whole "
        "nodes they would have been); 'slice misses' = slice requests with no fit (skipped).",
        *table(
            [
                "policy",
                "GPUs allocated (mean)",
                "min - max",
                "per seed",
                "whole nodes",
                "slices",
                "split 8-GPU",
                "slice misses",
            ],
            rows,
        ),
    ]
