"""The simulation's figures, from what each mode's replay recorded, and the report: the
modes side by side in one table per question, the setting, the checks, the problems.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.report import PROBLEMS, machine_line, table
from bench.requests.replay import Job, ModeRun
from bench.requests.workload import (
    PREEMPTIBLE,
    PRIORITIES,
    SIZES,
    Arrival,
    TenantSpec,
    mean_gpus,
    mean_hours,
)
from bench.stats import percentile

SHOWN_STUCK = 5


@dataclass
class Figures:
    """One mode's figures over the replayed window [started, ended]."""

    requests: int = 0  # submitted, re-submissions included
    resubmitted: int = 0
    fulfilled: int = 0
    utilization: float = 0.0  # GPU-hours held / GPU-hours the fleet had
    second_half: float = 0.0  # the same over the window's second half
    marked: int = 0  # allocations seen PREEMPTING
    preempted: int = 0  # ... and then PREEMPTED
    waits: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # minutes
    open_at_end: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    oldest_open: dict[int, float] = field(default_factory=lambda: defaultdict(float))  # minutes
    held_share: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    open_codes: Counter[str] = field(default_factory=Counter)  # their last try's error


def _held_hours(job: Job, start: float, end: float, speed: float) -> float:
    """GPU-hours (simulated) ``job``'s allocation held within [start, end] (epoch)."""
    if job.fulfilled is None:
        return 0.0
    until = min(job.released if job.released is not None else end, end)
    return job.gpus * max(0.0, until - max(job.fulfilled, start)) * speed / 3600


def figures(run: ModeRun, fleet_gpus: int, hours: float) -> Figures:
    f = Figures()
    speed, start, end = run.speed, run.started, run.ended
    middle = (start + end) / 2
    for job in run.jobs:
        priority = job.arrival.priority  # the workload's, also in modes that send 0
        f.requests += 1
        f.resubmitted += job.attempt > 0
        f.marked += job.marked
        f.preempted += job.preempted
        held = _held_hours(job, start, end, speed)
        f.utilization += held
        f.second_half += _held_hours(job, middle, end, speed)
        f.held_share[job.arrival.tenant] += held
        if job.submitted is None:
            continue
        if job.fulfilled is not None and job.fulfilled <= end:
            f.fulfilled += 1
            f.waits[priority].append((job.fulfilled - job.submitted) * speed / 60)
        elif job.state not in ("CANCELLED", "REJECTED", "EXPIRED"):
            f.open_at_end[priority] += 1
            f.open_codes[job.last_error or "untried: held up"] += 1
            waited = (end - job.submitted) * speed / 60
            f.oldest_open[priority] = max(f.oldest_open[priority], waited)
    capacity = fleet_gpus * hours
    f.utilization /= capacity
    f.second_half /= capacity / 2
    for tenant in f.held_share:
        f.held_share[tenant] /= capacity
    return f


