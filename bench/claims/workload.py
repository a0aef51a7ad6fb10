"""The claims replayed: the profiles' filters and a seeded list of matchDevice claims, the
same in every run so that runs (and commits) can be compared.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bench.fleet import SLICE_CPU, SLICE_MEMORY_MB
from bench.graphql import body

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
REGIONS = ["india", "us", "germany"]  # api/demo.py SITES' tags.location values
# (gputype tag, GPU vendor, weight): the fleet's own shares (api/demo.py SHAPES).
WHOLE_SKUS = [("H100", "NVIDIA", 90), ("H200", "NVIDIA", 60), ("B200", "NVIDIA", 40)]
WHOLE_SKUS += [("MI300X", "AMD", 50)]
SLICE_SKUS = [*WHOLE_SKUS, ("L40S", "NVIDIA", 30)]

MATCH_MUTATION = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id devices { hostname exclusive gpus } } deviceDetails claimAttempts } }"""


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
