"""``python -m bench.claims``: the command line, and the runs, each on a fresh database;
what they measure and why is in bench/claims/__init__.py."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.claims.checks import verification_lines, verify
from bench.claims.code import CALLERS, Code, prepare, serving
from bench.claims.replay import CLIENTS, RunResult, replay
from bench.claims.report import report
from bench.claims.workload import Claim, claim_list
from bench.cpu import OTHER_LOAD, wait_quiet
from bench.fleet import fleet_documents
from bench.graphql import warm_workers
from bench.report import finish, problem, progress
from bench.service import DEFAULT_POSTGRES, fresh_database


def one_run(
    code: Code,
    args: argparse.Namespace,
    claims: list[Claim],
    fleet_file: Path,
    workers: int,
    clients: int,
    client_kind: str,
    label: str,
    caller: str = "platform",
) -> RunResult:
    result = RunResult(label, code.version())
    progress(f"[{label}] code {result.code}; a fresh database, {workers} workers")
    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-claims-") as tmp,
        fresh_database("postgresql", args.database_url, Path(tmp), "benchclaims") as url,
    ):
        started = time.perf_counter()
        token = prepare(code, url, Path(tmp), fleet_file, caller)
        with serving(code, url, Path(tmp), workers) as server:
            progress(
                f"[{label}] fleet, profiles, token, server: {time.perf_counter() - started:.1f} s"
            )
            started = time.perf_counter()
            sent = warm_workers(
                server.base_url,
                token,
                dry_run=lambda n: claims[n % len(claims)].request("warm", dry_run=True),
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
    parser.add_argument(
        "--caller",
        choices=[*CALLERS, "all"],
        default="platform",
        help="who claims: a platform-wide token (default); a tenant's provisioner (its "
        "usage counted); the same under a quota every claim is checked against; or all "
        "three, interleaved run by run (issue 16's quotas-on against quotas-off)",
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
    callers = list(CALLERS) if args.caller == "all" else [args.caller]
    sections: list[tuple[str, list[RunResult]]] = []

    def run_all() -> None:
        with tempfile.TemporaryDirectory(prefix="gpuinv-claims-fleet-") as tmp:
            fleet_file = Path(tmp) / "fleet.json"
            fleet_file.write_text(json.dumps({"devices": fleet_documents(args.nodes, args.seed)}))
            for workers, clients in configurations:
                by_kind: dict[tuple[str, str], list[RunResult]] = {}
                for kind in kinds:
                    for caller in callers:
                        title = (
                            f"{workers} server process{'es' if workers > 1 else ''}, "
                            f"{clients} {kind} client{'s' if clients > 1 else ''}"
                            + ("" if caller == "platform" else f", {caller} caller")
                        )
                        sections.append((title, by_kind.setdefault((kind, caller), [])))
                for run in range(1, args.runs + 1):  # interleaved: the VM drifts
                    for kind in kinds:
                        for caller in callers:
                            label = f"{workers}w/{clients}c {kind} {caller} #{run}"
                            by_kind[kind, caller].append(
                                one_run(
                                    code, args, claims, fleet_file, workers, clients, kind,
                                    label, caller,
                                )
                            )  # fmt: skip

    return finish(run_all, lambda: report(sections, args, code))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
