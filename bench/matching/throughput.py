"""Part 3 of the matchmaking benchmark: concurrent claims on PostgreSQL, several client
processes against ``gpuinv serve --workers N``; allocations/s, claim latency, retries and
where the CPU went, then the over-allocation check (see bench.matching).

The clients are processes, not threads, so that their own Python does not share one
interpreter lock and cap the rate; each keeps one keep-alive connection.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu import OTHER_LOAD, CpuSample, cpu_sample, used
from bench.graphql import GraphQLClient, warm_workers
from bench.matching.checks import Verification, report_verification, verify
from bench.matching.http import setup_service
from bench.matching.report import look_around
from bench.matching.workload import (
    SLICE_PROFILE,
    WHOLE_PROFILE,
    match_body,
    release_body,
    slice_variables,
    whole_node_variables,
)
from bench.report import problem, progress, table
from bench.service import admin_token, fresh_database, running_service
from bench.stats import Latency


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


CORE_COLUMNS = ("server", "postgres", "clients", "other")


def cores_since(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Cores used on average in between by the server and by our PostgreSQL (its
    database's backends and the background processes), counting only processes alive at
    both samples; and by the whole machine."""
    elapsed = after.at - before.at
    return {
        "server": used(before.server, after.server, newborn=False) / elapsed,
        "postgres": used(before.ours, after.ours, newborn=False) / elapsed,
        "machine": (after.busy - before.busy) / elapsed,
    }


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
        token = admin_token(url, "benchm")
        client = GraphQLClient(service.base_url, token)
        try:
            setup_service(client, size, args, label)
        finally:
            client.close()
        rng = random.Random(1)
        sent = warm_workers(
            service.base_url,
            token,
            lambda _: match_body("warm", WHOLE_PROFILE, whole_node_variables(rng), True),
        )
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
            cores = cores_since(before, cpu_sample(service.pgid, database))
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
    if cores["other"] > OTHER_LOAD:
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
