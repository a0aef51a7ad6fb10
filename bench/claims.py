"""Claim-replay benchmark: a seeded list of claims replayed against real servers on PostgreSQL.

What is measured, and why (the issue: "A replay (1,000 GPU servers of several SKUs and
sites; 500 claims, about 60% whole 8-GPU nodes and 40% 1/2/4-GPU slices, filtered on
model, vendor and any-of locations; each claim its own HTTP request), 2 processes,
8 clients, PostgreSQL")
----------------------------------------------------------------------------------------
Each run starts from nothing: a fresh PostgreSQL database; the fleet loaded with
``gpuinv import`` (``--nodes`` servers built by bench/matching.py's ``fleet_documents``,
itself api/demo.py's ``server_document`` and SHAPES: 8-GPU H100, H200, B200, MI300X and
Gaudi3 servers and 4-GPU L40S, five sites in three ``tags.location`` regions, about 12%
not available); a platform-admin token (``gpuinv token create``); two profiles saved
with ``gpuinv profile save`` (the same filters, ``baremetal`` for whole nodes and
``vcluster`` for slices); then ``gpuinv serve --workers N``.

The claims: ``--claims`` matchDevice requests (seeded, the same list in every run), each
with its own ``environment``: about 60% whole 8-GPU nodes (baremetal, ``gpu=8``) and
40% vcluster slices of 1, 2 or 4 GPUs (``gpu``, ``cpu`` = 16 a GPU, ``memoryMB`` = 128 GiB
a GPU). Every claim names a GPU type (``gputype``: ``tags.gputype``), its vendor
(``vendor``: ``gpus.vendorCode``) and one to three regions (``zone``: a list, any of
which ``tags.location`` may be). ``--clients`` threads in this process, each with its own
keep-alive connection, take the next claim from the list and send it, as fast as they
go, until the list is done. Their HTTP client is httpx, as a Python pipeline's would be;
``--client socket`` (or ``both``, interleaved run by run) uses bench/socket_client.py
instead, a wrk-like client that costs the shared cores about a sixth as much, so the
figures show more of what the server itself can do. Before that: dry runs on fresh
connections until every worker answers fast (its index loaded), then two dry runs on
each client's connection.

Reported per run: claims/s (claims answered / wall time from the first send to the last
answer), latency p50/p95/p99 over every claim's request (sent to answer fully read,
whatever the outcome; nearest rank), outcomes (allocated, NO_MATCH, errors by code),
and CPU per claim, in ms: the server (utime + stime from /proc of ``gpuinv serve`` and
its workers, its process group), PostgreSQL (every ``postgres`` process, as if the
machine were dedicated; in brackets only our database's backends and the background
processes, for a machine that is not; a process that exits during the run loses its
share) and this client process (getrusage). ``other cores`` is the machine's busy CPU
(/proc/stat) not accounted for by the server, our PostgreSQL and the client, in cores on
average: more than a few tenths means someone else's load shared the cores and the
figures are doubtful (such runs are listed as problems). So before each replay the
benchmark waits, up to ``--wait-quiet`` seconds, for the machine to be quiet.

After each run the database itself is checked (psycopg, not the API): no device has
more GPUs, CPUs or memory allocated than it has; every device's free amounts equal its
total minus its active allocations' amounts and lie within 0..total; no device is held
whole by two active allocations, or held whole and sliced at once; every active
allocation has active devices and no released one does; the active allocations are as
many as the claims answered "allocated". The report says ``over-allocation: 0`` or
lists the offending rows.

``--code-dir DIR`` runs the servers and the ``gpuinv`` commands from another checkout
(``python -m api.cli`` with cwd and PYTHONPATH = DIR), e.g. a ``git worktree`` of an
older commit, for a "before" figure while the working tree changes.

Nothing here asserts on timing. Run ``python -m bench.claims --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.matching import Answer, GraphQLClient, body, fleet_documents, table, warm_workers
from bench.service import (
    GPUINV,
    BenchError,
    Service,
    cli,
    fresh_database,
    running_service,
    service_env,
)
from bench.socket_client import SocketClient

DEFAULT_POSTGRES = os.environ.get(
    "GPUINV_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parents[1]
PROBLEMS: list[str] = []  # errors, 5xx, broken invariants: printed with the tables
CLIENTS = {"httpx": GraphQLClient, "socket": SocketClient}  # --client

# The profiles: one set of filters, two inventory types.
CONFIG = [
    {"type": "match", "keyInVariable": "gputype", "keyInDevice": "tags.gputype"},
    {"type": "match", "keyInVariable": "vendor", "keyInDevice": "gpus.vendorCode"},
    {"type": "match", "keyInVariable": "zone", "keyInDevice": "tags.location"},
    {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
    {"type": "capacity", "keyInVariable": "cpu", "keyInCapacity": "requiredCPU"},
    {"type": "capacity", "keyInVariable": "memoryMB", "keyInCapacity": "requiredMemoryMB"},
]
WHOLE_PROFILE, SLICE_PROFILE = "claims-whole", "claims-slice"
PROFILE_TYPES = {WHOLE_PROFILE: "baremetal", SLICE_PROFILE: "vcluster"}
SLICE_CPU, SLICE_MEMORY_MB = 16, 131072  # per GPU of a vcluster slice
REGIONS = ["india", "us", "germany"]  # api/demo.py SITES' tags.location values
# (gputype tag, GPU vendor, weight): the fleet's own shares (api/demo.py SHAPES).
WHOLE_SKUS = [("H100", "NVIDIA", 90), ("H200", "NVIDIA", 60), ("B200", "NVIDIA", 40)]
WHOLE_SKUS += [("MI300X", "AMD", 50)]
SLICE_SKUS = [*WHOLE_SKUS, ("L40S", "NVIDIA", 30)]

MATCH_MUTATION = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id devices { hostname exclusive gpus } } deviceDetails claimAttempts } }"""


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def problem(message: str) -> None:
    PROBLEMS.append(message)
    progress(f"PROBLEM: {message}")


