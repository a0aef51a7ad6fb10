"""The claim replay's report: a table per configuration and client, a median line, the
code and machine, the checks and the problems.
"""

from __future__ import annotations

import argparse
import os
import platform

from bench.claims.checks import verification_lines
from bench.claims.code import Code, describe
from bench.claims.replay import RunResult
from bench.report import PROBLEMS, table
from bench.service import ROOT


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
        f"bench: {describe(ROOT)}",
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
