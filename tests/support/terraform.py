"""What the Terraform tests share: a configuration's header (the provider from the offline
mirror) and a fleet with a saved profile to allocate from."""

from __future__ import annotations

import json

from tests.support.api import Api

IMPORT = "mutation($d: String!) { importInventory(format: JSON, data: $d) { created } }"
PROFILE = "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { name } }"
HEADER = """
terraform {
  required_providers { gpuinv = { source = "gpu-inventory/gpuinv" } }
}
provider "gpuinv" {}
"""
LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}


def terraform_fleet(api: Api, count: int = 2) -> None:
    devices = [
        {"hostname": f"gpu-{n}", "totalcpu": 64,
         "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8}
        for n in range(count)
    ]  # fmt: skip
    api.ok(IMPORT, d=json.dumps({"devices": devices}))
    api.ok(PROFILE, n="h100", l=LABELS)