# --- the claims ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    number: int
    profile: str
    variables: dict[str, Any]

    def request(self, run: str, dry_run: bool = False) -> bytes:
        given = {
            "environment": f"{run}-claim-{self.number:04d}",
            "profile": self.profile,
            "variables": self.variables,
            "dryRun": dry_run,
        }
        return body(MATCH_MUTATION, {"input": given})


def claim_list(count: int, seed: int) -> list[Claim]:
    """``count`` claims: 60% whole 8-GPU nodes, 40% slices of 1/2/4 GPUs, each naming a
    GPU type, its vendor and one to three regions (any of them will do)."""
    rng = random.Random(seed)
    claims = []
    for number in range(count):
        whole = rng.random() < 0.6
        skus = WHOLE_SKUS if whole else SLICE_SKUS
        gputype, vendor, _ = rng.choices(skus, [s[2] for s in skus])[0]
        zones = rng.sample(REGIONS, rng.choices([1, 2, 3], [40, 40, 20])[0])
        variables: dict[str, Any] = {"gputype": gputype, "vendor": vendor, "zone": zones}
        if whole:
            variables["gpu"] = 8
        else:
            g = rng.choice([1, 2, 4])
            variables |= {"gpu": g, "cpu": SLICE_CPU * g, "memoryMB": SLICE_MEMORY_MB * g}
        claims.append(Claim(number, WHOLE_PROFILE if whole else SLICE_PROFILE, variables))
    return claims


# --- the code under test: this checkout or --code-dir ---------------------------------


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def code_version(directory: Path) -> str:
    """``git describe`` of DIR, and, when api/ has uncommitted changes, which files and a
    hash of the diff (the tree may change between runs while people work)."""
    described = git(directory, "describe", "--always", "--tags") or "?"
    head = git(directory, "rev-parse", "--short", "HEAD")
    if head and head not in described:
        described += f" ({head})"
    changed = git(directory, "status", "--porcelain", "--", "api").splitlines()
    if not changed:
        return described
    diff = subprocess.run(
        ["git", "-C", str(directory), "diff", "HEAD", "--", "api"],
        capture_output=True,
        check=False,
    ).stdout
    names = ", ".join(line.split(None, 1)[-1] for line in changed)
    return f"{described}+dirty:{hashlib.sha1(diff).hexdigest()[:8]} ({names})"


