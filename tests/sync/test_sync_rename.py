"""A machine renamed in NetBox is the same inventory item renamed: identity is the NetBox
id. Its id, its InfiniBand ports (named after it) and its allocation stay; nothing is
retired, flagged or created. Against a real NetBox 4.7 (tests/netbox), both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import allocation as allocation_db
from api.db.candidates import LiveIndex
from api.db.models import Allocation, AllocationDevice, Device, Infiniband
from api.domain.access import cli_principal
from tests.netbox.fixture import NetBox
from tests.netbox.sample import Fleet
from tests.support.api import Api
from tests.support.sync import ONE_GPU_SERVER

pytestmark = pytest.mark.xdist_group("netbox")


@pytest.fixture
def fleet(clean_netbox: NetBox) -> Fleet:
    return Fleet.build(clean_netbox.api())


def _diff(sync) -> list[dict[str, Any]]:
    return json.loads(sync("--diff", "--json").stdout)


def _machine(db: sessionmaker[Session], device_id: str) -> tuple[Device, list[str]]:
    with db() as session:
        device = session.get(Device, device_id)
        assert device is not None
        ports = session.scalars(
            select(Infiniband.name).where(Infiniband.device_id == device_id)
        ).all()
        return device, list(ports)


def test_an_allocated_server_renamed_in_netbox_keeps_its_item_ports_and_allocation(
    fleet: Fleet, sync, db: sessionmaker[Session], api: Api
) -> None:
    sync("--apply")
    with db() as session:
        before = session.scalars(select(Device).where(Device.hostname == "gpu-001")).one()
    device_id = before.id
    allocation_db.match_device(
        db.kw["bind"],
        cli_principal(),
        LiveIndex(),
        allocation_db.MatchInput("env-r", {"host": "gpu-001"}, labels=ONE_GPU_SERVER),
    )
    server = fleet.nb.dcim.devices.get(fleet.ids["gpu-001"])
    server.name = "gpu-101"
    server.save()

    planned = _diff(sync)
    assert [(c["action"], c["key"], c["fields"]) for c in planned] == [
        ("update", "gpu-001", {"hostname": ["gpu-001", "gpu-101"]})
    ]
    sync("--apply")
    device, ports = _machine(db, device_id)
    assert (device.hostname, device.status, device.attention) == ("gpu-101", "allocated", None)
    assert ports == ["gpu-101:ib0"]
    with db() as session:
        held = session.scalars(
            select(AllocationDevice).where(AllocationDevice.device_id == device_id)
        ).one()
        allocation = session.get(Allocation, held.allocation_id)
        assert allocation is not None and allocation.released_at is None
        assert (allocation.environment, held.hostname, held.active) == ("env-r", "gpu-101", True)
        hostnames = session.scalars(select(Device.hostname).order_by(Device.hostname)).all()
    assert "gpu-001" not in hostnames and hostnames.count("gpu-101") == 1
    assert _diff(sync) == []

    # The API shows the same device under its new name, and the allocation holding it.
    query = '{ devices(filter: {hostnamePrefix: "gpu-1"}) { edges { node { id hostname } } } }'
    [edge] = api.ok(query)["devices"]["edges"]
    assert edge["node"] == {"id": device_id, "hostname": "gpu-101"}
    held_by = api.ok('{ allocations(filter: {environment: "env-r"}) { edges { node {'
                     " devices { hostname } } } } }")  # fmt: skip
    assert held_by["allocations"]["edges"][0]["node"]["devices"] == [{"hostname": "gpu-101"}]

    # Released, the renamed server matches under its new name only.
    with db() as session, session.begin():
        allocation_db.release(session, cli_principal(), "env-r")
    again = allocation_db.match_device(
        db.kw["bind"],
        cli_principal(),
        LiveIndex(),
        allocation_db.MatchInput("env-s", {"host": "gpu-101"}, labels=ONE_GPU_SERVER),
    )
    assert again.allocation is not None
    assert again.device_details["hostname"] == "gpu-101"
