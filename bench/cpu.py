"""Who used the CPU during a measurement: the server, PostgreSQL, the client, others.

Client, server and database share the machine's few cores, so a throughput figure means
little without where the CPU went and whether someone else's load took a share. Read
from /proc (Linux): utime + stime of the server's process group and of the PostgreSQL
processes, getrusage for this process, /proc/stat for the whole machine. One sampler here
for bench.matching's throughput and bench.claims' replay.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import progress

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OTHER_LOAD = 0.35  # cores; an idle machine's own background is about 0.1-0.2


@dataclass
class CpuSample:
    server: dict[int, float]  # pid -> utime + stime seconds, the server's process group
    postgres: dict[int, float]  # the same, every postgres process
    ours: dict[int, float]  # postgres processes of our database, or of none (background)
    client: float  # this process: getrusage user + system seconds
    busy: float  # the machine: /proc/stat, not idle nor iowait
    at: float  # time.monotonic()


def cpu_sample(pgid: int, database: str) -> CpuSample:
    """The CPU seconds used so far by the server (process group ``pgid``), PostgreSQL
    (every process, and ours: the backends of ``database`` and the background processes:
    writers, checkpointer...; other databases' backends are left out), this process and
    the machine."""
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
    """The machine's busy CPU seconds so far: /proc/stat minus idle and iowait."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


def used(before: dict[int, float], after: dict[int, float], newborn: bool = True) -> float:
    """CPU seconds in between. A process born in between counts from zero, or not at all
    if not ``newborn``; one that died in between is lost (there is no way to read it)."""
    return sum(
        seconds - before.get(pid, 0.0) for pid, seconds in after.items() if newborn or pid in before
    )


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
