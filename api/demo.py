"""A realistic sample fleet, so that a new user sees a living inventory at once.

Deterministic (seeded): the same fleet every time, so screenshots and docs stay true.
"""

from __future__ import annotations

import json
import random
from typing import Any

TENANTS = [("acme-ai", "Acme AI"), ("nimbus-labs", "Nimbus Labs"), ("orbital-ml", "Orbital ML")]
PROJECTS = {
    "acme-ai": ["llm-training", "inference"],
    "nimbus-labs": ["research"],
    "orbital-ml": ["vision"],
}

# site, region (geography: tags.location), halls
SITES = [
    ("blr-1", "india", ["hall-1", "hall-2"]),
    ("hyd-1", "india", ["hall-a"]),
    ("fra-1", "germany", ["dc-3"]),
    ("iad-1", "us", ["pod-1", "pod-2"]),
    ("sjc-1", "us", ["hall-1"]),
]

# (manufacturer, model, gpu vendor, gpu model, gpu memory MB, gpus, cpu, memory MB,
#  storage GB, ib ports, ib rate Gbps, gputype tag, how many)
SHAPES = [
    (
        "NVIDIA",
        "DGX H100",
        "NVIDIA",
        "H100-SXM5-80GB",
        81920,
        8,
        224,
        2097152,
        30720,
        4,
        400,
        "H100",
        90,
    ),
    (
        "Supermicro",
        "SYS-821GE-TNHR",
        "NVIDIA",
        "H200-SXM5-141GB",
        144384,
        8,
        192,
        2097152,
        30720,
        4,
        400,
        "H200",
        60,
    ),
    (
        "NVIDIA",
        "DGX B200",
        "NVIDIA",
        "B200-SXM-180GB",
        184320,
        8,
        224,
        4194304,
        61440,
        4,
        800,
        "B200",
        40,
    ),
    (
        "Dell",
        "PowerEdge XE9680",
        "AMD",
        "MI300X-OAM-192GB",
        196608,
        8,
        192,
        2097152,
        30720,
        4,
        400,
        "MI300X",
        50,
    ),
    (
        "Supermicro",
        "SYS-822GA-NGR3",
        "INTEL",
        "Gaudi3-HL-325L-128GB",
        131072,
        8,
        192,
        1572864,
        30720,
        0,
        0,
        "Gaudi3",
        30,
    ),
    (
        "Dell",
        "PowerEdge R760xa",
        "NVIDIA",
        "L40S-48GB",
        49152,
        4,
        64,
        524288,
        7680,
        0,
        0,
        "L40S",
        30,
    ),
]
STATUS_WEIGHTS = [("available", 88), ("maintenance", 5), ("reserved", 4), ("offline", 3)]


def _labels(inventory_type: str, *filters: dict[str, Any]) -> dict[str, str]:
    return {
        "paas.envmgmt.io/inventory": inventory_type,
        "paas.envmgmt.io/inventory.config": json.dumps(list(filters), separators=(",", ":")),
    }


# The filters the demo's profiles are made of. A profile's filters read the request's
# variables (seed 001); `"required": true` makes a profile refuse a request that leaves
# its defining variable out, so `h100` never hands out "any GPU server".
_BY_GPU_TYPE = {
    "type": "match",
    "keyInVariable": "gputype",
    "keyInDevice": "tags.gputype",
    "required": True,
}
_BY_ZONE = {"type": "match", "keyInVariable": "zone", "keyInDevice": "tags.location"}
_GPUS = {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}
_NODES = {"type": "capacity", "keyInVariable": "noofNodes", "keyInCapacity": "requiredNoofNodes"}

# The saved profiles that the README, iac/docs and iac/examples use, so that every
# documented example runs against `gpuinv serve --demo` as written. Each is what its name
# says once given the documented variables (`gputype = "H100"`, `zone = "india"`).
PROFILES = {
    # whole servers of one GPU type (the `gputype` tag: H100, H200, B200, MI300X, ...),
    # optionally in some geographies (`zone`: the `location` tag, india, germany or us)
    "h100": _labels("baremetal", _BY_GPU_TYPE, _BY_ZONE, _GPUS),
    # the same, where the zone must be given
    "h100-india": _labels("baremetal", _BY_GPU_TYPE, {**_BY_ZONE, "required": True}, _GPUS),
    # several servers on one site and InfiniBand fabric
    "h100-cluster": _labels("mks", _BY_GPU_TYPE, _BY_ZONE, _NODES, _GPUS),
}


