"""How a benchmark talks: progress lines on stderr, the problems list, the table printer,
the machine's description, and the end of a run (the report printed whatever happened).

Figures go to stdout as a report at the end; progress goes to stderr as it happens, so a
long run can be watched and its report still piped. Problems (errors, 5xx, broken
invariants, budgets run out) are collected in one list per process and printed with the
tables, since they make figures void. One copy here so every report reads the same.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.service import BenchError

PROBLEMS: list[str] = []  # printed with the tables by each benchmark's report


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def problem(message: str) -> None:
    PROBLEMS.append(message)
    progress(f"PROBLEM: {message}")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, every column right-aligned to its widest cell."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [line(header), rule, *(line(r) for r in rows)]


def machine_line() -> str:
    """``Machine: N CPUs (model), OS release, Python version``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def finish(work: Callable[[], object], report: Callable[[], str]) -> int:
    """Run the measurements, then print the report, also of a run cut short: a BenchError
    (1) or Ctrl-C / SIGTERM (130) still prints the figures so far, after the context
    managers have stopped the servers and dropped the databases."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        work()
    except BenchError as exc:
        problem(f"FAILED: {exc}")
        print(report())
        return 1
    except KeyboardInterrupt:
        progress("interrupted; cleaned up; the figures so far:")
        print(report())
        return 130
    print(report())
    return 0
