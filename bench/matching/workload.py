"""What the matchmaking benchmark asks for, and of what: the seed's profile, the fleet as
the engine's candidates (part of it in use), and the request variables of every part.

Shared by the four parts so that the engine alone, the HTTP service and the packing
simulation are given the same kinds of requests against the same kind of fleet.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from typing import Any

from api.demo import SHAPES, SITES
from api.domain.matching.index import Candidate, Capacity
from api.domain.matching.profile import CONFIG_LABEL, INVENTORY_LABEL
from api.domain.vocabulary import Kind, Status
from bench.fleet import SHAPE_WEIGHTS, SLICE_CPU, SLICE_MEMORY_MB
from bench.graphql import body

# The seed's ten filters, copied from tests/unit/test_matching_engine.py SEED_CONFIG
# (itself verbatim from seeds/001_43cf31f420583302.txt).
SEED_CONFIG = """[
  {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
  {"type": "match", "keyInVariable": "location", "keyInDevice": "tags"},
  {"type": "match", "keyInVariable": "input2", "keyInDevice": "gpus.modelNo"},
  {"type": "match", "keyInVariable": "input3", "keyInDevice": "model"},
  {"type": "match", "keyInVariable": "zone", "keyInDevice": "tags.location"},
  {"type": "capacity", "keyInVariable": "noofNodes", "keyInCapacity": "requiredNoofNodes"},
  {"type": "capacity", "keyInVariable": "cpu", "keyInCapacity": "requiredCPU"},
  {"type": "capacity", "keyInVariable": "memoryMB", "keyInCapacity": "requiredMemoryMB"},
  {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
  {"type": "capacity", "keyInVariable": "storageGB", "keyInCapacity": "requiredStorageGB"}
]"""
WHOLE_PROFILE, SLICE_PROFILE = "bench-whole", "bench-slice"  # saved profiles (http parts)

MATCH_MUTATION = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id environment devices { hostname exclusive gpus } }
  deviceDetails claimAttempts
  explanation { steps { filter entered left note } } } }"""
RELEASE_MUTATION = (
    "mutation($env: String!) { releaseAllocation(environment: $env) { id releasedAt } }"
)


def labels(inventory_type: str) -> dict[str, str]:
    return {INVENTORY_LABEL: inventory_type, CONFIG_LABEL: SEED_CONFIG}


def as_candidate(document: dict[str, Any], item_id: str) -> Candidate:
    """What api/db/candidates.py makes of a device row, made here from its document."""
    rendered = {"id": item_id, "kind": "baremetal", **document}
    rendered["totalgpus"] = len(document["gpus"])
    total = Capacity(
        document["totalcpu"],
        document["totalmemoryMB"],
        document["totalstorageGB"],
        len(document["gpus"]),
    )
    return Candidate(
        id=item_id,
        kind=Kind.BAREMETAL,
        hostname=document["hostname"],
        status=Status(document["status"]),
        document=rendered,
        total=total,
        free=total,
        site=document["site"],
        fabrics=frozenset(p["fabric"] for p in document["infiniband"]),
        shareable=str(document["tags"].get("shareable", "")).strip().lower() != "false",
    )


def candidates_of(documents: list[dict[str, Any]], seed: int) -> list[Candidate]:
    rng = random.Random(seed)
    return [as_candidate(d, str(uuid.UUID(int=rng.getrandbits(128)))) for d in documents]


def in_use(candidate: Candidate, rng: random.Random) -> Candidate:
    """A fleet at work: of the available devices about 25% held whole, 15% holding slices."""
    if candidate.status != "available":
        return candidate
    roll = rng.random()
    if roll < 0.25:
        document = dict(candidate.document, status="allocated")
        return replace(candidate, status=Status.ALLOCATED, free=Capacity(), document=document)
    if roll < 0.40 and candidate.shareable:
        used = rng.randint(1, candidate.total.gpus - 1)
        t = candidate.total
        free = Capacity(
            t.cpu - SLICE_CPU * used,
            t.memory_mb - SLICE_MEMORY_MB * used,
            t.storage_gb,
            t.gpus - used,
        )
        return replace(candidate, free=free)
    return candidate


# --- requests --------------------------------------------------------------------------


def engine_variables(rng: random.Random, inventory_type: str) -> dict[str, Any]:
    """Variables for the seed's ten filters, drawn around one real shape so most match;
    each match filter's variable is often absent (the filter is then skipped)."""
    shape = rng.choices(SHAPES, SHAPE_WEIGHTS)[0]
    model, vendor, gpu_model, gpus, gputype = shape[1], shape[2], shape[3], shape[5], shape[11]
    region = rng.choice(SITES)[1]
    variables: dict[str, Any] = {}
    if rng.random() < 0.7:
        variables["gputype"] = vendor
    if rng.random() < 0.15:
        variables["location"] = gputype  # "tags": any tag value
    if rng.random() < 0.2:
        variables["input2"] = gpu_model
    if rng.random() < 0.1:
        variables["input3"] = model
    if rng.random() < 0.5:
        variables["zone"] = region
    if inventory_type == "baremetal":
        if rng.random() < 0.8:
            variables["gpu"] = str(gpus)
        if rng.random() < 0.3:
            variables["cpu"] = 64
    elif inventory_type == "vcluster":
        g = rng.choice([1, 2, 4])
        variables |= {"gpu": g, "cpu": SLICE_CPU * g, "memoryMB": SLICE_MEMORY_MB * g}
    else:  # mks
        variables |= {"noofNodes": rng.choice([2, 3, 4]), "gpu": gpus}
    return variables


def whole_node_variables(rng: random.Random) -> dict[str, Any]:
    """A whole 8-GPU node, sometimes of one vendor, sometimes in one region."""
    variables: dict[str, Any] = {"gpu": "8"}
    vendor = rng.choice(["NVIDIA", "NVIDIA", "NVIDIA", "AMD", "INTEL", None])
    if vendor:
        variables["gputype"] = vendor
    zone = rng.choice(["india", "us", "germany", None, None])
    if zone:
        variables["zone"] = zone
    return variables


def slice_variables(rng: random.Random) -> dict[str, Any]:
    g = rng.choice([1, 2, 4])
    return {"gpu": g, "cpu": SLICE_CPU * g, "memoryMB": SLICE_MEMORY_MB * g}


def match_body(environment: str, profile: str, variables: dict[str, Any], dry_run: bool) -> bytes:
    given = {"environment": environment, "profile": profile, "variables": variables}
    return body(MATCH_MUTATION, {"input": given | {"dryRun": dry_run}})


def release_body(environment: str) -> bytes:
    return body(RELEASE_MUTATION, {"env": environment})
