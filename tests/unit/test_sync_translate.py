"""The NetBox -> inventory mapping (DESIGN.md "NetBox sync"), on records shaped like NetBox
4.7's REST answers. Pure: the end-to-end tests against a real NetBox are in tests/sync."""

from __future__ import annotations

import pytest

from api.domain.document import parse_device, parse_switch
from api.domain.vocabulary import Kind
from sync.mapping import Mapping, MappingError, parse_mapping
from sync.translate import Snapshot, ib_rate_gbps, translate, vendor_code

URL = "http://netbox.example/api"


def _device(id_: int, name: str, role: str, **extra) -> dict:
    return {
        "id": id_,
        "url": f"{URL}/dcim/devices/{id_}/",
        "name": name,
        "role": {"id": 1, "slug": role, "name": role},
        "device_type": {"id": 3, "manufacturer": {"name": "Supermicro"}, "model": "SYS-821GE"},
        "site": {"id": 7, "slug": "mumbai-1", "name": "Mumbai 1"},
        "status": {"value": "active", "label": "Active"},
        "tags": [],
        "custom_fields": {},
        **extra,
    }


def _gpu_module(id_: int, device: dict, bay: str, module_type: int) -> dict:
    return {
        "id": id_,
        "device": {"id": device["id"], "name": device["name"]},
        "module_bay": {"name": bay},
        "module_type": {"id": module_type},
    }


H100 = {
    "id": 11,
    "manufacturer": {"name": "NVIDIA"},
    "model": "H100 SXM5",
    "profile": {"id": 3, "name": "GPU"},
    "attributes": {"gpu": "H100", "memory": 80},
}
MI300X = {
    "id": 12,
    "manufacturer": {"name": "Advanced Micro Devices"},
    "model": "MI300X",
    "profile": {"id": 3, "name": "GPU"},
    "attributes": {"memory": 192},
}
SITES = [{"id": 7, "slug": "mumbai-1", "region": {"id": 2, "slug": "india"}}]


def test_a_gpu_server_becomes_a_valid_device_document() -> None:
    server = _device(
        1,
        "gpu-001",
        "gpu-server",
        serial="SN1",
        rack={"name": "R12"},
        location={"slug": "hall-a"},
        tenant={"slug": "acme"},
        tags=[{"name": "zone:west"}, {"name": "plain-tag"}],
        custom_fields={"cpu_cores": 128, "memory_mb": "2097152", "storage_gb": 30000},
    )
    switch = _device(2, "ib-leaf-1", "ib-switch", tags=[{"name": "fabric:ib-a"}])
    port = {
        "id": 31,
        "device": {"id": 1, "name": "gpu-001"},
        "name": "ib0",
        "type": {"value": "infiniband-ndr-4x", "label": "NDR 4X (400 Gbps)"},
        "speed": None,
        "link_peers": [{"id": 40, "device": {"id": 2, "name": "ib-leaf-1"}, "name": "p1"}],
    }
    snapshot = Snapshot(
        devices=[server, switch],
        sites=SITES,
        module_types=[H100],
        modules=[_gpu_module(n, server, f"GPU{n}", 11) for n in range(8)],
        interfaces=[port],
    )
    desired = translate(snapshot, Mapping())
    document = desired.devices["gpu-001"]
    assert document["gpus"][0] == {
        "index": 0,
        "vendorCode": "NVIDIA",
        "modelNo": "H100 SXM5",
        "memoryMB": 81920,
    }
    assert (document["totalgpus"], document["totalcpu"], document["totalmemoryMB"]) == (
        8,
        128,
        2097152,
    )
    assert document["tags"] == {"zone": "west", "location": "india"}
    assert (document["site"], document["location"], document["rack"]) == (
        "mumbai-1",
        "hall-a",
        "R12",
    )
    assert document["tenant"] == "acme" and document["status"] == "available"
    assert document["infiniband"] == [
        {"name": "ib0", "rateGbps": 400, "switch": "ib-leaf-1", "fabric": "ib-a"}
    ]
    assert document["source"] == {"system": "netbox", "id": 1, "url": f"{URL}/dcim/devices/1/"}
    spec = parse_device(document)  # the inventory's own validator accepts it as it is
    assert spec.total_gpus == 8 and spec.source.id == 1
    assert desired.switches["ib-leaf-1"]["fabric"] == "ib-a"
    parse_switch(desired.switches["ib-leaf-1"])