def demo_fleet(seed: int = 42) -> dict[str, list[dict[str, Any]]]:
    """About 300 GPU servers, their InfiniBand ports, leaf switches and some VMs."""
    rng = random.Random(seed)
    devices: list[dict[str, Any]] = []
    switches: list[dict[str, Any]] = []
    for site, _region, _halls in SITES:
        fabric = f"{site}-fabric-a"
        leaves = [f"{site}-ib-leaf-{n}" for n in range(1, 5)]
        switches.extend(
            {
                "name": leaf,
                "manufacturer": "NVIDIA",
                "model": "Quantum-2 QM9700",
                "role": "ib-leaf",
                "site": site,
                "fabric": fabric,
                "managementAddress": f"10.{SITES.index((site, _region, _halls))}.0.{n + 10}",
            }
            for n, leaf in enumerate(leaves)
        )
        switches.append(
            {
                "name": f"{site}-spine-1",
                "manufacturer": "Arista",
                "model": "7800R3",
                "role": "spine",
                "site": site,
                "managementAddress": f"10.{SITES.index((site, _region, _halls))}.0.2",
            }
        )
    serial = 100000
    for shape in SHAPES:
        for _ in range(shape[-1]):
            site, region, halls = rng.choice(SITES)
            serial += 1
            number = sum(1 for d in devices if d["site"] == site) + 1
            tenant = rng.choice([t for t, _ in TENANTS] + [None])
            device = server_document(
                rng, shape, site, region, halls, number, f"{site}-gpu-{number:03d}", f"SN{serial}"
            )
            if tenant:
                device["tenant"] = tenant
            devices.append(device)
    vms = []
    for n in range(1, 41):
        host = rng.choice([d for d in devices if d["tags"]["gputype"] in ("H100", "L40S")])
        gpu = host["gpus"][0]
        vms.append(
            {
                "hostname": f"vm-{host['site']}-{n:03d}",
                "cluster": f"{host['site']}-kvm",
                "host": host["hostname"],
                "status": _status(rng),
                "totalcpu": 32,
                "totalmemoryMB": 262144,
                "totalstorageGB": 1024,
                "gpus": [dict(gpu, index=i) for i in range(rng.choice([1, 2]))],
                "tags": {"gputype": host["tags"]["gputype"], "location": host["tags"]["location"]},
                "site": host["site"],
            }
        )
    return {"switches": switches, "devices": devices, "vms": vms}


def server_document(
    rng: random.Random,
    shape: tuple[Any, ...],
    site: str,
    region: str,
    halls: list[str],
    number: int,
    hostname: str,
    serial: str,
    fabric: str | None = None,
    leaf_prefix: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """One GPU server of a SHAPES row, as an import document (the demo's and the
    benchmarks' fleets are made of these). Its InfiniBand ports are spread over the
    four leaf switches ``<leaf_prefix>-1..4`` of its ``fabric`` (default: the site's
    fabric a and its leaves ``<site>-ib-leaf-N``)."""
    maker, model, vendor, gpu_model, gpu_mem, gpus, cpu, mem, storage = shape[:9]
    ib_ports, ib_rate, gputype = shape[9:12]
    fabric = fabric or f"{site}-fabric-a"
    leaf_prefix = leaf_prefix or f"{site}-ib-leaf"
    return {
        "hostname": hostname,
        "manufacturer": maker,
        "model": model,
        "serial": serial,
        "status": status or _status(rng),
        "totalcpu": cpu,
        "totalmemoryMB": mem,
        "totalstorageGB": storage,
        "gpus": [
            {"index": i, "vendorCode": vendor, "modelNo": gpu_model, "memoryMB": gpu_mem}
            for i in range(gpus)
        ],
        "tags": {
            "gputype": gputype,
            "location": region,
            "tier": "training" if gpus == 8 else "inference",
        },
        "site": site,
        "location": rng.choice(halls),
        "rack": f"r{rng.randint(1, 24):02d}",
        "infiniband": [
            {
                "name": f"ib{p}",
                "rateGbps": ib_rate,
                "fabric": fabric,
                "switch": f"{leaf_prefix}-{(number + p) % 4 + 1}",
            }
            for p in range(ib_ports)
        ],
    }


def _status(rng: random.Random) -> str:
    names, weights = zip(*STATUS_WEIGHTS, strict=True)
    status: str = rng.choices(names, weights)[0]
    return status
