"""A database holding a bit of everything, to back up and restore."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token
from tests.support.fleet import fleet, labels, server

MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id } } }"""


def populate(api: Api, db: sessionmaker[Session]) -> None:
    """A bit of everything: tenants and projects, tokens, devices (mixed GPUs, ports),
    switches, VMs, profiles, allocations held and released, audit events."""
    make_tenant(db, "acme", "training")
    make_token(db, "viewer", "acme")
    fleet(
        api,
        server("gpu-1", tenant="acme", project="training", site="mumbai"),
        server("gpu-2", site="pune", infiniband=[{"name": "ib0", "rateGbps": 400}]),
        {
            "hostname": "gpu-3",
            "gpus": [
                {"vendorCode": "NVIDIA", "modelNo": "H100"},
                {"vendorCode": "AMD", "modelNo": "MI300X"},
            ],
        },
    )
    api.ok(
        "mutation($d: String!) { importInventory(data: $d) { created } }",
        d=json.dumps(
            {
                "switches": [{"name": "leaf-1", "role": "leaf", "tags": {"fabric": "a"}}],
                "vms": [{"hostname": "vm-1", "totalcpu": 8, "cluster": "c1"}],
            }
        ),
    )
    api.ok(
        "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { name } }",
        n="h100",
        l=labels(),
    )
    request = {"profile": "h100", "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    api.ok(MATCH, input={"environment": "held", **request})
    api.ok(MATCH, input={"environment": "gone", **request})
    api.ok('mutation { releaseAllocation(environment: "gone") { id } }')
