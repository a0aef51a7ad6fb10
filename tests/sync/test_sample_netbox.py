"""The sample NetBox (``python -m tests.netbox.fixture up --sample``) as a newcomer uses it:
``gpuinv sync --diff --json`` and ``--apply`` run as commands against a fresh SQLite
inventory, which then holds the GPU servers, their ports, the switch and the VM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from api.db.models import SwitchRow
from tests.netbox.fixture import NetBox
from tests.netbox.sample import describe, load_sample

pytestmark = pytest.mark.xdist_group("netbox")
GPUINV = Path(sys.executable).with_name("gpuinv")


def _gpuinv(netbox: NetBox, database_url: str, *args: str) -> str:
    env = {**os.environ, **netbox.env(), "GPUINV_DATABASE_URL": database_url}
    result = subprocess.run(
        [str(GPUINV), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_gpuinv_sync_brings_the_sample_fleet_into_a_new_inventory(
    clean_netbox: NetBox, tmp_path: Path
) -> None:
    fleet = load_sample(clean_netbox)
    assert "gpu-001, gpu-002, gpu-003" in describe(fleet)
    database_url = f"sqlite:///{tmp_path / 'sample.db'}"

    planned = json.loads(_gpuinv(clean_netbox, database_url, "sync", "--diff", "--json"))
    assert sorted((c["action"], c["kind"], c["key"]) for c in planned) == [
        ("create", "baremetal", "gpu-001"),
        ("create", "baremetal", "gpu-002"),
        ("create", "baremetal", "gpu-003"),
        ("create", "switch", "ib-leaf-1"),
        ("create", "vm", "vm-01"),
    ]

    assert "create 5" in _gpuinv(clean_netbox, database_url, "sync", "--apply")
    assert "in step with NetBox" in _gpuinv(clean_netbox, database_url, "sync")

    servers: list[dict[str, Any]] = json.loads(
        _gpuinv(clean_netbox, database_url, "devices", "--json")
    )
    assert [s["hostname"] for s in servers] == ["gpu-001", "gpu-002", "gpu-003"]
    for server in servers:
        assert server["totalgpus"] == 8
        assert {(g["vendorCode"], g["modelNo"], g["memoryMB"]) for g in server["gpus"]} == {
            ("NVIDIA", "H100 SXM5", 81920)
        }
        assert (server["totalcpu"], server["totalmemoryMB"]) == (128, 2097152)
        assert server["tags"] == {"zone": "west", "location": "india"}
        assert (server["site"], server["rack"]) == ("mumbai-1", "R12")
        assert server["status"] == "available"
        assert server["infiniband"] == [
            {"name": "ib0", "rateGbps": 400, "switch": "ib-leaf-1", "fabric": "ib-a"}
        ]
        assert server["source"]["id"] == fleet.ids[server["hostname"]]
    assert [s["tenant"] for s in servers] == [None, None, "acme"]

    [vm] = json.loads(_gpuinv(clean_netbox, database_url, "devices", "--vms", "--json"))
    assert (vm["hostname"], vm["cluster"], vm["site"], vm["totalcpu"]) == (
        "vm-01",
        "kvm-a",
        "mumbai-1",
        16,
    )

    engine = create_engine(database_url)
    with Session(engine) as session:
        [switch] = session.scalars(select(SwitchRow)).all()
        assert (switch.name, switch.role, switch.fabric, switch.site) == (
            "ib-leaf-1",
            "ib-switch",
            "ib-a",
            "mumbai-1",
        )
    engine.dispose()