@dataclass(frozen=True)
class Code:
    """How to run ``gpuinv`` from a checkout."""

    directory: Path | None  # None: this checkout's console script

    def command(self) -> list[str]:
        return [str(GPUINV)] if self.directory is None else [sys.executable, "-m", "api.cli"]

    def env(self, database_url: str) -> dict[str, str]:
        extra = {} if self.directory is None else {"PYTHONPATH": str(self.directory)}
        return service_env(database_url, extra)

    @property
    def cwd(self) -> Path | None:
        return self.directory

    def version(self) -> str:
        return code_version(self.directory or ROOT)

    def api_path(self) -> str:
        """Where the servers' ``api`` package comes from, asked of the same interpreter,
        directory and environment the servers get."""
        done = subprocess.run(
            [sys.executable, "-c", "import api, os; print(os.path.dirname(api.__file__))"],
            cwd=self.cwd,
            env=self.env(""),
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() or f"? ({done.stderr.strip()[-200:]})"

    def cli(self, database_url: str, *args: str) -> str:
        extra = {} if self.directory is None else {"PYTHONPATH": str(self.directory)}
        return cli(database_url, *args, env=extra, gpuinv=self.command(), cwd=self.cwd, timeout=600)


def serving(
    code: Code, database_url: str, workdir: Path, workers: int
) -> AbstractContextManager[Service]:
    """``gpuinv serve --workers N`` of ``code``'s checkout (bench.service); a traceback in
    its log is a problem."""
    return running_service(
        database_url,
        workdir,
        workers,
        on_traceback=problem,
        gpuinv=code.command(),
        cwd=code.cwd,
        env=code.env(database_url),
    )


def prepare(code: Code, url: str, workdir: Path, fleet_file: Path) -> str:
    """Fleet, profiles and a token, through the CLI; the token."""
    said = code.cli(url, "import", str(fleet_file))
    progress(f"  gpuinv import: {said}")
    for name, inventory_type in PROFILE_TYPES.items():
        labels = {
            "paas.envmgmt.io/inventory": inventory_type,
            "paas.envmgmt.io/inventory.config": json.dumps(CONFIG),
        }
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(labels))
        code.cli(url, "profile", "save", name, str(path))
    return code.cli(url, "token", "create", "--role", "platform-admin", "--name", "claims")


# --- CPU ------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OTHER_LOAD = 0.35  # cores; an idle machine's own background is about 0.1-0.2


@dataclass
class CpuSample:
    server: dict[int, float]  # pid -> utime + stime seconds, the server's process group
    postgres: dict[int, float]  # the same, every postgres process
    ours: dict[int, float]  # postgres processes of our database, or of none (background)
    client: float  # this process: getrusage user + system seconds
    busy: float  # the machine: /proc/stat, not idle nor iowait
    at: float


def cpu_sample(pgid: int, database: str) -> CpuSample:
    server: dict[int, float] = {}
    postgres: dict[int, float] = {}
    ours: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(")")
        fields = rest.split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        if int(fields[2]) == pgid:
            server[int(entry.name)] = seconds
        elif name == "postgres":
            postgres[int(entry.name)] = seconds
            try:  # "postgres: 15/main: user db 127.0.0.1(port) idle" for a backend
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if f" {database} " in command or "(" not in command:
                ours[int(entry.name)] = seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSample(
        server, postgres, ours, usage.ru_utime + usage.ru_stime, machine_busy(), time.monotonic()
    )


def machine_busy() -> float:
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def wait_quiet(budget: float, label: str) -> None:
    """Wait (up to ``budget`` s) for the machine to be quiet: under OTHER_LOAD cores busy
    over two seconds, our idle server and database included. Other people's tests on a
    two-core machine would otherwise be half the figures."""
    if budget <= 0:
        return
    deadline = time.monotonic() + budget
    waited = False
    while True:
        before, at = machine_busy(), time.monotonic()
        time.sleep(2.0)
        cores = (machine_busy() - before) / (time.monotonic() - at)
        if cores < OTHER_LOAD:
            if waited:
                progress(f"[{label}] quiet now ({cores:.2f} cores busy)")
            return
        if time.monotonic() > deadline:
            progress(f"[{label}] still {cores:.2f} cores busy after {budget:.0f} s: going on")
            return
        if not waited:
            progress(f"[{label}] the machine is busy ({cores:.2f} cores): waiting for quiet")
            waited = True


def used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds in between: a process born in between counts from zero; one that died
    in between is lost (there is no way to read it)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# --- the replay -----------------------------------------------------------------------


