"""A fleet to test against: GPU servers imported through the API (``fleet``, ``server``) or
created straight in the database (``h100_servers``), and the labels and the ``matchDevice``
request that find them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.db import inventory
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.vocabulary import Kind
from tests.support.api import Api

MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id environment inventoryType releasedAt expiresAt
               devices { hostname exclusive gpus } }
  deviceDetails claimAttempts
  explanation { steps { filter entered left note } unusedVariables } } }"""
CONFIG = json.dumps(
    [
        {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
        {"type": "match", "keyInVariable": "zone", "keyInDevice": "tags.location"},
        {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        {"type": "capacity", "keyInVariable": "cpu", "keyInCapacity": "requiredCPU"},
        {"type": "capacity", "keyInVariable": "nodes", "keyInCapacity": "requiredNoofNodes"},
    ]
)


def labels(kind: str = "baremetal") -> dict[str, str]:
    return {"paas.envmgmt.io/inventory": kind, "paas.envmgmt.io/inventory.config": CONFIG}


def fleet(api: Api, *devices: dict[str, Any]) -> None:
    api.ok(
        "mutation($d: String!) { importInventory(data: $d) { created } }",
        d=json.dumps({"devices": list(devices)}),
    )


def server(
    hostname: str, gpus: int = 8, vendor: str = "NVIDIA", zone: str = "india", **extra: Any
) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "totalcpu": 128,
        "totalmemoryMB": 1048576,
        "totalstorageGB": 8000,
        "tags": {"location": zone},
        "gpus": [{"vendorCode": vendor, "modelNo": "H100"}] * gpus,
        **extra,
    }


def h100_servers(db: sessionmaker[Session], count: int) -> list[str]:
    """``count`` idle servers gpu-0, gpu-1, … of 8 H100 and 64 CPUs each; their ids."""
    with unit_of_work(db) as session:
        return [
            inventory.create(
                session,
                cli_principal(),
                Kind.BAREMETAL,
                {
                    "hostname": f"gpu-{n}",
                    "totalcpu": 64,
                    "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
                },
            ).id
            for n in range(count)
        ]
