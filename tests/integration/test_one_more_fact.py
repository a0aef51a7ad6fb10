"""A machine fact is declared once: one entry in api/domain/fields.py's table (and its
column) is enough for it to go in through a JSON import, a CSV import, createDevice and
updateDevice, and come out of GraphQL (its own field and the document), the match index
and device_details. tests/support/one_more_fact.py adds a rack row that way, and a port
GUID to InfiniBand ports, in a process of its own, on a fresh database of each backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.database import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_fact_added_to_the_table_alone_goes_through_every_layer(
    backend: str, tmp_path: Path
) -> None:
    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'one-more-fact.db'}"
    else:
        url, drop = fresh_postgres_database("onefact")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.support.one_more_fact", url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        if drop is not None:
            drop()
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert seen["devices"] == [  # JSON import, CSV import, createDevice
        {"hostname": "gpu-1", "rackRow": "row-7", "document": "row-7"},
        {"hostname": "gpu-2", "rackRow": "row-8", "document": "row-8"},
        {"hostname": "gpu-3", "rackRow": "row-9", "document": "row-9"},
    ]
    assert seen["createDevice"] == {"hostname": "gpu-3", "rackRow": "row-9"}
    assert seen["updateDevice"] == {"rackRow": "row-1"}
    assert seen["deviceDetails"] == "row-1"  # the index caught up with the update
    assert seen["vmInput"] is True
    # The port fact: in a machine's document (JSON import, createDevice), as a port of its
    # own (CSV import, createInfiniband, updateInfiniband), and in device_details.
    assert seen["listedPorts"] == {
        "gpu-1": [{"name": "ib0", "portGuid": "0xa0"}],
        "gpu-2": [{"name": "ib1", "portGuid": "0xb1"}, {"name": "ib2", "portGuid": "0xb3"}],
        "gpu-3": [{"name": "ib0", "portGuid": "0xc0"}],
    }
    assert seen["infinibands"] == [
        ["gpu-1:ib0", "0xa0", "0xa0"],
        ["gpu-2:ib1", "0xb1", "0xb1"],
        ["gpu-2:ib2", "0xb3", "0xb3"],
        ["gpu-3:ib0", "0xc0", "0xc0"],
    ]
    assert seen["createInfiniband"] == "0xb2"
    assert seen["updateInfiniband"] == "0xb3"
    assert seen["deviceDetailsPorts"] == ["0xa0"]