@dataclass
class RunResult:
    label: str
    code: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    retried: int = 0  # claimAttempts > 1
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, by whose
    other_cores: float = 0.0
    offending: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    @property
    def claims(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


def outcome_of(answer: Answer) -> str:
    if answer.code is None:
        data = (answer.data or {}).get("matchDevice") or {}
        return "allocated" if data.get("allocation") else "answered without an allocation"
    return answer.code


def replay(
    server: Service,
    token: str,
    database: str,
    claims: list[Claim],
    clients: int,
    result: RunResult,
    client_kind: str,
) -> None:
    """``clients`` threads, each its own keep-alive connection (``client_kind``: httpx or
    socket), take the next claim until none is left. CPU is sampled just before they
    start and after the last answer."""
    lock = threading.Lock()
    position = iter(range(len(claims)))
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    messages: list[str] = []
    retried = 0
    ready = threading.Barrier(clients + 1)

    def client_thread(number: int) -> None:
        nonlocal retried
        client = CLIENTS[client_kind](server.base_url, token)
        try:
            for n in range(2):  # the connection made, this worker warm, nothing allocated
                answer = client.send(claims[(number * 2 + n) % len(claims)].request("warm", True))
                if answer.code not in (None, "NO_MATCH"):
                    messages.append(f"client {number} warm-up: {answer.code}: {answer.message}")
                    ready.abort()
                    return
            ready.wait()
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                request = claims[index].request("claims")
                started = time.perf_counter()
                try:
                    answer = client.send(request)
                except (httpx.HTTPError, OSError, BenchError) as exc:
                    seconds = time.perf_counter() - started
                    answer = Answer(seconds, None, type(exc).__name__, str(exc))
                outcome = outcome_of(answer)
                attempts = ((answer.data or {}).get("matchDevice") or {}).get("claimAttempts")
                with lock:
                    latencies.append(answer.seconds)
                    outcomes[outcome] += 1
                    retried += bool(attempts and attempts > 1)
                    if outcome not in ("allocated", "NO_MATCH") and len(messages) < 5:
                        messages.append(f"claim {index}: {outcome}: {answer.message[:300]}")
        finally:
            client.close()

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=300)
    except threading.BrokenBarrierError as exc:
        for thread in threads:
            thread.join()
        raise BenchError(f"the clients' warm-up dry runs failed: {messages}") from exc
    before = cpu_sample(server.pgid, database)
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    after = cpu_sample(server.pgid, database)
    result.latencies, result.outcomes, result.retried = latencies, outcomes, retried
    result.cpu = {
        "server": used(before.server, after.server),
        "postgres": used(before.postgres, after.postgres),
        # from its total at the start whatever it was then taken for (a backend just
        # forked may not show its database yet)
        "ours": used(before.postgres, after.ours),
        "client": after.client - before.client,
    }
    accounted = result.cpu["server"] + result.cpu["ours"] + result.cpu["client"]
    result.other_cores = max(0.0, (after.busy - before.busy - accounted) / (after.at - before.at))
    if result.other_cores > OTHER_LOAD:
        problem(
            f"[{result.label}] someone else used {result.other_cores:.2f} cores on average "
            "during the run: its figures are doubtful"
        )
    for message in messages:
        problem(f"[{result.label}] {message}")
    if len(latencies) != len(claims):
        problem(f"[{result.label}] {len(latencies)} of {len(claims)} claims answered")


# --- over-allocation, read from PostgreSQL ---------------------------------------------

HELD = """(SELECT device_id, sum(cpu) AS cpu, sum(memory_mb) AS mem, sum(storage_gb) AS sto,
             sum(gpus) AS gpus, count(*) AS n, count(*) FILTER (WHERE exclusive) AS whole
           FROM allocation_device WHERE active GROUP BY device_id)"""
