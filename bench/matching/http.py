"""Part 2 of the matchmaking benchmark: matchDevice as a client sees it, over HTTP on one
keep-alive connection to one ``gpuinv serve`` (see bench.matching). The service set-up
here (fleet imported, profiles saved) serves part 3 too.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.fleet import fleet_documents
from bench.graphql import SAVE_PROFILE, Answer, GraphQLClient, import_bodies, run_import
from bench.matching.checks import Verification, report_verification, verify
from bench.matching.report import look_around
from bench.matching.workload import (
    SLICE_PROFILE,
    WHOLE_PROFILE,
    labels,
    match_body,
    release_body,
    slice_variables,
    whole_node_variables,
)
from bench.report import problem, progress, table
from bench.service import BenchError, admin_token, fresh_database, running_service
from bench.stats import Latency


def import_fleet(client: GraphQLClient, size: int, args: argparse.Namespace, label: str) -> float:
    """importInventory in ``--batch-size`` batches; seconds taken (bodies encoded first)."""
    bodies = import_bodies(fleet_documents(size, args.seed), args.batch_size)
    run = run_import(client, bodies)
    if run.counts["created"] != size:
        problem(f"{label} import created {run.counts['created']} devices, expected {size}")
    progress(f"{label} imported {size:,} devices in {run.seconds:.1f} s")
    return run.seconds


def save_profiles(client: GraphQLClient) -> None:
    client.ok(SAVE_PROFILE, n=WHOLE_PROFILE, l=labels("baremetal"))
    client.ok(SAVE_PROFILE, n=SLICE_PROFILE, l=labels("vcluster"))


def setup_service(client: GraphQLClient, size: int, args: argparse.Namespace, label: str) -> float:
    seconds = import_fleet(client, size, args, label)
    save_profiles(client)
    return seconds


# --- part 2: matchDevice over HTTP -----------------------------------------------------


@dataclass
class HttpResult:
    backend: str
    size: int
    import_seconds: float = 0.0
    first_dry_seconds: float = 0.0
    allocate: Latency = field(default_factory=lambda: Latency.of([]))
    dry_mixed: Latency = field(default_factory=lambda: Latency.of([]))
    release: Latency = field(default_factory=lambda: Latency.of([]))
    dry_whole: Latency = field(default_factory=lambda: Latency.of([]))
    dry_slice: Latency = field(default_factory=lambda: Latency.of([]))
    codes: Counter[str] = field(default_factory=Counter)
    verification: Verification | None = None


def count_answer(answer: Answer, codes: Counter[str], label: str) -> bool:
    """True for a success; a NO_MATCH is counted; anything else is a problem too."""
    if answer.code is None:
        return True
    codes[answer.code] += 1
    if answer.code != "NO_MATCH" and codes[answer.code] <= 3:
        problem(f"{label} {answer.code}: {answer.message[:300]}")
    return False


def warm_up(client: GraphQLClient, rng: random.Random, count: int) -> float:
    """The first dry run after the import (index load / catch-up), then ``count`` more;
    returns the first one's seconds."""
    first = client.send(match_body("warm-0", WHOLE_PROFILE, {"gpu": 8}, True))
    if first.code is not None:
        raise BenchError(f"the first dry run failed: {first.code}: {first.message}")
    for n in range(count):
        client.send(match_body(f"warm-{n + 1}", WHOLE_PROFILE, whole_node_variables(rng), True))
        client.send(match_body(f"warm-s{n}", SLICE_PROFILE, slice_variables(rng), True))
    return first.seconds


def mixed_phase(
    client: GraphQLClient, rng: random.Random, result: HttpResult, args: argparse.Namespace
) -> None:
    """Half real whole-node allocations (new environment each), half dry runs; release
    the oldest allocation whenever more than ``--hold`` are active."""
    label = f"[http {result.backend} {result.size:,}]"
    allocate: list[float] = []
    dry: list[float] = []
    release: list[float] = []
    held: list[str] = []
    for n in range(args.requests):
        dry_run = rng.random() < 0.5
        environment = f"{'dry' if dry_run else 'env'}-{n}"
        variables = whole_node_variables(rng)
        answer = client.send(match_body(environment, WHOLE_PROFILE, variables, dry_run))
        if count_answer(answer, result.codes, label):
            (dry if dry_run else allocate).append(answer.seconds)
            if not dry_run:
                held.append(environment)
        if len(held) > args.hold:
            answer = client.send(release_body(held.pop(0)))
            if count_answer(answer, result.codes, label):
                release.append(answer.seconds)
    result.allocate, result.dry_mixed = Latency.of(allocate), Latency.of(dry)
    result.release = Latency.of(release)


