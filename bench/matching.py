"""Matchmaking benchmark: the engine alone, matchDevice over HTTP, concurrent claims, packing.

What is measured, and why (issue 4, "Performance"; DESIGN.md "Matchmaking", "Allocation")
-----------------------------------------------------------------------------------------
1. ``engine``: the pure engine (api/domain/matching) with no database and no HTTP. A
   CandidateIndex of 1k / 10k / 100k realistic candidates (8-GPU NVIDIA H100/H200/B200, AMD
   MI300X, Intel Gaudi3 and 4-GPU L40S servers on five sites, two InfiniBand fabrics a site,
   halls; some in maintenance, a quarter of the available ones held whole and some holding
   vcluster slices) answers a seeded stream of requests resolved against the seed's
   ten-filter profile (baremetal, vcluster and mks, with varied variables, some absent).
   Reported: the one-off index build, the one-off lazy path indexes, then p50/p99 of
   ``match()`` alone (requests are resolved beforehand), overall and per inventory type.
   The issue asks for cost growing far slower than the fleet: compare the columns.
2. ``http``: ``matchDevice`` as a client sees it. One ``gpuinv serve`` (one uvicorn worker)
   on a fresh database (SQLite and/or PostgreSQL), the fleet imported with importInventory
   in 5,000-device batches, two profiles saved (the seed's config as baremetal and as
   vcluster). The first dry run after the import is timed on its own (the service loads its
   index in the background at start and catches up with the import on the next match),
   then a warm-up of dry runs, then a timed mix: half real allocations of whole nodes (each
   its own environment), half dry runs; the oldest allocation is released whenever more
   than ``--hold`` are active, so the fleet never runs out. Then dry runs alone (whole
   nodes and slices). The database invariants are checked afterwards (as in part 3).
3. ``throughput``: PostgreSQL, ``gpuinv serve --workers 2``, 8 client processes each on one
   keep-alive connection, for a fixed duration, each looping matchDevice (half whole nodes
   via baremetal gpu=8, half vcluster slices of 1/2/4 GPUs) and, sometimes, a release of
   one of its allocations. Reported: allocations/s, claim latency (successful allocating
   matchDevice calls, client side) p50/p99, releases, claims that needed more than one
   attempt (``claimAttempts`` > 1), CONCURRENT_UPDATE and NO_MATCH counts, 5xx. Afterwards
   the database is queried for over-allocation: for every device total - free equals the
   sum of its active allocation_device amounts, no device is in two active exclusive rows
   (or held whole and sliced at once), free is within 0..total; plus bookkeeping checks.
4. ``packing``: the pure engine with a simulated claim (the chosen Candidate's free capacity
   reduced and upserted into the index), no releases, on a seeded stream of 60% whole
   8-GPU nodes (baremetal gpu=8) and 40% 1/2/4-GPU slices (vcluster), against a mixed
   fleet whose devices are all available. Each policy runs until the first NO_MATCH of a
   whole-node request; reported is the share of the fleet's GPUs allocated at that moment.
   Policies: our engine (smallest fit), first-fit (first eligible in hostname order) and a
   seeded random choice among the eligible; eligibility for the latter two is computed
   here the way engine.match filters (index.eligible, the match conditions, free capacity).

Nothing here asserts on timing: figures are printed for a human to judge. Errors, 5xx and
failed invariants are listed as problems, as they make the figures void or show a bug.
Latency percentiles are nearest-rank over the timed requests. The client runs on the
same machine as the server and the database; the report gives CPU count and load.

Run ``python -m bench.matching --help`` for the options; ``--quick`` is a 1k smoke run.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing
import os
import platform
import random
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api import __version__
from api.demo import SHAPES, SITES, server_document
from api.domain.matching.engine import match
from api.domain.matching.index import (
    Candidate,
    CandidateIndex,
    Capacity,
    eligible_for,
    path_values,
)
from api.domain.matching.profile import (
    CONFIG_LABEL,
    INVENTORY_LABEL,
    InventoryType,
    MatchFilter,
    parse_labels,
)
from api.domain.matching.request import Request, normalise, resolve
from bench.service import (
    BenchError,
    cli,
    code_version,
    fresh_database,
    running_service,
)

DEFAULT_POSTGRES = os.environ.get(
    "GPUINV_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PROBLEMS: list[str] = []  # errors, 5xx, failed invariants: printed with the tables
LOAD_AT_START = os.getloadavg()[0]

# The seed's ten filters, copied from tests/unit/test_matching_engine.py SEED_CONFIG
# (itself verbatim from seeds/001_43cf31f420583302.txt).
SEED_CONFIG = """[
  {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
  {"type": "match", "keyInVariable": "location", "keyInDevice": "tags"},
  {"type": "match", "keyInVariable": "input2", "keyInDevice": "gpus.modelNo"},
  {"type": "match", "keyInVariable": "input3", "keyInDevice": "model"},
  {"type": "match", "keyInVariable": "zone", "keyInDevice": "tags.location"},
  {"type": "capacity", "keyInVariable": "noofNodes", "keyInCapacity": "requiredNoofNodes"},
  {"type": "capacity", "keyInVariable": "cpu", "keyInCapacity": "requiredCPU"},
  {"type": "capacity", "keyInVariable": "memoryMB", "keyInCapacity": "requiredMemoryMB"},
  {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
  {"type": "capacity", "keyInVariable": "storageGB", "keyInCapacity": "requiredStorageGB"}
]"""
WHOLE_PROFILE, SLICE_PROFILE = "bench-whole", "bench-slice"  # saved profiles (http parts)
SLICE_CPU, SLICE_MEMORY_MB = 16, 131072  # per GPU of a vcluster slice

MATCH_MUTATION = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id environment devices { hostname exclusive gpus } }
  deviceDetails claimAttempts
  explanation { steps { filter entered left note } } } }"""
RELEASE_MUTATION = (
    "mutation($env: String!) { releaseAllocation(environment: $env) { id releasedAt } }"
)
SAVE_PROFILE = "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { name } }"
IMPORT_MUTATION = (
    "mutation($d: String!) { importInventory(format: JSON, data: $d) "
    "{ created updated unchanged } }"
)


def labels(inventory_type: str) -> dict[str, str]:
    return {INVENTORY_LABEL: inventory_type, CONFIG_LABEL: SEED_CONFIG}


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def problem(message: str) -> None:
    PROBLEMS.append(message)
    progress(f"PROBLEM: {message}")


# --- the fleet -------------------------------------------------------------------------


def fleet_documents(count: int, seed: int, all_available: bool = False) -> list[dict[str, Any]]:
    """``count`` device documents in the import format: the demo's shapes and sites, two
    InfiniBand fabrics a site, hostnames ``<site>-gpu-NNNNNN``, 5% tagged shareable=false."""
    rng = random.Random(seed)
    weights = [shape[-1] for shape in SHAPES]
    per_site: dict[str, int] = {}
    documents = []
    for serial in range(count):
        shape = rng.choices(SHAPES, weights)[0]
        site, region, halls = rng.choice(SITES)
        number = per_site[site] = per_site.get(site, 0) + 1
        fabric = f"{site}-fabric-{'a' if number % 3 else 'b'}"
        shareable = rng.random() >= 0.05
        document = server_document(
            rng,
            shape,
            site,
            region,
            halls,
            number,
            f"{site}-gpu-{number:06d}",
            f"SN{2_000_000 + serial}",
            fabric=fabric,
            leaf_prefix=f"{fabric}-leaf",
            status="available" if all_available else None,
        )
        if not shareable:
            document["tags"]["shareable"] = "false"
        documents.append(document)
    return documents


def as_candidate(document: dict[str, Any], item_id: str) -> Candidate:
    """What api/db/candidates.py makes of a device row, made here from its document."""
    rendered = {"id": item_id, "kind": "baremetal", **document}
    rendered["totalgpus"] = len(document["gpus"])
    total = Capacity(
        document["totalcpu"],
        document["totalmemoryMB"],
        document["totalstorageGB"],
        len(document["gpus"]),
    )
    return Candidate(
        id=item_id,
        kind="baremetal",
        hostname=document["hostname"],
        status=document["status"],
        document=rendered,
        total=total,
        free=total,
        site=document["site"],
        fabrics=frozenset(p["fabric"] for p in document["infiniband"]),
        shareable=str(document["tags"].get("shareable", "")).strip().lower() != "false",
    )


def candidates_of(documents: list[dict[str, Any]], seed: int) -> list[Candidate]:
    rng = random.Random(seed)
    return [as_candidate(d, str(uuid.UUID(int=rng.getrandbits(128)))) for d in documents]


def in_use(candidate: Candidate, rng: random.Random) -> Candidate:
    """A fleet at work: of the available devices about 25% held whole, 15% holding slices."""
    if candidate.status != "available":
        return candidate
    roll = rng.random()
    if roll < 0.25:
        document = dict(candidate.document, status="allocated")
        return replace(candidate, status="allocated", free=Capacity(), document=document)
    if roll < 0.40 and candidate.shareable:
        used = rng.randint(1, candidate.total.gpus - 1)
        t = candidate.total
        free = Capacity(
            t.cpu - SLICE_CPU * used,
            t.memory_mb - SLICE_MEMORY_MB * used,
            t.storage_gb,
            t.gpus - used,
        )
        return replace(candidate, free=free)
    return candidate


# --- requests --------------------------------------------------------------------------

SHAPE_WEIGHTS = [shape[-1] for shape in SHAPES]


def engine_variables(rng: random.Random, inventory_type: str) -> dict[str, Any]:
    """Variables for the seed's ten filters, drawn around one real shape so most match;
    each match filter's variable is often absent (the filter is then skipped)."""
    shape = rng.choices(SHAPES, SHAPE_WEIGHTS)[0]
    model, vendor, gpu_model, gpus, gputype = shape[1], shape[2], shape[3], shape[5], shape[11]
    region = rng.choice(SITES)[1]
    variables: dict[str, Any] = {}
    if rng.random() < 0.7:
        variables["gputype"] = vendor
    if rng.random() < 0.15:
        variables["location"] = gputype  # "tags": any tag value
    if rng.random() < 0.2:
        variables["input2"] = gpu_model
    if rng.random() < 0.1:
        variables["input3"] = model
    if rng.random() < 0.5:
        variables["zone"] = region
    if inventory_type == "baremetal":
        if rng.random() < 0.8:
            variables["gpu"] = str(gpus)
        if rng.random() < 0.3:
            variables["cpu"] = 64
    elif inventory_type == "vcluster":
        g = rng.choice([1, 2, 4])
        variables |= {"gpu": g, "cpu": SLICE_CPU * g, "memoryMB": SLICE_MEMORY_MB * g}
    else:  # mks
        variables |= {"noofNodes": rng.choice([2, 3, 4]), "gpu": gpus}
    return variables


def whole_node_variables(rng: random.Random) -> dict[str, Any]:
    """A whole 8-GPU node, sometimes of one vendor, sometimes in one region."""
    variables: dict[str, Any] = {"gpu": "8"}
    vendor = rng.choice(["NVIDIA", "NVIDIA", "NVIDIA", "AMD", "INTEL", None])
    if vendor:
        variables["gputype"] = vendor
    zone = rng.choice(["india", "us", "germany", None, None])
    if zone:
        variables["zone"] = zone
    return variables


def slice_variables(rng: random.Random) -> dict[str, Any]:
    g = rng.choice([1, 2, 4])
    return {"gpu": g, "cpu": SLICE_CPU * g, "memoryMB": SLICE_MEMORY_MB * g}


# --- measurement helpers ---------------------------------------------------------------


@dataclass
class Latency:
    """Milliseconds at the 50th and 99th percentile (nearest rank), and the maximum."""

    p50: float
    p99: float
    max: float
    n: int

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        if not seconds:
            return cls(math.nan, math.nan, math.nan, 0)
        ordered = sorted(seconds)

        def rank(p: float) -> float:
            return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000

        return cls(rank(50), rank(99), ordered[-1] * 1000, len(ordered))

    def __str__(self) -> str:
        if not self.n:
            return "-"
        digits = 2 if self.p99 < 10 else 1
        return f"{self.p50:.{digits}f} / {self.p99:.{digits}f} (n={self.n})"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


# --- part 1: the engine alone ----------------------------------------------------------


@dataclass
class EngineResult:
    size: int
    build_seconds: float
    paths_seconds: float
    overall: Latency
    by_type: dict[str, Latency]
    matched: int
    budget_hit: bool


def run_engine_size(size: int, args: argparse.Namespace) -> EngineResult:
    look_around(f"engine {size:,}")
    rng = random.Random(args.seed)
    fleet = [in_use(c, rng) for c in candidates_of(fleet_documents(size, args.seed), args.seed)]
    gc.collect()
    started = time.perf_counter()
    index = CandidateIndex(fleet)
    build_seconds = time.perf_counter() - started
    profiles = {t: parse_labels(labels(t)) for t in ("baremetal", "vcluster", "mks")}
    paths = [f.path for f in profiles["baremetal"].filters if isinstance(f, MatchFilter)]
    started = time.perf_counter()
    for path in paths:  # the lazy per-path inverted indexes, built on first use
        index.matching(path, [("s", "")])
    paths_seconds = time.perf_counter() - started
    kinds = rng.choices(["baremetal", "vcluster", "mks"], [50, 40, 10], k=args.engine_requests)
    stream = [(k, resolve(profiles[k], engine_variables(rng, k))) for k in kinds]
    for _, request in stream[:50]:  # warm-up, untimed
        match(request, index)
    samples: dict[str, list[float]] = {k: [] for k in profiles}
    matched, deadline, budget_hit = 0, time.perf_counter() + args.engine_budget, False
    for kind, request in stream:
        t0 = time.perf_counter()
        outcome = match(request, index)
        samples[kind].append(time.perf_counter() - t0)
        matched += outcome.matched
        if time.perf_counter() > deadline:
            budget_hit = True
            break
    every = [s for values in samples.values() for s in values]
    return EngineResult(
        size,
        build_seconds,
        paths_seconds,
        Latency.of(every),
        {k: Latency.of(v) for k, v in samples.items()},
        matched,
        budget_hit,
    )


def engine_part(args: argparse.Namespace) -> list[str]:
    results = []
    for size in args.sizes:
        result = run_engine_size(size, args)
        progress(
            f"[engine {size:,}] build {result.build_seconds:.2f} s, paths "
            f"{result.paths_seconds:.2f} s, match p50/p99 {result.overall} ms"
        )
        if result.budget_hit:
            problem(f"[engine {size:,}] stopped at the {args.engine_budget:.0f} s budget")
        results.append(result)
        gc.collect()
    rows = [
        [
            f"{r.size:,}",
            f"{r.build_seconds * 1000:,.0f}",
            f"{r.paths_seconds * 1000:,.0f}",
            str(r.overall),
            *(str(r.by_type[k]) for k in ("baremetal", "vcluster", "mks")),
            f"{r.matched / max(1, r.overall.n):.0%}",
        ]
        for r in results
    ]
    return [
        "1. Engine alone: match() on a CandidateIndex, no database, no HTTP",
        "   Fleet: demo shapes (8-GPU H100/H200/B200/MI300X/Gaudi3, 4-GPU L40S), 5 sites, 2 "
        "fabrics a site; ~12% not available; of the available, ~25% held whole and ~15% "
        "holding slices.",
        f"   Stream: {args.engine_requests} requests resolved beforehand against the seed's "
        "ten-filter config (50% baremetal, 40% vcluster slices, 10% mks 2-4 nodes), varied "
        "and often absent variables; 50 warm-up requests first. Latency: ms p50 / p99 "
        "(n = timed requests). 'build' = CandidateIndex(...) once; 'paths' = the five lazy "
        "path indexes, once.",
        *table(
            [
                "candidates",
                "build ms",
                "paths ms",
                "all: p50 / p99 ms",
                "baremetal",
                "vcluster",
                "mks",
                "matched",
            ],
            rows,
        ),
    ]


# --- the database and the service ------------------------------------------------------


# --- the client ------------------------------------------------------------------------


@dataclass
class Answer:
    seconds: float
    data: dict[str, Any] | None
    code: str | None  # None: ok; else the first error's extensions.code or "HTTP <status>"
    message: str = ""


def answer_of(seconds: float, status: int, content: bytes) -> Answer:
    """What an HTTP answer from /graphql says: its data, or its first error's code."""
    if status != 200:
        return Answer(seconds, None, f"HTTP {status}", content[:500].decode(errors="replace"))
    payload = json.loads(content)
    errors = payload.get("errors")
    if errors:
        code = (errors[0].get("extensions") or {}).get("code", "UNKNOWN")
        return Answer(seconds, payload.get("data"), code, errors[0].get("message", ""))
    return Answer(seconds, payload["data"], None)


class GraphQLClient:
    """One keep-alive HTTP connection to /graphql with a bearer token."""

    def __init__(self, base_url: str, token: str, keep_alive: bool = True):
        limits = httpx.Limits(max_keepalive_connections=1 if keep_alive else 0)
        self.http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(1800.0),
            limits=limits,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    def close(self) -> None:
        self.http.close()

    def send(self, body: bytes) -> Answer:
        """One request, timed from send to the body fully read (encoding is done before)."""
        started = time.perf_counter()
        response = self.http.post("/graphql", content=body)
        seconds = time.perf_counter() - started
        return answer_of(seconds, response.status_code, response.content)

    def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = self.send(body(query, variables))
        if answer.code is not None:
            raise BenchError(f"{answer.code}: {answer.message}")
        assert answer.data is not None
        return answer.data


def body(query: str, variables: dict[str, Any]) -> bytes:
    return json.dumps({"query": query, "variables": variables}).encode()


def match_body(environment: str, profile: str, variables: dict[str, Any], dry_run: bool) -> bytes:
    given = {"environment": environment, "profile": profile, "variables": variables}
    return body(MATCH_MUTATION, {"input": given | {"dryRun": dry_run}})


def release_body(environment: str) -> bytes:
    return body(RELEASE_MUTATION, {"env": environment})


def import_fleet(client: GraphQLClient, size: int, args: argparse.Namespace, label: str) -> float:
    """importInventory in ``--batch-size`` batches; seconds taken (bodies encoded first)."""
    documents = fleet_documents(size, args.seed)
    bodies = [
        body(IMPORT_MUTATION, {"d": json.dumps({"devices": documents[i : i + args.batch_size]})})
        for i in range(0, size, args.batch_size)
    ]
    del documents
    created = 0
    started = time.perf_counter()
    for request in bodies:
        answer = client.send(request)
        if answer.code is not None or answer.data is None:
            raise BenchError(f"{label} import failed: {answer.code}: {answer.message}")
        created += answer.data["importInventory"]["created"]
    seconds = time.perf_counter() - started
    if created != size:
        problem(f"{label} import created {created} devices, expected {size}")
    progress(f"{label} imported {size:,} devices in {seconds:.1f} s")
    return seconds


def save_profiles(client: GraphQLClient) -> None:
    client.ok(SAVE_PROFILE, n=WHOLE_PROFILE, l=labels("baremetal"))
    client.ok(SAVE_PROFILE, n=SLICE_PROFILE, l=labels("vcluster"))


def setup_service(client: GraphQLClient, size: int, args: argparse.Namespace, label: str) -> float:
    seconds = import_fleet(client, size, args, label)
    save_profiles(client)
    return seconds


# --- invariants, read from the database ------------------------------------------------

OVER_ALLOCATION_CHECKS = {
    "devices whose total - free differs from the sum of their active allocation_device amounts": """
        SELECT count(*) FROM device d LEFT JOIN (
          SELECT device_id, sum(cpu) AS cpu, sum(memory_mb) AS mem, sum(storage_gb) AS sto,
                 sum(gpus) AS gpus
          FROM allocation_device WHERE active GROUP BY device_id) a ON a.device_id = d.id
        WHERE d.total_cpu - d.free_cpu <> coalesce(a.cpu, 0)
           OR d.total_memory_mb - d.free_memory_mb <> coalesce(a.mem, 0)
           OR d.total_storage_gb - d.free_storage_gb <> coalesce(a.sto, 0)
           OR d.total_gpus - d.free_gpus <> coalesce(a.gpus, 0)""",
    "devices in two or more active exclusive allocation_device rows": """
        SELECT count(*) FROM (SELECT device_id FROM allocation_device
          WHERE active AND exclusive GROUP BY device_id HAVING count(*) > 1) x""",
    "devices held whole and also sliced (active)": """
        SELECT count(*) FROM (SELECT device_id FROM allocation_device WHERE active
          GROUP BY device_id
          HAVING sum(CASE WHEN exclusive THEN 1 ELSE 0 END) > 0 AND count(*) > 1) x""",
    "devices with free outside 0..total": """
        SELECT count(*) FROM device
        WHERE free_cpu < 0 OR free_cpu > total_cpu OR free_gpus < 0 OR free_gpus > total_gpus
           OR free_memory_mb < 0 OR free_memory_mb > total_memory_mb
           OR free_storage_gb < 0 OR free_storage_gb > total_storage_gb""",
}
BOOKKEEPING_CHECKS = {
    "allocation_device rows whose active flag disagrees with their allocation": """
        SELECT count(*) FROM allocation_device ad JOIN allocation a ON a.id = ad.allocation_id
        WHERE ad.active <> (a.released_at IS NULL)""",
    "active allocations without an active device": """
        SELECT count(*) FROM allocation a WHERE a.released_at IS NULL AND NOT EXISTS (
          SELECT 1 FROM allocation_device ad WHERE ad.allocation_id = a.id AND ad.active)""",
    "devices whose status 'allocated' disagrees with an active exclusive row": """
        SELECT count(*) FROM device d WHERE (d.status = 'allocated') <> EXISTS (
          SELECT 1 FROM allocation_device ad
          WHERE ad.device_id = d.id AND ad.active AND ad.exclusive)""",
}
COUNTS = {
    "active allocations": "SELECT count(*) FROM allocation WHERE released_at IS NULL",
    "allocations made": "SELECT count(*) FROM allocation",
    "active allocation_device rows": "SELECT count(*) FROM allocation_device WHERE active",
}


@dataclass
class Verification:
    violations: dict[str, int]
    bookkeeping: dict[str, int]
    counts: dict[str, int]

    @property
    def over_allocated(self) -> bool:
        return any(self.violations.values())

    def lines(self) -> list[str]:
        verdict = "FAILED" if self.over_allocated else "zero over-allocation"
        out = [f"   Verification ({', '.join(f'{k} {v:,}' for k, v in self.counts.items())}):"]
        out.append(f"     {verdict}")
        for name, count in {**self.violations, **self.bookkeeping}.items():
            out.append(f"     {'OK  ' if count == 0 else 'FAIL'} {count:>6} {name}")
        return out


def verify(database_url: str) -> Verification:
    def run(queries: dict[str, str]) -> dict[str, int]:
        if database_url.startswith("sqlite:///"):
            path = database_url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as connection:
                return {k: connection.execute(q).fetchone()[0] for k, q in queries.items()}
        with psycopg.connect(database_url) as connection:
            return {k: connection.execute(q).fetchone()[0] for k, q in queries.items()}

    return Verification(run(OVER_ALLOCATION_CHECKS), run(BOOKKEEPING_CHECKS), run(COUNTS))


def report_verification(result: Verification, label: str) -> None:
    for name, count in {**result.violations, **result.bookkeeping}.items():
        if count:
            problem(f"{label} invariant broken: {count} {name}")


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
    allocate, dry, release, held = [], [], [], []
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
    whole, slices = [], []
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
        token = cli(url, "token", "create", "--role", "platform-admin", "--name", "benchm")
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


# --- part 3: throughput with concurrent clients ----------------------------------------


@dataclass
class ClientJob:
    base_url: str
    token: str
    number: int
    start_at: float  # time.time() when every client starts, so they start together
    duration: float
    hold: int
    seed: int


@dataclass
class ClientStats:
    claims: list[float] = field(default_factory=list)  # seconds, successful allocations
    whole: int = 0
    slices: int = 0
    releases: list[float] = field(default_factory=list)
    retried: int = 0  # claimAttempts > 1
    most_attempts: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    held: int = 0  # allocations still active at the end
    cpu_seconds: float = 0.0  # this client's CPU time in its loop (start-up excluded)


def client_loop(job: ClientJob) -> ClientStats:
    """One client: match (half whole nodes, half slices), sometimes release, until the
    deadline. Runs in its own process."""
    rng = random.Random(job.seed * 1000 + job.number)
    client = GraphQLClient(job.base_url, job.token)
    stats, held, n = ClientStats(), [], 0
    time.sleep(max(0.0, job.start_at - time.time()))
    deadline = time.perf_counter() + job.duration
    cpu_at_start = time.process_time()
    try:
        while time.perf_counter() < deadline:
            n += 1
            whole = rng.random() < 0.5
            environment = f"c{job.number}-{n}"
            if whole:
                variables: dict[str, Any] = {"gpu": 8}
                vendor = rng.choice(["NVIDIA", "NVIDIA", "AMD", "INTEL", None])
                if vendor:
                    variables["gputype"] = vendor
                request = match_body(environment, WHOLE_PROFILE, variables, False)
            else:
                request = match_body(environment, SLICE_PROFILE, slice_variables(rng), False)
            answer = client.send(request)
            if answer.code is None and answer.data is not None:
                stats.claims.append(answer.seconds)
                attempts = answer.data["matchDevice"]["claimAttempts"]
                stats.retried += attempts > 1
                stats.most_attempts = max(stats.most_attempts, attempts)
                stats.whole += whole
                stats.slices += not whole
                held.append(environment)
            else:
                stats.codes[answer.code or "?"] += 1
                if answer.code != "NO_MATCH" and len(stats.messages) < 3:
                    stats.messages.append(f"{answer.code}: {answer.message[:300]}")
            if held and (len(held) > job.hold or rng.random() < 0.3):
                victim = held.pop(rng.randrange(len(held)))
                answer = client.send(release_body(victim))
                if answer.code is None:
                    stats.releases.append(answer.seconds)
                else:
                    stats.codes[f"release {answer.code}"] += 1
                    if len(stats.messages) < 3:
                        stats.messages.append(f"release {answer.code}: {answer.message[:300]}")
                    held.append(victim)  # still active as far as we know
    finally:
        client.close()
    stats.held = len(held)
    stats.cpu_seconds = time.process_time() - cpu_at_start
    return stats


def warm_workers(
    base_url: str,
    token: str,
    budget: float = 300.0,
    dry_run: Callable[[int], bytes] | None = None,
    on_slow: Callable[[str], None] | None = None,
) -> int:
    """Dry runs on fresh connections (the kernel hands each to one of the workers) until
    ten in a row answer under a second: every worker has loaded and caught up its index.
    Returns how many were needed. ``dry_run(n)``: the n-th request to send (default: a
    whole node of this benchmark's profile); ``on_slow``: told if they never got fast."""
    client = GraphQLClient(base_url, token, keep_alive=False)
    rng = random.Random(1)
    dry_run = dry_run or (
        lambda _: match_body("warm", WHOLE_PROFILE, whole_node_variables(rng), True)
    )
    fast, sent, deadline = 0, 0, time.monotonic() + budget
    try:
        while fast < 10 and time.monotonic() < deadline:
            answer = client.send(dry_run(sent))
            sent += 1
            if answer.code not in (None, "NO_MATCH"):
                raise BenchError(f"warm-up dry run failed: {answer.code}: {answer.message}")
            fast = fast + 1 if answer.seconds < 1.0 else 0
    finally:
        client.close()
    if fast < 10:
        slow = f"the workers were still slow after {budget:.0f} s of warm-up dry runs"
        (on_slow or problem)(slow)
    return sent


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORE_COLUMNS = ("server", "postgres", "clients", "other")


@dataclass
class CpuSample:
    """CPU seconds used so far, per process (``pid -> (whose, seconds)``), and the
    machine's busy seconds."""

    at: float
    processes: dict[int, tuple[str, float]]
    busy: float

    def cores_since(self, earlier: CpuSample) -> dict[str, float]:
        """Cores used on average in between; a process counts only if alive at both."""
        elapsed = self.at - earlier.at
        cores = {"server": 0.0, "postgres": 0.0}
        for pid, (whose, seconds) in self.processes.items():
            if pid in earlier.processes and earlier.processes[pid][0] == whose:
                cores[whose] += (seconds - earlier.processes[pid][1]) / elapsed
        cores["machine"] = (self.busy - earlier.busy) / elapsed
        return cores


def cpu_sample(pgid: int, database: str) -> CpuSample:
    """From /proc: utime + stime of the server's process group and of PostgreSQL's
    processes for ``database`` (its backends) or for the whole server (writers,
    checkpointer...); other databases' backends are left out. /proc/stat for the machine."""
    processes: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(")")
        fields = rest.split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        backend = "(" in command  # "postgres: 15/main: user db 127.0.0.1(port) ..."
        if int(fields[2]) == pgid:
            processes[int(entry.name)] = ("server", seconds)
        elif name == "postgres" and (f" {database} " in command or not backend):
            processes[int(entry.name)] = ("postgres", seconds)
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS  # minus idle and iowait
    return CpuSample(time.monotonic(), processes, busy)


@dataclass
class ThroughputResult:
    size: int
    duration: float
    stats: list[ClientStats]
    cores: dict[str, float]  # CPU cores used on average during the run, by whom
    verification: Verification

    @property
    def allocations(self) -> int:
        return sum(len(s.claims) for s in self.stats)

    def code(self, name: str) -> int:
        return sum(s.codes[name] for s in self.stats)


def run_throughput_size(size: int, args: argparse.Namespace) -> ThroughputResult:
    label = f"[throughput {size:,}]"
    look_around(label.strip("[]"))
    hold = max(2, size // 50)  # per client: keeps the fleet well under half used
    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-benchm-") as tmp,
        fresh_database("postgresql", args.postgres_url, Path(tmp), "benchm") as url,
        running_service(url, Path(tmp), workers=args.workers, on_traceback=problem) as service,
    ):
        token = cli(url, "token", "create", "--role", "platform-admin", "--name", "benchm")
        client = GraphQLClient(service.base_url, token)
        try:
            setup_service(client, size, args, label)
        finally:
            client.close()
        sent = warm_workers(service.base_url, token)
        progress(f"{label} workers warm after {sent} dry runs; {args.clients} clients go")
        start_at = time.time() + 3.0
        jobs = [
            ClientJob(service.base_url, token, n, start_at, args.duration, hold, args.seed)
            for n in range(args.clients)
        ]
        pool = multiprocessing.get_context("spawn").Pool(args.clients)
        try:
            pending = pool.map_async(client_loop, jobs)
            time.sleep(max(0.0, start_at - time.time()))
            database = url.rpartition("/")[2]
            before = cpu_sample(service.pgid, database)
            time.sleep(args.duration)
            cores = cpu_sample(service.pgid, database).cores_since(before)
            stats = pending.get(timeout=args.duration + 600)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
        verification = verify(url)
    report_verification(verification, label)
    for s in stats:
        for message in s.messages:
            problem(f"{label} {message}")
        if s.codes.get("HTTP 500") or any(k.startswith("HTTP 5") for k in s.codes):
            problem(f"{label} 5xx answers: {dict(s.codes)}")
    held = sum(s.held for s in stats)
    active = verification.counts["active allocations"]
    if held != active:
        problem(f"{label} the clients hold {held} allocations, the database has {active} active")
    cores["clients"] = sum(s.cpu_seconds for s in stats) / args.duration
    ours = cores["server"] + cores["postgres"] + cores["clients"]
    cores["other"] = max(0.0, cores["machine"] - ours)
    if cores["other"] > 0.35:  # the machine's own background is about 0.1-0.2
        problem(f"{label} something else used {cores['other']:.2f} cores during the run")
    result = ThroughputResult(size, args.duration, stats, cores, verification)
    progress(
        f"{label} {result.allocations / args.duration:,.0f} allocations/s, "
        f"claims {Latency.of([c for s in stats for c in s.claims])} ms"
    )
    return result


def throughput_part(args: argparse.Namespace) -> list[str]:
    results = [run_throughput_size(size, args) for size in args.throughput_sizes]
    rows = []
    for r in results:
        claims = Latency.of([c for s in r.stats for c in s.claims])
        releases = Latency.of([c for s in r.stats for c in s.releases])
        other = Counter[str]()
        for s in r.stats:
            other.update({k: v for k, v in s.codes.items() if k not in {"NO_MATCH"}})
        other.pop("CONCURRENT_UPDATE", None)
        most_attempts = max(s.most_attempts for s in r.stats)
        rows.append(
            [
                f"{r.size:,}",
                f"{r.allocations / r.duration:,.0f}",
                f"{sum(s.whole for s in r.stats):,} / {sum(s.slices for s in r.stats):,}",
                str(claims),
                f"{claims.max:.0f}",
                str(releases),
                f"{sum(s.retried for s in r.stats):,} (max {most_attempts})",
                f"{r.code('CONCURRENT_UPDATE'):,}",
                f"{r.code('NO_MATCH'):,}",
                ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "none",
                " / ".join(f"{r.cores[k]:.2f}" for k in CORE_COLUMNS),
            ]
        )
    out = [
        f"3. Throughput: PostgreSQL, `gpuinv serve --workers {args.workers}`, {args.clients} "
        f"client processes (one keep-alive connection each), {args.duration:.0f} s per size",
        "   Each client loops: matchDevice (50% whole node: baremetal gpu=8, sometimes a "
        "gputype; 50% vcluster slice of 1/2/4 GPUs with 16 CPU and 128 GiB per GPU; a new "
        "environment each), then with probability 0.3 (always when it holds more than "
        "fleet/50) releases one of its allocations at random.",
        "   alloc/s = successful allocations / duration; claim = latency of a successful "
        "allocating matchDevice (client side), ms p50 / p99, and max; retried = "
        "claimAttempts > 1; cores = CPU cores used on average during the run by the server "
        "processes, the PostgreSQL processes, the client processes, and anything else on the "
        f"machine ({os.cpu_count()} cores in all).",
        *table(
            [
                "devices",
                "alloc/s",
                "whole / slices",
                "claim p50 / p99 ms",
                "max ms",
                "release p50 / p99 ms",
                "retried",
                "CONCURRENT_UPDATE",
                "NO_MATCH",
                "other errors",
                "cores: server / pg / clients / other",
            ],
            rows,
        ),
    ]
    for r in results:
        out.append(f"   After the {r.size:,}-device run:")
        out += ["  " + line for line in r.verification.lines()]
    return out


# --- part 4: packing quality -----------------------------------------------------------

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
            replace(chosen, status="allocated", free=Capacity(), generation=chosen.generation + 1)
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


# --- the report ------------------------------------------------------------------------


OTHER_LOAD: dict[str, str] = {}  # other benchmarks / test runs seen: command -> when
CODE_SEEN: dict[str, str] = {}  # code version -> when first seen


def other_load() -> list[str]:
    """Other benchmarks (``bench.*``) and test runs (``pytest``) on the machine now."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if ("bench." in command and "bench.matching" not in command) or "pytest" in command:
            found.append(f"pid {entry.name}: {command[:100]}")
    return found


def look_around(where: str) -> None:
    """Note, before each measurement, what else runs and which code the service runs: both
    may change while a long run goes on, and the report should say so."""
    for command in other_load():
        if command not in OTHER_LOAD:
            OTHER_LOAD[command] = where
            progress(f"also running ({where}): {command}; figures will be skewed")
    version = code_version()
    if version not in CODE_SEEN:
        if CODE_SEEN:
            problem(f"the code changed during the run: {version} from {where} on")
        CODE_SEEN[version] = where


def machine_description(args: argparse.Namespace) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        f"Code: gpu-inventory {__version__}, commit "
        + ", then ".join(f"{v} ({where})" for v, where in CODE_SEEN.items())
        + "; client, server and database on the same machine",
    ]
    if {"http", "throughput"} & set(args.parts):
        if "sqlite" in args.backends and "http" in args.parts:
            lines.append(f"SQLite {sqlite3.sqlite_version}, a temp file per run")
        with psycopg.connect(args.postgres_url) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]
        lines.append(f"PostgreSQL {version} on 127.0.0.1, a fresh database (benchm_*) per run")
    lines.append(
        f"Load average (1 min) at start {LOAD_AT_START:.2f}, at end {os.getloadavg()[0]:.2f}; "
        + (
            "also running on the machine (seen before a measurement): "
            + "; ".join(f"{c} ({where})" for c, where in OTHER_LOAD.items())
            if OTHER_LOAD
            else "no other benchmark or test run was seen before any measurement"
        )
    )
    return lines


def report(sections: list[list[str]], args: argparse.Namespace) -> str:
    look_around("end")
    out = ["", "gpu-inventory matchmaking benchmark (bench/matching.py)"]
    out += machine_description(args)
    for section in sections:
        out += ["", *section]
    if PROBLEMS:
        out += ["", "Problems:", *(f"  - {p}" for p in PROBLEMS)]
    return "\n".join(out)


# --- command line ----------------------------------------------------------------------

PARTS = {
    "engine": engine_part,
    "http": http_part,
    "throughput": throughput_part,
    "packing": packing_part,
}


def sizes(text: str) -> list[int]:
    values = [int(s) for s in text.split(",") if s.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("positive whole numbers separated by commas")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.matching",
        description="Matchmaking figures: the engine alone, matchDevice over HTTP, "
        "concurrent claims on PostgreSQL with an over-allocation check, and packing quality "
        "against first-fit and random. Prints figures; asserts nothing about timing.",
    )
    parser.add_argument(
        "--part", choices=[*PARTS, "all"], default="all", help="what to run (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1,000 devices only, short phases (overrides sizes and durations)",
    )
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=[1000, 10000, 100000],
        help="fleet sizes for engine and http (default: 1000,10000,100000)",
    )
    parser.add_argument(
        "--throughput-sizes",
        type=sizes,
        default=[1000, 10000],
        help="fleet sizes for throughput (default: 1000,10000)",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql", "both"],
        default="both",
        help="database backend(s) for the http part (default: %(default)s)",
    )
    parser.add_argument(
        "--engine-requests",
        type=int,
        default=3000,
        help="timed match() calls per size (default: %(default)s)",
    )
    parser.add_argument(
        "--engine-budget",
        type=float,
        default=180.0,
        help="seconds at most of timed match() calls per size (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help="http: requests in the mixed phase, and again dry-run only (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=15,
        help="http: warm-up dry runs of each kind after the first (default: %(default)s)",
    )
    parser.add_argument(
        "--hold",
        type=int,
        default=50,
        help="http: active allocations kept before releasing the oldest (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=5000,
        help="devices per importInventory request (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="throughput: seconds each client loops (default: %(default)s)",
    )
    parser.add_argument(
        "--clients", type=int, default=8, help="throughput: client processes (default: 8)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="throughput: server processes (default: 2)"
    )
    parser.add_argument(
        "--packing-size",
        type=int,
        default=1000,
        help="packing: devices in the fleet (default: %(default)s)",
    )
    parser.add_argument(
        "--packing-seeds",
        type=int,
        default=5,
        help="packing: request streams, one per seed (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        help="admin URL for CREATE/DROP DATABASE benchm_* (default: "
        "$GPUINV_BENCH_POSTGRES_URL or %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.throughput_sizes = [1000], [1000]
        args.engine_requests, args.requests, args.warmup, args.hold = 500, 100, 5, 20
        args.duration, args.packing_seeds = 5.0, 2
    numbers = (args.engine_requests, args.requests, args.hold, args.batch_size, args.clients)
    if min(numbers) < 1 or args.workers < 1 or args.duration <= 0 or args.packing_seeds < 1:
        parser.error("counts, --duration and --packing-seeds must be positive")
    args.parts = list(PARTS) if args.part == "all" else [args.part]
    args.backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so servers stop and databases are dropped either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    look_around("start")
    needs_postgres = "throughput" in args.parts or (
        "http" in args.parts and "postgresql" in args.backends
    )
    if needs_postgres:
        try:
            psycopg.connect(args.postgres_url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            progress(f"PostgreSQL is unreachable at {args.postgres_url}: {exc}")
            return 2
    sections: list[list[str]] = []
    try:
        for part in args.parts:
            progress(f"--- {part} ---")
            sections.append(PARTS[part](args))
    except BenchError as exc:
        problem(f"FAILED: {exc}")
        print(report(sections, args))
        return 1
    except KeyboardInterrupt:
        progress("interrupted; cleaned up; the figures so far:")
        print(report(sections, args))
        return 130
    print(report(sections, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