OVER_ALLOCATION = {
    "devices with more allocated than they have (hostname, total/allocated GPUs, CPUs, MB)": f"""
        SELECT d.hostname, d.total_gpus, h.gpus, d.total_cpu, h.cpu, d.total_memory_mb, h.mem
        FROM device d JOIN {HELD} h ON h.device_id = d.id
        WHERE h.gpus > d.total_gpus OR h.cpu > d.total_cpu OR h.mem > d.total_memory_mb
           OR h.sto > d.total_storage_gb""",
    "devices whose free amounts are not total minus what active allocations hold "
    "(hostname, total/free/held GPUs, CPUs)": f"""
        SELECT d.hostname, d.total_gpus, d.free_gpus, coalesce(h.gpus, 0),
               d.total_cpu, d.free_cpu, coalesce(h.cpu, 0)
        FROM device d LEFT JOIN {HELD} h ON h.device_id = d.id
        WHERE d.total_gpus - d.free_gpus <> coalesce(h.gpus, 0)
           OR d.total_cpu - d.free_cpu <> coalesce(h.cpu, 0)
           OR d.total_memory_mb - d.free_memory_mb <> coalesce(h.mem, 0)
           OR d.total_storage_gb - d.free_storage_gb <> coalesce(h.sto, 0)""",
    "devices with free amounts outside 0..total (hostname, total/free GPUs, CPUs, MB)": """
        SELECT hostname, total_gpus, free_gpus, total_cpu, free_cpu, total_memory_mb,
               free_memory_mb FROM device
        WHERE free_gpus NOT BETWEEN 0 AND total_gpus OR free_cpu NOT BETWEEN 0 AND total_cpu
           OR free_memory_mb NOT BETWEEN 0 AND total_memory_mb
           OR free_storage_gb NOT BETWEEN 0 AND total_storage_gb""",
    "devices held whole by two or more active allocations, or held whole and sliced "
    "(hostname, active rows, exclusive rows, environments)": f"""
        SELECT d.hostname, h.n, h.whole, (SELECT string_agg(a.environment, ' ')
          FROM allocation_device ad JOIN allocation a ON a.id = ad.allocation_id
          WHERE ad.device_id = d.id AND ad.active)
        FROM device d JOIN {HELD} h ON h.device_id = d.id WHERE h.whole > 0 AND h.n > 1""",
    "allocation devices whose active flag disagrees with their allocation's release "
    "(environment, hostname, active, released_at)": """
        SELECT a.environment, ad.hostname, ad.active, a.released_at
        FROM allocation_device ad JOIN allocation a ON a.id = ad.allocation_id
        WHERE ad.active <> (a.released_at IS NULL)""",
    "active allocations holding no active device (environment, inventory type)": """
        SELECT a.environment, a.inventory_type FROM allocation a
        WHERE a.released_at IS NULL AND NOT EXISTS (SELECT 1 FROM allocation_device ad
          WHERE ad.allocation_id = a.id AND ad.active)""",
    "whole-node allocations not holding exactly one whole device, or slices holding a "
    "device whole (environment, inventory type, rows, exclusive rows)": """
        SELECT a.environment, a.inventory_type, count(*),
               count(*) FILTER (WHERE ad.exclusive)
        FROM allocation a JOIN allocation_device ad ON ad.allocation_id = a.id AND ad.active
        WHERE a.released_at IS NULL GROUP BY a.id, a.environment, a.inventory_type
        HAVING (a.inventory_type = 'baremetal'
                AND (count(*) <> 1 OR count(*) FILTER (WHERE ad.exclusive) <> 1))
            OR (a.inventory_type = 'vcluster' AND count(*) FILTER (WHERE ad.exclusive) > 0)""",
}
ACTIVE = "SELECT count(*) FROM allocation WHERE released_at IS NULL"
SHOWN_ROWS = 20


def verify(database_url: str, result: RunResult) -> None:
    """The invariants, straight from the database; offending rows kept in the result."""
    with psycopg.connect(database_url) as connection:
        for name, query in OVER_ALLOCATION.items():
            rows = connection.execute(query).fetchall()
            if rows:
                result.offending[name] = rows
        active = connection.execute(ACTIVE).fetchone()
    allocated = result.outcomes["allocated"]
    if active is None or active[0] != allocated:
        count = active[0] if active else "?"
        result.offending[
            f"active allocations ({count}) differ from the claims answered allocated ({allocated})"
        ] = []


def verification_lines(result: RunResult) -> list[str]:
    if not result.offending:
        return [f"[{result.label}] over-allocation: 0"]
    lines = [f"[{result.label}] over-allocation: {len(result.offending)} checks FAILED"]
    for name, rows in result.offending.items():
        lines.append(f"  {name}: {len(rows)} rows")
        lines += [f"    {row}" for row in rows[:SHOWN_ROWS]]
        if len(rows) > SHOWN_ROWS:
            lines.append(f"    ... and {len(rows) - SHOWN_ROWS} more")
    return lines


# --- one run --------------------------------------------------------------------------


