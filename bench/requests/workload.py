"""The simulated day: the fleet, the three tenants, and a seeded list of arrivals, the same
for every mode so that the modes (and commits) can be compared request for request.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from api.demo import SHAPES, SITES, TENANTS, server_document
from bench.fleet import SLICE_CPU, SLICE_MEMORY_MB

GPUS_PER_SERVER = 8
# The profiles: capacity filters only, so any server with the room will do; whole nodes
# are baremetal (the server held whole), slices vcluster (GPUs, CPUs, memory of one).
CONFIG = [
    {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
    {"type": "capacity", "keyInVariable": "cpu", "keyInCapacity": "requiredCPU"},
    {"type": "capacity", "keyInVariable": "memoryMB", "keyInCapacity": "requiredMemoryMB"},
]
WHOLE_PROFILE, SLICE_PROFILE = "sim-node", "sim-slice"
PROFILE_TYPES = {WHOLE_PROFILE: "baremetal", SLICE_PROFILE: "vcluster"}

# What an arrival asks for (value, weight); 8 GPUs is a whole server.
SIZES = [(1, 25), (2, 20), (4, 20), (8, 35)]
PRIORITIES = [(0, 80), (5, 15), (10, 5)]
PREEMPTIBLE = {0: 0.4, 5: 0.1, 10: 0.0}  # the chance an arrival of that priority is willing
PEAK_HOURS = [11.0, 15.0, 19.0]  # each tenant's busiest hour of the day, in TENANTS' order
SWING = 0.5  # the daily curve: rate x (1 + SWING cos(2 pi (hour - peak) / 24)); its mean is 1
DURATION_MEDIAN_H, DURATION_SIGMA, DURATION_CAP_H = 2.0, 0.8, 12.0  # log-normal, capped


@dataclass(frozen=True)
class TenantSpec:
    slug: str
    quota_share: float  # its GPU quota, as a share of the fleet's GPUs
    demand_share: float  # its share of the GPU-hours asked over the day
    peak_hour: float

    def quota_gpus(self, fleet_gpus: int) -> int:
        return round(self.quota_share * fleet_gpus)


def tenant_specs(quotas: list[float], demand: list[float]) -> list[TenantSpec]:
    """The demo's three tenants (api/demo.py TENANTS), shares given in percent."""
    total = sum(demand)
    return [
        TenantSpec(slug, quota / 100, asked / total, peak)
        for (slug, _), quota, asked, peak in zip(TENANTS, quotas, demand, PEAK_HOURS, strict=True)
    ]


@dataclass(frozen=True)
class Arrival:
    number: int
    at_hours: float  # simulated hours from the start of the replay
    tenant: str
    gpus: int
    priority: int
    preemptible: bool
    hours: float  # how long it runs once fulfilled

    @property
    def environment(self) -> str:
        return f"{self.tenant}-{self.number:05d}"

    @property
    def profile(self) -> str:
        return WHOLE_PROFILE if self.gpus == GPUS_PER_SERVER else SLICE_PROFILE

    def variables(self) -> dict[str, Any]:
        if self.gpus == GPUS_PER_SERVER:
            return {"gpu": self.gpus}
        g = self.gpus
        return {"gpu": g, "cpu": SLICE_CPU * g, "memoryMB": SLICE_MEMORY_MB * g}


def mean_gpus() -> float:
    return sum(g * w for g, w in SIZES) / sum(w for _, w in SIZES)


def mean_hours() -> float:
    """The mean of the capped log-normal duration: E[min(X, cap)]."""
    mu, sigma, cap = math.log(DURATION_MEDIAN_H), DURATION_SIGMA, DURATION_CAP_H
    phi = NormalDist().cdf
    below = math.exp(mu + sigma**2 / 2) * phi((math.log(cap) - mu - sigma**2) / sigma)
    return below + cap * (1 - phi((math.log(cap) - mu) / sigma))


def curve(hour_of_day: float, peak: float) -> float:
    return 1 + SWING * math.cos(2 * math.pi * (hour_of_day - peak) / 24)


def arrivals(
    tenants: list[TenantSpec], fleet_gpus: int, load: float, start: float, hours: float, seed: int
) -> list[Arrival]:
    """Each tenant's arrivals: a Poisson process whose rate follows the daily curve
    (drawn by thinning), so that over a whole day the GPU-hours asked are ``load`` times
    the fleet's, split by ``demand_share``. Each tenant draws from its own seeded stream,
    in time order: a longer replay begins with the same arrivals as a shorter one."""
    per_request = mean_gpus() * mean_hours()
    drawn: list[tuple[float, str, int, int, bool, float]] = []
    for spec in tenants:
        rng = random.Random(f"{seed}-{spec.slug}")
        base = load * fleet_gpus * spec.demand_share / per_request  # requests an hour
        top = base * (1 + SWING)
        at = 0.0
        while True:
            at += rng.expovariate(top)
            if at >= hours:
                break
            if rng.random() * (1 + SWING) > curve((start + at) % 24, spec.peak_hour):
                continue
            gpus = rng.choices([g for g, _ in SIZES], [w for _, w in SIZES])[0]
            priority = rng.choices([p for p, _ in PRIORITIES], [w for _, w in PRIORITIES])[0]
            preemptible = rng.random() < PREEMPTIBLE[priority]
            length = rng.lognormvariate(math.log(DURATION_MEDIAN_H), DURATION_SIGMA)
            drawn.append((at, spec.slug, gpus, priority, preemptible, min(length, DURATION_CAP_H)))
    drawn.sort()
    return [Arrival(n, *fields) for n, fields in enumerate(drawn, start=1)]


def fleet_documents(servers: int, seed: int) -> list[dict[str, Any]]:
    """``servers`` 8-GPU servers of api/demo.py's shapes (H100, H200, B200, MI300X,
    Gaudi3, in the demo's proportions) on its sites, all available, none a tenant's: the
    shared pool every tenant draws from."""
    rng = random.Random(seed)
    shapes = [s for s in SHAPES if s[5] == GPUS_PER_SERVER]
    documents = []
    for number in range(1, servers + 1):
        shape = rng.choices(shapes, [s[-1] for s in shapes])[0]
        site, region, halls = rng.choice(SITES)
        hostname, serial = f"{site}-sim-{number:04d}", f"SIM{number}"
        documents.append(
            server_document(
                rng, shape, site, region, halls, number, hostname, serial, status="available"
            )
        )
    return documents


def profile_labels(name: str) -> dict[str, str]:
    return {
        "paas.envmgmt.io/inventory": PROFILE_TYPES[name],
        "paas.envmgmt.io/inventory.config": json.dumps(CONFIG),
    }