def test_vendors_are_normalised_and_an_unknown_one_is_reported() -> None:
    assert vendor_code("Advanced Micro Devices, Inc.") == ("AMD", True)
    assert vendor_code("Habana Labs") == ("INTEL", True)
    assert vendor_code("nvidia") == ("NVIDIA", True)
    server = _device(1, "gpu-002", "gpu-server", custom_fields={"cpu_cores": 8, "memory_mb": 8})
    odd = dict(MI300X, id=13, manufacturer={"name": "Tenstorrent"})
    desired = translate(
        Snapshot(
            devices=[server],
            module_types=[MI300X, odd],
            modules=[_gpu_module(1, server, "GPU0", 12), _gpu_module(2, server, "GPU1", 13)],
        ),
        Mapping(),
    )
    assert [g["vendorCode"] for g in desired.devices["gpu-002"]["gpus"]] == ["AMD", "TENSTORRENT"]
    assert any("Tenstorrent" in note.message for note in desired.notes)


def test_inventory_items_with_role_gpu_are_the_fallback() -> None:
    server = _device(1, "gpu-003", "gpu-server")
    items = [
        {
            "id": n,
            "device": {"id": 1},
            "name": f"gpu{n}",
            "role": {"slug": "gpu"},
            "manufacturer": {"name": "NVIDIA"},
            "part_id": "L40S",
        }
        for n in range(4)
    ]
    desired = translate(Snapshot(devices=[server], inventory_items=items), Mapping())
    gpus = desired.devices["gpu-003"]["gpus"]
    assert [(g["vendorCode"], g["modelNo"]) for g in gpus] == [("NVIDIA", "L40S")] * 4
    assert any("no CPU amount" in note.message for note in desired.notes)


@pytest.mark.parametrize(
    ("netbox", "inventory"),
    [
        ("active", "available"),
        ("offline", "maintenance"),
        ("failed", "maintenance"),
        ("planned", "offline"),
        ("staged", "offline"),
        ("inventory", "offline"),
        ("decommissioning", "retired"),
    ],
)
def test_statuses_map_as_designed(netbox: str, inventory: str) -> None:
    server = _device(1, "gpu-004", "gpu-server", status={"value": netbox})
    assert (
        translate(Snapshot(devices=[server]), Mapping()).devices["gpu-004"]["status"] == inventory
    )


def test_a_virtual_machine_becomes_a_vm_document() -> None:
    vm = {
        "id": 5,
        "url": f"{URL}/virtualization/virtual-machines/5/",
        "name": "vm-01",
        "status": {"value": "active"},
        "site": {"id": 7, "slug": "mumbai-1"},
        "cluster": {"name": "kvm-a"},
        "device": {"name": "gpu-001"},
        "vcpus": 16.0,
        "memory": 65536,
        "disk": 500000,
        "tags": [],
    }
    document = translate(Snapshot(sites=SITES, virtual_machines=[vm]), Mapping()).vms["vm-01"]
    assert (document["totalcpu"], document["totalmemoryMB"], document["totalstorageGB"]) == (
        16,
        65536,
        500,
    )
    assert (document["cluster"], document["host"]) == ("kvm-a", "gpu-001")
    parse_device(document, Kind.VM)