def one_run(
    code: Code,
    args: argparse.Namespace,
    claims: list[Claim],
    fleet_file: Path,
    workers: int,
    clients: int,
    client_kind: str,
    label: str,
) -> RunResult:
    result = RunResult(label, code.version())
    progress(f"[{label}] code {result.code}; a fresh database, {workers} workers")
    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-claims-") as tmp,
        fresh_database("postgresql", args.database_url, Path(tmp), "benchclaims") as url,
    ):
        started = time.perf_counter()
        token = prepare(code, url, Path(tmp), fleet_file)
        with serving(code, url, Path(tmp), workers) as server:
            progress(
                f"[{label}] fleet, profiles, token, server: {time.perf_counter() - started:.1f} s"
            )
            started = time.perf_counter()
            sent = warm_workers(
                server.base_url,
                token,
                dry_run=lambda n: claims[n % len(claims)].request("warm", dry_run=True),
                on_slow=problem,
            )
            progress(
                f"[{label}] warm after {sent} dry runs ({time.perf_counter() - started:.1f} s)"
            )
            wait_quiet(args.wait_quiet, label)
            replay(server, token, url.rpartition("/")[2], claims, clients, result, client_kind)
            verify(url, result)
        for line in verification_lines(result):
            progress(line)
        if result.offending:
            problem(f"[{label}] over-allocation or inconsistent bookkeeping: see the report")
    progress(
        f"[{label}] {result.claims / result.seconds:,.1f} claims/s, p50/p95/p99 "
        f"{result.percentile(50):.1f}/{result.percentile(95):.1f}/{result.percentile(99):.1f} ms, "
        f"{dict(result.outcomes)}"
    )
    return result


