"""`gpuinv sync` against a real NetBox 4.7 (tests/netbox) and the inventory on SQLite and
PostgreSQL: the default mapping end to end, idempotence, retire and flag, the guards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import allocation as allocation_db
from api.db import release as release_db
from api.db.candidates import LiveIndex
from api.db.models import (
    AllocationDeviceRow,
    AllocationRow,
    DeviceRow,
    InfinibandRow,
    SwitchRow,
    SyncStateRow,
)
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


def _graphql_device(api: Api, hostname: str, fields: str) -> dict[str, Any]:
    query = "query($h: String!) { devices(filter: {hostnamePrefix: $h}) { edges { node { %s } } } }"
    [edge] = api.ok(query % fields, h=hostname)["devices"]["edges"]
    return edge["node"]


def _allocate(db: sessionmaker[Session], environment: str, hostname: str) -> None:
    allocation_db.match_device(
        db.kw["bind"],  # the engine the fixture's sessions use
        cli_principal(),
        LiveIndex(),
        allocation_db.MatchInput(environment, {"host": hostname}, labels=ONE_GPU_SERVER),
    )


def _device(db: sessionmaker[Session], hostname: str) -> DeviceRow:
    with db() as session:
        return session.scalars(select(DeviceRow).where(DeviceRow.hostname == hostname)).one()


def test_a_first_sync_creates_the_fleet_and_a_second_finds_nothing_to_do(
    fleet: Fleet, sync, api: Api
) -> None:
    planned = _diff(sync)
    assert {(c["action"], c["kind"], c["key"]) for c in planned} == {
        ("create", "baremetal", "gpu-001"),
        ("create", "baremetal", "gpu-002"),
        ("create", "switch", "ib-leaf-1"),
        ("create", "vm", "vm-01"),
    }
    assert next(c for c in planned if c["key"] == "gpu-001")["netboxId"] == fleet.ids["gpu-001"]

    assert api.ok("{ syncState { lastSuccessAt } }")["syncState"] is None  # never ran
    assert "create 4" in sync("--apply").stdout
    state = api.ok("{ syncState { lastSuccessAt lagSeconds lastSummary leader lastError } }")
    state = state["syncState"]
    assert state["lastSuccessAt"] and state["lagSeconds"] >= 0 and state["lastError"] is None
    assert state["lastSummary"]["create"] == 4
    assert state["leader"] is None  # a one-off --apply gives the lease back
    assert _diff(sync) == []  # idempotent: in step right after an apply
    assert "in step with NetBox" in sync().stdout

    document = _graphql_device(api, "gpu-001", "document")["document"]
    assert document["gpus"][0] == {
        "index": 0, "vendorCode": "NVIDIA", "modelNo": "H100 SXM5", "memoryMB": 81920,
    }  # fmt: skip
    assert (document["totalgpus"], document["totalcpu"], document["totalmemoryMB"]) == (
        8,
        128,
        2097152,
    )
    assert document["tags"] == {"zone": "west", "location": "india"}
    assert (document["site"], document["rack"], document["status"]) == (
        "mumbai-1",
        "R12",
        "available",
    )
    assert document["infiniband"] == [
        {"name": "ib0", "rateGbps": 400, "switch": "ib-leaf-1", "fabric": "ib-a"}
    ]
    assert document["source"]["system"] == "netbox"
    assert document["source"]["id"] == fleet.ids["gpu-001"]

    everything = api.ok(
        "{ vms { edges { node { document } } }"
        " switches { edges { node { name model role site fabric status tags } } }"
        " infinibands { edges { node { name device port rateGbps fabric switch } } } }"
    )
    [vm] = [e["node"]["document"] for e in everything["vms"]["edges"]]
    assert (vm["hostname"], vm["totalcpu"], vm["totalmemoryMB"], vm["totalstorageGB"]) == (
        "vm-01",
        16,
        65536,
        500,
    )
    assert (vm["cluster"], vm["site"], vm["status"]) == ("kvm-a", "mumbai-1", "available")
    assert vm["tags"] == {"location": "india"}
    [switch] = [e["node"] for e in everything["switches"]["edges"]]
    assert switch == {
        "name": "ib-leaf-1", "model": "QM9700", "role": "ib-switch", "site": "mumbai-1",
        "fabric": "ib-a", "status": "AVAILABLE", "tags": {"location": "india"},
    }  # fmt: skip
    ports = sorted((e["node"] for e in everything["infinibands"]["edges"]), key=str)
    assert ports == [
        {"name": f"gpu-00{n}:ib0", "device": f"gpu-00{n}", "port": "ib0", "rateGbps": 400,
         "fabric": "ib-a", "switch": "ib-leaf-1"}
        for n in (1, 2)
    ]  # fmt: skip


def test_changes_in_netbox_update_and_a_vanished_device_is_retired(
    fleet: Fleet, sync, db: sessionmaker[Session]
) -> None:
    sync("--apply")
    server = fleet.nb.dcim.devices.get(fleet.ids["gpu-001"])
    server.status = "offline"
    server.serial = "SN1-replaced"
    server.save()
    fleet.nb.dcim.devices.get(fleet.ids["gpu-002"]).delete()

    planned = {(c["action"], c["key"]): c for c in _diff(sync)}
    assert planned[("update", "gpu-001")]["fields"] == {
        "serial": ["SN1", "SN1-replaced"],
        "status": ["available", "maintenance"],
    }
    assert planned[("retire", "gpu-002")]["fields"] == {"status": ["available", "retired"]}
    # one of three synced items going is over the 10% guard: refused, nothing written
    refused = sync("--apply", ok=False)
    assert refused.exit_code != 0 and "--allow-mass-retire" in refused.output
    assert _device(db, "gpu-001").status == "available"

    sync("--apply", "--allow-mass-retire")
    assert (_device(db, "gpu-001").status, _device(db, "gpu-001").serial) == (
        "maintenance",
        "SN1-replaced",
    )
    assert _device(db, "gpu-002").status == "retired"
    assert _diff(sync) == []
    with db() as session:
        state = session.get(SyncStateRow, "netbox")
        assert state is not None and state.last_success_at is not None
        assert "--allow-mass-retire" in (state.last_error or "")


def test_an_allocated_device_is_flagged_not_retired_and_changed_after_release(
    fleet: Fleet, sync, db: sessionmaker[Session], api: Api
) -> None:
    sync("--apply")
    _allocate(db, "env-1", "gpu-001")
    fleet.nb.dcim.devices.get(fleet.ids["gpu-001"]).delete()

    [flag] = [c for c in _diff(sync) if c["key"] == "gpu-001"]
    assert (flag["action"], flag["code"]) == ("flag", "NETBOX_DELETED")
    sync("--apply", "--allow-mass-retire")
    device = _device(db, "gpu-001")
    assert device.status == "allocated"  # the allocation is untouched
    assert [entry["code"] for entry in device.attention] == ["NETBOX_DELETED"]
    attention = _graphql_device(api, "gpu-001", "attention")["attention"]
    assert attention[0]["code"] == "NETBOX_DELETED"
    assert _diff(sync) == []  # flagged once, not on every run

    with db() as session, session.begin():
        release_db.release(session, cli_principal(), "env-1")
    assert [(c["action"], c["key"]) for c in _diff(sync)] == [("retire", "gpu-001")]
    sync("--apply", "--allow-mass-retire")
    device = _device(db, "gpu-001")
    assert (device.status, device.attention) == ("retired", None)


def test_a_degraded_allocated_device_keeps_its_status_until_released(
    fleet: Fleet, sync, db: sessionmaker[Session]
) -> None:
    sync("--apply")
    _allocate(db, "env-2", "gpu-002")
    server = fleet.nb.dcim.devices.get(fleet.ids["gpu-002"])
    server.status = "failed"
    server.save()
    sync("--apply")
    device = _device(db, "gpu-002")
    assert device.status == "allocated"
    assert device.attention[0]["code"] == "NETBOX_DEGRADED"
    assert device.attention[0]["netboxStatus"] == "maintenance"
    with db() as session, session.begin():
        release_db.release(session, cli_principal(), "env-2")
    sync("--apply")
    device = _device(db, "gpu-002")
    assert (device.status, device.attention) == ("maintenance", None)


def test_a_mapping_file_syncs_other_roles(
    clean_netbox: NetBox, sync, db: sessionmaker[Session], tmp_path
) -> None:
    nb = clean_netbox.api()
    site = nb.dcim.sites.create(name="Pune", slug="pune")
    maker = nb.dcim.manufacturers.create(name="Dell", slug="dell")
    model = nb.dcim.device_types.create(manufacturer=maker.id, model="XE9680", slug="xe9680")
    role = nb.dcim.device_roles.create(name="Compute", slug="compute")
    nb.dcim.devices.create(name="c-1", device_type=model.id, role=role.id, site=site.id)
    assert _diff(sync) == []  # not a GPU server by the default mapping
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("devices:\n  roles: [compute]\n")
    sync("--apply", "--mapping", str(mapping))
    assert _device(db, "c-1").manufacturer == "Dell"
    mapping.write_text("devices:\n  rolez: [compute]\n")
    refused = sync("--apply", "--mapping", str(mapping), ok=False)
    assert refused.exit_code == 2 and "devices.rolez: unknown key" in refused.output


def test_gpuinv_sync_mapping_names_the_file_when_no_mapping_option_does(
    clean_netbox: NetBox, sync, db: sessionmaker[Session], tmp_path
) -> None:
    """The file the service's webhook reads (GPUINV_SYNC_MAPPING) is the CLI's too, so a
    full sync and a webhook map NetBox the same way."""
    nb = clean_netbox.api()
    site = nb.dcim.sites.create(name="Pune", slug="pune")
    maker = nb.dcim.manufacturers.create(name="Dell", slug="dell")
    model = nb.dcim.device_types.create(manufacturer=maker.id, model="XE9680", slug="xe9680")
    role = nb.dcim.device_roles.create(name="Compute", slug="compute")
    nb.dcim.devices.create(name="c-1", device_type=model.id, role=role.id, site=site.id)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("devices:\n  roles: [compute]\n")
    env = {"GPUINV_SYNC_MAPPING": str(mapping)}
    planned = json.loads(sync("--diff", "--json", env=env).stdout)
    assert [(c["action"], c["key"]) for c in planned] == [("create", "c-1")]
    assert _diff(sync) == []  # without it, the default mapping: not a GPU server
    sync("--apply", env=env)
    assert _device(db, "c-1").manufacturer == "Dell"


def test_an_unreachable_netbox_is_a_clear_error_and_is_recorded(
    sync, db: sessionmaker[Session]
) -> None:
    result = sync("--apply", ok=False, env={"NETBOX_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert "http://127.0.0.1:9" in result.output and "after 4 attempts" in result.output
    with db() as session:
        state = session.get(SyncStateRow, "netbox")
        assert state is not None and "127.0.0.1:9" in state.last_error
        assert session.scalar(select(SwitchRow.id)) is None


def test_messy_netbox_data_is_reported_and_skipped_and_the_rest_synced(
    clean_netbox: NetBox, sync, api: Api
) -> None:
    nb = clean_netbox.api()
    site = nb.dcim.sites.create(name="Pune", slug="pune")
    acme = nb.tenancy.tenants.create(name="Acme AI", slug="acme")
    maker = nb.dcim.manufacturers.create(name="Dell", slug="dell")
    tenstorrent = nb.dcim.manufacturers.create(name="Tenstorrent", slug="tenstorrent")
    model = nb.dcim.device_types.create(manufacturer=maker.id, model="XE9680", slug="xe9680")
    role = nb.dcim.device_roles.create(name="GPU server", slug="gpu-server")
    gpu_role = nb.dcim.inventory_item_roles.create(name="GPU", slug="gpu")
    for name in ("cpu_cores", "memory_mb"):  # text fields: people type anything into them
        nb.extras.custom_fields.create(name=name, type="text", object_types=["dcim.device"])

    def server(name: str | None, cpu: str) -> Any:
        return nb.dcim.devices.create(
            name=name, device_type=model.id, role=role.id, site=site.id, tenant=acme.id,
            custom_fields={"cpu_cores": cpu, "memory_mb": "1048576"},
        )  # fmt: skip

    good, unnamed = server("gpu-100", "96"), server(None, "96")
    server("gpu-102", "lots")
    for n in range(4):
        nb.dcim.inventory_items.create(
            device=good.id, name=f"accel{n}", role=gpu_role.id, manufacturer=tenstorrent.id,
            part_id="Wormhole n300",
        )  # fmt: skip

    result = sync("--apply")
    assert "create 1" in result.stdout
    assert f"NetBox device #{unnamed.id}: has no name" in result.stderr
    assert "gpu-102" in result.stderr and "cpu_cores: 'lots' is not a number" in result.stderr
    assert "gpu-100: unknown GPU vendor 'Tenstorrent'" in result.stderr  # and synced as given
    document = _graphql_device(api, "gpu-100", "document")["document"]
    assert document["tenant"] == "acme"
    assert document["totalcpu"] == 96 and document["totalmemoryMB"] == 1048576
    assert [(g["vendorCode"], g["modelNo"]) for g in document["gpus"]] == [
        ("TENSTORRENT", "Wormhole n300")
    ] * 4
    assert "skipped" not in sync().stdout and _diff(sync) == []


def test_an_empty_answer_from_netbox_does_not_retire_the_fleet(
    fleet: Fleet, sync, db: sessionmaker[Session]
) -> None:
    sync("--apply")
    for device in fleet.nb.dcim.devices.all():
        device.delete()
    for vm in fleet.nb.virtualization.virtual_machines.all():
        vm.delete()
    refused = sync("--apply", ok=False)
    assert "would retire 4 of 4 items" in refused.output
    with db() as session:
        statuses = set(session.scalars(select(DeviceRow.status)))
    assert statuses == {"available"}


def _machine(db: sessionmaker[Session], device_id: str) -> tuple[DeviceRow, list[str]]:
    with db() as session:
        device = session.get(DeviceRow, device_id)
        assert device is not None
        ports = session.scalars(
            select(InfinibandRow.name).where(InfinibandRow.device_id == device_id)
        ).all()
        return device, list(ports)


# A machine renamed in NetBox is the same inventory item renamed: identity is the NetBox
# id. Its id, its InfiniBand ports (named after it) and its allocation stay; nothing is
# retired, flagged or created.


def test_an_allocated_server_renamed_in_netbox_keeps_its_item_ports_and_allocation(
    fleet: Fleet, sync, db: sessionmaker[Session], api: Api
) -> None:
    sync("--apply")
    with db() as session:
        before = session.scalars(select(DeviceRow).where(DeviceRow.hostname == "gpu-001")).one()
    device_id = before.id
    _allocate(db, "env-r", "gpu-001")
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
            select(AllocationDeviceRow).where(AllocationDeviceRow.device_id == device_id)
        ).one()
        allocation = session.get(AllocationRow, held.allocation_id)
        assert allocation is not None and allocation.released_at is None
        assert (allocation.environment, held.hostname, held.active) == ("env-r", "gpu-101", True)
        hostnames = session.scalars(select(DeviceRow.hostname).order_by(DeviceRow.hostname)).all()
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
        release_db.release(session, cli_principal(), "env-r")
    again = allocation_db.match_device(
        db.kw["bind"],
        cli_principal(),
        LiveIndex(),
        allocation_db.MatchInput("env-s", {"host": "gpu-101"}, labels=ONE_GPU_SERVER),
    )
    assert again.allocation is not None
    assert again.device_details["hostname"] == "gpu-101"