def test_other_roles_are_not_synced_and_roles_can_be_remapped() -> None:
    devices = [_device(1, "gpu-005", "compute"), _device(2, "pdu-1", "pdu")]
    assert not translate(Snapshot(devices=devices), Mapping()).devices
    mapping = parse_mapping("devices: {roles: [compute]}\ncustom_fields: {cpu: cores}\n")
    assert mapping.device_roles == ("compute",) and mapping.cpu_field == "cores"
    assert mapping.switch_roles == Mapping().switch_roles  # untouched keys keep defaults
    assert list(translate(Snapshot(devices=devices), mapping).devices) == ["gpu-005"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("device: {roles: [x]}", "unknown section 'device'"),
        ("devices: {role: [x]}", "devices.role: unknown key"),
        ("devices: {roles: []}", "devices.roles: must be a non-empty list"),
        ("custom_fields: {cpu: 5}", "custom_fields.cpu: must be a custom field name"),
        ("devices: {roles: [leaf]}", "leaf are listed for both"),
        ("devices: [", "not valid YAML"),
    ],
)
def test_a_bad_mapping_file_names_the_key(text: str, named: str) -> None:
    with pytest.raises(MappingError, match=named.replace("[", r"\[")):
        parse_mapping(text)


def test_infiniband_rates() -> None:
    assert ib_rate_gbps({"speed": 400_000_000}) == 400
    assert ib_rate_gbps({"type": {"value": "infiniband-hdr", "label": "HDR (50 Gbps)"}}) == 50
    assert ib_rate_gbps({"type": {"value": "infiniband-ndr", "label": "NDR (100 Gbps)"}}) == 100
    assert ib_rate_gbps({"type": {"value": "infiniband-fdr", "label": "FDR (13.5 Gbps)"}}) == 14
    assert ib_rate_gbps({"type": {"value": "other", "label": "Other"}}) is None


def test_cpu_memory_and_disk_fall_back_to_native_module_profiles() -> None:
    server = _device(1, "gpu-006", "gpu-server", custom_fields={"storage_gb": 100})
    types = [
        {"id": 21, "profile": {"name": "CPU"}, "attributes": {"cores": 64}},
        {"id": 22, "profile": {"name": "Memory"}, "attributes": {"class": "DDR5", "size": 64}},
        {"id": 23, "profile": {"name": "Hard disk"}, "attributes": {"size": 3840}},
    ]
    modules = [
        _gpu_module(1, server, "CPU0", 21),
        _gpu_module(2, server, "CPU1", 21),
        *(_gpu_module(10 + n, server, f"DIMM{n}", 22) for n in range(16)),
        _gpu_module(40, server, "NVME0", 23),
    ]
    desired = translate(Snapshot(devices=[server], module_types=types, modules=modules), Mapping())
    document = desired.devices["gpu-006"]
    assert (document["totalcpu"], document["totalmemoryMB"]) == (128, 16 * 64 * 1024)
    assert document["totalstorageGB"] == 100  # the custom field, when set, wins
    assert not desired.notes


def test_unusable_objects_are_reported_skipped_and_never_retired() -> None:
    from sync.diff import Held, diff

    good = _device(1, "gpu-010", "gpu-server", custom_fields={"cpu_cores": 8, "memory_mb": 8})
    unnamed = _device(2, None, "gpu-server")
    wordy = _device(3, "gpu-012", "gpu-server", custom_fields={"cpu_cores": "lots"})
    twin = _device(4, "gpu-010", "gpu-server")
    desired = translate(Snapshot(devices=[good, unnamed, wordy, twin]), Mapping())
    assert list(desired.devices) == ["gpu-010"]
    reasons = {note.key: note.message for note in desired.notes if note.kind == "skipped"}
    assert "has no name" in reasons["#2"]
    assert "cpu_cores: 'lots' is not a number" in reasons["gpu-012"]
    assert "also NetBox #1's" in next(m for m in reasons.values() if "#4" in m)
    assert desired.skipped == {("device", 2), ("device", 3), ("device", 4)}
    # gpu-012 synced before, now unusable in NetBox: left as it is, not retired
    synced = Held(
        "baremetal", "gpu-012", {"status": "available", "source": {"system": "netbox", "id": 3}}
    )
    assert [c.action for c in diff(desired, [synced])] == ["create"]  # only gpu-010
