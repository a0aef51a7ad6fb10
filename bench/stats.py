"""Latency percentiles, one definition for every benchmark: nearest rank.

The p-th percentile of n values is the smallest value with at least p% of them at or below
it: the ceil(p/100 * n)-th in order. No interpolation, so every figure printed is a time
some request actually took. One copy here, so that two benchmarks' p99 mean the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def ranked(ordered: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of values already sorted; nan if none."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``; nan if none."""
    return ranked(sorted(values), p)


@dataclass
class Latency:
    """Milliseconds at the 50th, 95th and 99th percentile, and the maximum, of request
    times given in seconds; ``n`` requests."""

    p50: float
    p95: float
    p99: float
    max: float
    n: int

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ordered = sorted(seconds)
        p50, p95, p99, top = (ranked(ordered, p) * 1000 for p in (50, 95, 99, 100))
        return cls(p50, p95, p99, top, len(ordered))

    def __str__(self) -> str:
        """``p50 / p99 (n=N)``, two decimals under 10 ms; ``-`` if nothing was timed."""
        if not self.n:
            return "-"
        digits = 2 if self.p99 < 10 else 1
        return f"{self.p50:.{digits}f} / {self.p99:.{digits}f} (n={self.n})"

    def p50_p95_p99(self) -> str:
        """``p50 / p95 / p99``, one decimal."""
        return f"{self.p50:.1f} / {self.p95:.1f} / {self.p99:.1f}"