def dry_phase(
    client: GraphQLClient, rng: random.Random, result: HttpResult, args: argparse.Namespace
) -> None:
    label = f"[http {result.backend} {result.size:,}]"
    whole: list[float] = []
    slices: list[float] = []
    for n in range(args.requests):
        if n % 2:
            request = match_body(f"dw-{n}", WHOLE_PROFILE, whole_node_variables(rng), True)
        else:
            request = match_body(f"ds-{n}", SLICE_PROFILE, slice_variables(rng), True)
        answer = client.send(request)
        if count_answer(answer, result.codes, label):
            (whole if n % 2 else slices).append(answer.seconds)
    result.dry_whole, result.dry_slice = Latency.of(whole), Latency.of(slices)


def run_http_size(backend: str, size: int, args: argparse.Namespace) -> HttpResult:
    label = f"[http {backend} {size:,}]"
    look_around(label.strip("[]"))
    result = HttpResult(backend, size)
    rng = random.Random(args.seed)
    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-benchm-") as tmp,
        fresh_database(backend, args.postgres_url, Path(tmp), "benchm") as url,
        running_service(url, Path(tmp), on_traceback=problem) as service,
    ):
        token = admin_token(url, "benchm")
        client = GraphQLClient(service.base_url, token)
        try:
            result.import_seconds = setup_service(client, size, args, label)
            result.first_dry_seconds = warm_up(client, rng, args.warmup)
            progress(f"{label} first dry run after import {result.first_dry_seconds:.2f} s")
            mixed_phase(client, rng, result, args)
            progress(
                f"{label} allocate {result.allocate} ms, dry {result.dry_mixed} ms, "
                f"release {result.release} ms"
            )
            dry_phase(client, rng, result, args)
            progress(f"{label} dry-only whole {result.dry_whole}, slice {result.dry_slice} ms")
        finally:
            client.close()
        result.verification = verify(url)
        report_verification(result.verification, label)
    return result


def http_part(args: argparse.Namespace) -> list[str]:
    results = [run_http_size(b, s, args) for b in args.backends for s in args.sizes]
    rows = [
        [
            r.backend,
            f"{r.size:,}",
            f"{r.import_seconds:.1f}",
            f"{r.first_dry_seconds * 1000:,.0f}",
            str(r.allocate),
            str(r.dry_mixed),
            str(r.release),
            str(r.dry_whole),
            str(r.dry_slice),
            ", ".join(f"{k} {v}" for k, v in sorted(r.codes.items())) or "none",
            "yes" if r.verification and not r.verification.over_allocated else "NO",
        ]
        for r in results
    ]
    return [
        "2. matchDevice over HTTP: one `gpuinv serve` (1 uvicorn worker), one keep-alive "
        "client connection, saved profiles (the seed's ten filters)",
        f"   Import: importInventory, {args.batch_size:,} devices a request. 'first dry' = "
        "the first matchDevice after the import (index load/catch-up), then "
        f"{2 * args.warmup} warm-up dry runs.",
        f"   Mix: {args.requests} requests, 50% real whole-node allocations (gpu=8, "
        "sometimes gputype and zone; a new environment each), 50% dry runs of the same kind; "
        f"the oldest allocation released whenever more than {args.hold} are active. Then "
        f"{args.requests} dry runs alone, alternating whole nodes and vcluster slices.",
        "   Latency: ms p50 / p99 (n = successful requests timed). 'errors' counts error "
        "codes (NO_MATCH is an answer, not a fault). 'inv.' = zero over-allocation in the "
        "database afterwards.",
        *table(
            [
                "backend",
                "devices",
                "import s",
                "first dry ms",
                "allocate",
                "dry (in mix)",
                "release",
                "dry only: whole",
                "dry only: slice",
                "errors",
                "inv.",
            ],
            rows,
        ),
    ]