# --- the report -----------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def result_table(results: list[RunResult]) -> list[str]:
    rows = []
    for r in results:
        per_claim = {k: v * 1000 / max(1, r.claims) for k, v in r.cpu.items()}
        outcomes = ", ".join(
            f"{k} {v}" for k, v in sorted(r.outcomes.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        rows.append(
            [
                r.label,
                f"{r.claims / r.seconds:,.1f}",
                ms(r.percentile(50)),
                ms(r.percentile(95)),
                ms(r.percentile(99)),
                ms(per_claim["server"]),
                f"{ms(per_claim['postgres'])} ({ms(per_claim['ours'])})",
                ms(per_claim["client"]),
                f"{r.other_cores:.2f}",
                outcomes + (f"; {r.retried} retried" if r.retried else ""),
                "0" if not r.offending else f"FAILED ({len(r.offending)})",
            ]
        )
    header = ["run", "claims/s", "p50 ms", "p95 ms", "p99 ms", "server ms CPU/claim"]
    header += [
        "PostgreSQL ms CPU/claim: all (ours)",
        "client ms CPU/claim",
        "other cores",
        "outcomes",
    ]
    header += ["over-alloc."]
    return table(header, rows)


def summary(results: list[RunResult]) -> str:
    if len(results) < 2:
        return ""
    rates = sorted(r.claims / r.seconds for r in results)
    p50s = sorted(r.percentile(50) for r in results)
    p99s = sorted(r.percentile(99) for r in results)
    middle = len(results) // 2
    return (
        f"   median of {len(results)} runs: {rates[middle]:,.1f} claims/s, "
        f"p50 {ms(p50s[middle])} ms, p99 {ms(p99s[middle])} ms"
    )


def report(
    sections: list[tuple[str, list[RunResult]]], args: argparse.Namespace, code: Code
) -> str:
    lines = [
        "Claim replay: matchDevice claims over HTTP, PostgreSQL",
        f"code under test: {code.version()}",
        f"  servers from {code.directory or ROOT} (api imported from {code.api_path()})",
        f"bench: {code_version(ROOT)}",
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average at the end {os.getloadavg()[0]:.2f}",
        f"fleet: {args.nodes:,} servers (api/demo.py shapes, 5 sites in india/us/germany, "
        f"~12% not available); claims: {args.claims} (seed {args.seed}): ~60% whole 8-GPU "
        "nodes (baremetal), ~40% vcluster slices of 1/2/4 GPUs; each names gputype, vendor "
        "and 1-3 zones (any of); each its own environment and HTTP request.",
        "latency: every claim's request, sent to answer read, whatever its outcome (nearest "
        "rank). CPU: ms per claim answered. PostgreSQL: every postgres process ('all', as on a "
        "dedicated machine) and, in brackets, only our database's backends and the "
        "background processes ('ours'). 'other cores': the machine's busy CPU that is "
        "neither server, our PostgreSQL nor this client, in cores on average: someone "
        "else's load (other databases' backends included), which makes figures doubtful. "
        "'retried': claims whose claimAttempts > 1 (a concurrent claim took the device "
        "chosen first).",
        "",
    ]
    for title, results in sections:
        lines += [title, *result_table(results)]
        if line := summary(results):
            lines.append(line)
        for r in results:
            if r.code != code.version():
                lines.append(f"   {r.label}: code {r.code}")
        lines += [line for r in results for line in verification_lines(r)]
        lines.append("")
    if PROBLEMS:
        lines += ["Problems:", *(f"- {p}" for p in PROBLEMS)]
    else:
        lines.append("Problems: none")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.claims",
        description=(
            "Claim replay: a seeded list of matchDevice claims (60% whole 8-GPU nodes, 40% "
            "1/2/4-GPU slices) sent by concurrent clients to `gpuinv serve --workers N` on "
            "PostgreSQL; claims/s, latency p50/p95/p99, CPU per claim (server, PostgreSQL, "
            "client), outcomes; over-allocation checked in the database after each run."
        ),
    )
    parser.add_argument("--nodes", type=int, default=1000, help="GPU servers (default: 1000)")
    parser.add_argument("--claims", type=int, default=500, help="claims a run (default: 500)")
    parser.add_argument(
        "--workers", type=int, default=2, help="server processes, `serve --workers` (default: 2)"
    )
    parser.add_argument(
        "--clients", type=int, default=8, help="client threads, one connection each (default: 8)"
    )
    parser.add_argument(
        "--client",
        choices=[*CLIENTS, "both"],
        default="httpx",
        help="the clients' HTTP client: httpx (default), socket (bench/socket_client.py, "
        "lighter), or both, interleaved run by run",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs, each on a fresh database (default: 3)"
    )
    parser.add_argument(
        "--also-single",
        action="store_true",
        help="also the same runs with 1 server process and 1 client",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL admin URL; each run creates and drops its own database "
        f"(default: $GPUINV_BENCH_POSTGRES_URL or {DEFAULT_POSTGRES})",
    )
    parser.add_argument(
        "--code-dir",
        type=Path,
        help="run the servers and gpuinv commands from this checkout (python -m api.cli, "
        "cwd and PYTHONPATH = DIR), e.g. a git worktree of an older commit",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="before each replay, wait up to this long for the machine to be quiet (less "
        f"than {OTHER_LOAD} cores busy over 2 s); 0: do not wait (default: 120)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    args = parser.parse_args(argv)
    if args.database_url.startswith("sqlite"):
        parser.error("--database-url must be PostgreSQL")
    if args.code_dir is not None:
        args.code_dir = args.code_dir.resolve()
        if not (args.code_dir / "api" / "cli").is_dir():
            parser.error(f"--code-dir {args.code_dir}: no api/cli/ there")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    code = Code(args.code_dir)
    print(f"code under test: {code.version()}", flush=True)
    claims = claim_list(args.claims, args.seed)
    configurations = [(args.workers, args.clients)]
    if args.also_single and (args.workers, args.clients) != (1, 1):
        configurations.append((1, 1))
    kinds = list(CLIENTS) if args.client == "both" else [args.client]
    sections: list[tuple[str, list[RunResult]]] = []
    with tempfile.TemporaryDirectory(prefix="gpuinv-claims-fleet-") as tmp:
        fleet_file = Path(tmp) / "fleet.json"
        fleet_file.write_text(json.dumps({"devices": fleet_documents(args.nodes, args.seed)}))
        try:
            for workers, clients in configurations:
                by_kind: dict[str, list[RunResult]] = {}
                for kind in kinds:
                    title = (
                        f"{workers} server process{'es' if workers > 1 else ''}, "
                        f"{clients} {kind} client{'s' if clients > 1 else ''}"
                    )
                    sections.append((title, by_kind.setdefault(kind, [])))
                for run in range(1, args.runs + 1):  # the kinds interleaved: the VM drifts
                    for kind in kinds:
                        label = f"{workers}w/{clients}c {kind} #{run}"
                        by_kind[kind].append(
                            one_run(code, args, claims, fleet_file, workers, clients, kind, label)
                        )
        except BenchError as exc:
            problem(f"FAILED: {exc}")
            print(report(sections, args, code))
            return 1
        except KeyboardInterrupt:
            progress("interrupted; cleaned up; the figures so far:")
            print(report(sections, args, code))
            return 130
    print(report(sections, args, code))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