def _minutes(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _wait(f: Figures, priority: int) -> str:
    waits = f.waits.get(priority, [])
    shown = "-"
    if waits:
        shown = f"{_minutes(percentile(waits, 50))} / {_minutes(percentile(waits, 99))}"
    shown += f" (n={len(waits)}"
    if f.open_at_end.get(priority):
        shown += f"; {f.open_at_end[priority]} open, oldest {_minutes(f.oldest_open[priority])}"
    return shown + ")"


def _ms(seconds: list[float], p: float) -> str:
    return f"{percentile(seconds, p) * 1000:.0f}" if seconds else "-"


def report(
    args: argparse.Namespace,
    runs: list[ModeRun],
    arrivals: list[Arrival],
    tenants: list[TenantSpec],
    fleet_gpus: int,
    code: str,
) -> str:
    names = [r.mode.name for r in runs]
    done = {r.mode.name: figures(r, fleet_gpus, args.hours) for r in runs}
    by_priority = defaultdict(list)
    for a in arrivals:
        by_priority[a.priority].append(a)
    asked: dict[str, float] = defaultdict(float)
    for a in arrivals:
        asked[a.tenant] += a.gpus * a.hours
    lines = [
        "Provision requests: a seeded day replayed against the real service, queue vs FCFS",
        f"code {code}",
        machine_line(),
        f"Load average at the end: {os.getloadavg()[0]:.2f} (1 min); the machine is shared: "
        "figures are noisy",
        f"fleet: {args.servers} servers x 8 GPUs = {fleet_gpus} GPUs (api/demo.py 8-GPU "
        f"shapes, all available, a shared pool); backend {args.backend}",
        f"replay: hours {args.start:g} to {args.start + args.hours:g} of the day at "
        f"{args.speed:g}x ({args.hours * 3600 / args.speed / 60:.1f} min a mode), seed "
        f"{args.seed}, load {args.load:g} (GPU-hours asked over a whole day / the fleet's); "
        f"grace {args.grace_minutes:g} min, backfill window {args.backfill_minutes:g} min "
        f"(simulated), queue poll {args.queue_poll:g} s (real)",
        f"arrivals: {len(arrivals)} ("
        + ", ".join(f"priority {p}: {len(by_priority[p])}" for p, _ in PRIORITIES)
        + f"; {sum(a.preemptible for a in arrivals)} preemptible); sizes "
        + "/".join(str(g) for g, _ in SIZES)
        + " GPUs weighted "
        + "/".join(str(w) for _, w in SIZES)
        + f"; mean {mean_gpus():.2f} GPUs x {mean_hours():.2f} h; preemptible chance by "
        f"priority {PREEMPTIBLE}",
        "",
    ]
    lines += ["Modes:"] + [f"- {r.mode.name}: {r.mode.about}" for r in runs] + [""]

    def row(label: str, cell: Callable[[Figures, ModeRun], str]) -> list[str]:
        return [label, *(cell(done[r.mode.name], r) for r in runs)]

    overall = [
        row("GPU utilization (held / available)", lambda f, r: f"{f.utilization:.1%}"),
        row("  in the second half of the window", lambda f, r: f"{f.second_half:.1%}"),
        row("requests submitted (re-submitted)", lambda f, r: f"{f.requests} ({f.resubmitted})"),
        row("fulfilled within the window", lambda f, r: str(f.fulfilled)),
        row("never fulfilled by the end (last error)", _open),
        row("preemptions: marked / carried out", lambda f, r: f"{f.marked} / {f.preempted}"),
        row("wait p50 / p99, all (sim. min)", lambda f, r: _wait(_all(f), -1)),
    ]
    lines += ["Overall", *table(["", *names], overall), ""]
    waits = [row(f"priority {p}", _waits_of(p)) for p, _ in PRIORITIES]
    lines += [
        "Queue wait by the arrival's priority: p50 / p99 in simulated minutes (fulfilled "
        "within the window, re-submissions included; fcfs sent every priority as 0), open "
        "at the end and the oldest's wait so far",
        *table(["", *names], waits),
        "",
    ]
    capacity = fleet_gpus * args.hours
    shares = [
        [t.slug, f"{t.quota_share:.0%}", f"{asked[t.slug] / capacity:.0%}",
         *(f"{done[n].held_share.get(t.slug, 0.0):.1%}" for n in names)]
        for t in tenants
    ]  # fmt: skip
    lines += [
        "Per tenant: quota share of the fleet, GPU-hours asked / fleet GPU-hours in the "
        "window, and the mean share of the fleet held",
        *table(["tenant", "quota", "asked", *(f"held: {n}" for n in names)], shares),
        "",
    ]
    client = [
        row("arrival lag p99 / max (real s)", lambda f, r: _lag(r)),
        row("requestDevices p50 / p99 (ms)",
            lambda f, r: f"{_ms(r.submit_seconds, 50)} / {_ms(r.submit_seconds, 99)}"),
        row("poll of all open, p50 / p99 (ms)",
            lambda f, r: f"{_ms(r.poll_seconds, 50)} / {_ms(r.poll_seconds, 99)}"),
        row("suspected stuck (room free)", lambda f, r: str(len(r.stuck))),
    ]  # fmt: skip
    lines += ["The client and the checks", *table(["", *names], client), ""]
    for r in runs:
        lines += [f"[{r.mode.name}] {c}" for c in r.checks]
        lines += [f"[{r.mode.name}] stuck: {s}; {_fate(r, e)}" for e, s in r.stuck[:SHOWN_STUCK]]
        if len(r.stuck) > SHOWN_STUCK:
            lines.append(f"[{r.mode.name}] ... and {len(r.stuck) - SHOWN_STUCK} more")
        lines += [f"[{r.mode.name}] {n} {kind} problems" for kind, n in r.messages.items()]
        if r.code != code:
            lines.append(f"[{r.mode.name}] ran code {r.code}")
    lines += ["", "Problems:", *(f"- {p}" for p in PROBLEMS)] if PROBLEMS else ["Problems: none"]
    return "\n".join(lines)


def _fate(run: ModeRun, environment: str) -> str:
    """What became of a request reported stuck."""
    for job in run.jobs:
        if job.environment == environment and job.submitted is not None:
            if job.fulfilled is None or job.fulfilled > run.ended:
                return "never fulfilled within the window"
            at = (job.fulfilled - run.started) * run.speed / 3600
            waited = (job.fulfilled - job.submitted) * run.speed / 60
            return f"fulfilled at {at:.2f} h, after {waited:.0f} simulated minutes"
    return "not followed by this client"


def _open(f: Figures, _: ModeRun) -> str:
    codes = ", ".join(f"{code} {n}" for code, n in f.open_codes.most_common())
    return f"{sum(f.open_at_end.values())}" + (f" ({codes})" if codes else "")


def _waits_of(priority: int) -> Callable[[Figures, ModeRun], str]:
    return lambda f, _: _wait(f, priority)


def _all(f: Figures) -> Figures:
    merged = Figures()
    merged.waits[-1] = [w for waits in f.waits.values() for w in waits]
    merged.open_at_end[-1] = sum(f.open_at_end.values())
    merged.oldest_open[-1] = max(f.oldest_open.values(), default=0.0)
    return merged


def _lag(run: ModeRun) -> str:
    if not run.lags:
        return "-"
    return f"{percentile(run.lags, 99):.2f} / {max(run.lags):.2f}"
