"""The NetBox -> inventory mapping (DESIGN.md "NetBox sync"), on records shaped like NetBox
4.7's REST answers. Pure: the end-to-end tests against a real NetBox are in tests/sync."""

from __future__ import annotations

import pytest

from api.domain.document import parse_device, parse_switch
from api.domain.vocabulary import Kind
from sync.diff import (
    NETBOX_DEGRADED,
    NETBOX_DELETED,
    NETBOX_TENANT_CHANGED,
    Change,
    Held,
    diff,
)
from sync.mapping import Mapping, MappingError, parse_mapping
from sync.parts import ib_rate_gbps, vendor_code
from sync.translate import Desired, Note, Snapshot, translate

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
    document = desired.devices[("acme", "gpu-001")]
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
    assert spec.facts["total_gpus"] == 8 and spec.source.id == 1
    assert desired.switches[(None, "ib-leaf-1")]["fabric"] == "ib-a"
    parse_switch(desired.switches[(None, "ib-leaf-1")])


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
    assert [g["vendorCode"] for g in desired.devices[(None, "gpu-002")]["gpus"]] == [
        "AMD",
        "TENSTORRENT",
    ]
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
    gpus = desired.devices[(None, "gpu-003")]["gpus"]
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
        translate(Snapshot(devices=[server]), Mapping()).devices[(None, "gpu-004")]["status"]
        == inventory
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
    document = translate(Snapshot(sites=SITES, virtual_machines=[vm]), Mapping()).vms[
        (None, "vm-01")
    ]
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
    assert list(translate(Snapshot(devices=devices), mapping).devices) == [(None, "gpu-005")]


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
    document = desired.devices[(None, "gpu-006")]
    assert (document["totalcpu"], document["totalmemoryMB"]) == (128, 16 * 64 * 1024)
    assert document["totalstorageGB"] == 100  # the custom field, when set, wins
    assert not desired.notes


def test_unusable_objects_are_reported_skipped_and_never_retired() -> None:
    good = _device(1, "gpu-010", "gpu-server", custom_fields={"cpu_cores": 8, "memory_mb": 8})
    unnamed = _device(2, None, "gpu-server")
    wordy = _device(3, "gpu-012", "gpu-server", custom_fields={"cpu_cores": "lots"})
    desired = translate(Snapshot(devices=[good, unnamed, wordy]), Mapping())
    assert list(desired.devices) == [(None, "gpu-010")]
    reasons = {note.key: note.message for note in desired.notes if note.kind == "skipped"}
    assert "has no name" in reasons["#2"]
    assert "cpu_cores: 'lots' is not a number" in reasons["gpu-012"]
    assert desired.skipped == {("device", 2), ("device", 3)}
    # gpu-012 synced before, now unusable in NetBox: left as it is, not retired
    synced = Held(
        "baremetal", "gpu-012", {"status": "available", "source": {"system": "netbox", "id": 3}}
    )
    assert [c.action for c in diff(desired, [synced])] == ["create"]  # only gpu-010


# -- namespaces: names are unique per tenant (the platform for items without one) -------


def _server(id_: int, name: str, tenant: str | None = None, site: str = "mumbai-1", **extra):
    return _device(
        id_,
        name,
        "gpu-server",
        tenant={"id": 90, "slug": tenant, "name": tenant} if tenant else None,
        site={"id": 7, "slug": site, "name": site},
        **{"custom_fields": {"cpu_cores": 8, "memory_mb": 8}, **extra},
    )


def _stored(
    desired: Desired,
    key: tuple[str | None, str],
    item_id: str,
    *,
    kind: str = "baremetal",
    held: bool = False,
    attention: tuple[str, ...] = (),
    **changes,
) -> Held:
    """The inventory's item as `holdings` renders it, after a sync wrote ``key``'s document
    (then changed by ``changes``)."""
    documents = {"baremetal": desired.devices, "vm": desired.vms, "switch": desired.switches}
    document = {"tenant": None, "project": None, **documents[kind][key], "id": item_id}
    document.update(changes)
    return Held(kind, document.get("hostname") or document["name"], document, held, attention)


def _actions(changes: list[Change]) -> list[tuple[str, str, int | None, str | None]]:
    return [(c.action, c.key, c.netbox_id, c.item_id) for c in changes]


def test_two_tenants_may_each_have_a_device_of_the_same_name() -> None:
    devices = [_server(1, "gpu-01", "acme"), _server(2, "gpu-01", "beta"), _server(3, "gpu-01")]
    desired = translate(Snapshot(devices=devices), Mapping())
    assert sorted(desired.devices, key=str) == [
        ("acme", "gpu-01"),
        ("beta", "gpu-01"),
        (None, "gpu-01"),
    ]
    assert not desired.skipped and not desired.notes
    changes = diff(desired, [])
    assert [(c.action, c.key, c.netbox_id, c.patch.get("tenant")) for c in changes] == [
        ("create", "gpu-01", 1, "acme"),
        ("create", "gpu-01", 2, "beta"),
        ("create", "gpu-01", 3, None),
    ]


def test_one_tenants_namesakes_in_two_sites_are_both_skipped_and_reported() -> None:
    a = _server(1, "gpu-01", "acme", site="pune")
    b = _server(2, "gpu-01", "acme", site="delhi", custom_fields={"cpu_cores": "lots"})
    platform = [_server(3, "gpu-02", site="pune"), _server(4, "gpu-02", site="delhi")]
    switch = _device(5, "gpu-01", "ib-switch", tenant={"slug": "acme"})  # another kind: fine
    desired = translate(Snapshot(devices=[a, b, *platform, switch]), Mapping())
    assert not desired.devices and list(desired.switches) == [("acme", "gpu-01")]
    # b is unusable anyway; it still shares a's name, so a is not taken for the only one
    assert desired.skipped == {("device", 1), ("device", 2), ("device", 3), ("device", 4)}
    assert desired.clashes == {("baremetal", "acme", "gpu-01"), ("baremetal", None, "gpu-02")}
    messages = [n.message for n in desired.notes if n.kind == "skipped"]
    assert (
        "NetBox device #1: 'gpu-01' (site pune) is also the name of NetBox #2 (site delhi) in "
        "tenant 'acme'; the inventory keeps names unique per tenant" in messages[0]
    )
    assert "NetBox device #2: 'gpu-01' (site delhi) is also the name of NetBox #1" in messages[1]
    assert "in the platform (no tenant)" in messages[2]


def test_a_clash_keeps_the_inventorys_item_of_that_name() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    synced = _stored(before, ("acme", "gpu-01"), "i-1")
    # the same item, had it come from a NetBox object since deleted
    orphan = _stored(before, ("acme", "gpu-01"), "i-1", source={"system": "netbox", "id": 9})
    now = Snapshot(devices=[_server(1, "gpu-01", "acme"), _server(2, "gpu-01", "acme", "delhi")])
    desired = translate(now, Mapping())
    assert diff(desired, [synced]) == []
    assert diff(desired, [orphan]) == []
    assert diff(desired, [], notes := []) == [] and not notes


def test_a_tenant_change_in_netbox_moves_the_same_item() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    synced = _stored(before, ("acme", "gpu-01"), "i-1", project="acme-ml")
    # beta already has a gpu-01 of its own: a name alone does not match across tenants
    betas = _stored(
        before, ("acme", "gpu-01"), "i-2", tenant="beta", source={"system": "netbox", "id": 2}
    )
    now = Snapshot(
        devices=[_server(1, "gpu-01", "beta", site="delhi"), _server(2, "gpu-01", "beta")]
    )
    desired = translate(now, Mapping())
    assert desired.clashes  # both beta gpu-01s in NetBox: neither moves, nothing retired
    assert diff(desired, [synced, betas]) == []

    now = Snapshot(devices=[_server(1, "gpu-01", "beta", site="delhi")])
    [update] = diff(translate(now, Mapping()), [synced])
    assert (update.action, update.key, update.netbox_id, update.item_id) == (
        "update",
        "gpu-01",
        1,
        "i-1",
    )
    assert update.fields == {
        "tenant": ("acme", "beta"),
        "site": ("mumbai-1", "delhi"),
        "project": ("acme-ml", None),  # a project is its tenant's: it stays behind
    }
    assert (update.patch["tenant"], update.patch["project"]) == ("beta", None)
    # the --diff --json entry keeps DESIGN.md's keys, whatever the diff knows besides
    assert set(update.as_json()) == {"action", "kind", "key", "netboxId", "fields"}


def test_a_held_items_tenant_change_is_flagged_and_applied_after_release() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    moved = translate(Snapshot(devices=[_server(1, "gpu-01", "beta", serial="SN2")]), Mapping())
    held = _stored(before, ("acme", "gpu-01"), "i-1", held=True)
    update, flag = diff(moved, [held])
    assert (flag.action, flag.code, flag.item_id) == ("flag", NETBOX_TENANT_CHANGED, "i-1")
    assert flag.fields == {"tenant": ("acme", "beta")}
    assert flag.as_json()["code"] == "NETBOX_TENANT_CHANGED"
    # the other facts are NetBox's and go in; the namespace waits
    assert update.fields == {"serial": (None, "SN2")} and "tenant" not in update.patch

    flagged = _stored(
        before,
        ("acme", "gpu-01"),
        "i-1",
        held=True,
        attention=(NETBOX_TENANT_CHANGED,),
        serial="SN2",
    )
    assert diff(moved, [flagged]) == []  # flagged once, not on every run
    # moved back in NetBox while still held: nothing left to do, the flag goes
    [update] = diff(
        before,
        [_stored(before, ("acme", "gpu-01"), "i-1", held=True, attention=(NETBOX_TENANT_CHANGED,))],
    )
    assert update.fields == {"attention": ([NETBOX_TENANT_CHANGED], None)}

    released = _stored(
        before, ("acme", "gpu-01"), "i-1", attention=(NETBOX_TENANT_CHANGED,), serial="SN2"
    )
    [update] = diff(moved, [released])
    assert update.fields == {
        "tenant": ("acme", "beta"),
        "attention": ([NETBOX_TENANT_CHANGED], None),
    }
    assert update.patch["tenant"] == "beta" and update.item_id == "i-1"


def test_a_held_items_flags_are_resolved_one_by_one() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    moved = translate(Snapshot(devices=[_server(1, "gpu-01", "beta")]), Mapping())
    both = _stored(
        before, ("acme", "gpu-01"), "i-1", held=True, status="allocated",
        attention=(NETBOX_DEGRADED, NETBOX_TENANT_CHANGED),
    )  # fmt: skip
    [update] = diff(moved, [both])  # healthy again in NetBox, still in another tenant
    assert update.fields == {
        "attention": ([NETBOX_DEGRADED, NETBOX_TENANT_CHANGED], [NETBOX_TENANT_CHANGED])
    }


def test_a_manual_item_is_adopted_only_in_its_own_namespace() -> None:
    desired = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    manual = _stored(desired, ("acme", "gpu-01"), "m-1", source={"system": "manual"})
    [adopt] = diff(desired, [manual])
    assert (adopt.action, adopt.item_id) == ("update", "m-1")
    assert adopt.fields["source"] == (
        {"system": "manual"},
        desired.devices[("acme", "gpu-01")]["source"],
    )
    elsewhere = _stored(
        desired, ("acme", "gpu-01"), "m-2", tenant="beta", source={"system": "manual"}
    )
    assert _actions(diff(desired, [elsewhere])) == [("create", "gpu-01", 1, None)]


def test_a_device_recreated_in_netbox_takes_over_its_item() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    synced = _stored(before, ("acme", "gpu-01"), "i-1", held=True, attention=(NETBOX_DELETED,))
    again = translate(Snapshot(devices=[_server(7, "gpu-01", "acme")]), Mapping())
    [update] = diff(again, [synced])
    assert (update.action, update.item_id, update.netbox_id) == ("update", "i-1", 7)
    assert update.fields["attention"] == ([NETBOX_DELETED], None)


def test_a_renamed_device_or_switch_is_the_same_item_updated() -> None:
    """Identity is the NetBox id: a rename is an update that keeps the item (its id, its
    allocation), also for a held device; never a retire and a create."""
    leaf = _device(2, "leaf-1", "ib-switch", tenant={"slug": "acme"})
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme"), leaf]), Mapping())
    items = [
        _stored(before, ("acme", "gpu-01"), "i-1", held=True),
        _stored(before, ("acme", "leaf-1"), "s-1", kind="switch"),
    ]
    renamed = [_server(1, "gpu-09", "acme"), dict(leaf, name="leaf-9")]
    changes = diff(translate(Snapshot(devices=renamed), Mapping()), items)
    assert _actions(changes) == [
        ("update", "gpu-01", 1, "i-1"),  # keyed by the name the inventory has
        ("update", "leaf-1", 2, "s-1"),
    ]
    assert changes[0].fields == {"hostname": ("gpu-01", "gpu-09")}
    assert changes[0].patch is not None and changes[0].patch["hostname"] == "gpu-09"
    assert changes[1].fields == {"name": ("leaf-1", "leaf-9")}
    # the next sync finds nothing to do
    after = [
        _stored(before, ("acme", "gpu-01"), "i-1", held=True, hostname="gpu-09"),
        _stored(before, ("acme", "leaf-1"), "s-1", kind="switch", name="leaf-9"),
    ]
    assert diff(translate(Snapshot(devices=renamed), Mapping()), after) == []


def test_a_rename_onto_a_name_another_item_has_waits_and_is_reported() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    synced = _stored(before, ("acme", "gpu-01"), "i-1")
    manual = _stored(
        before, ("acme", "gpu-01"), "m-1", source={"system": "manual"}, hostname="gpu-02"
    )
    renamed = translate(Snapshot(devices=[_server(1, "gpu-02", "acme")]), Mapping())
    notes: list[Note] = []
    assert diff(renamed, [synced, manual], notes) == []  # the hostname change waits
    assert [n.message for n in notes] == [
        "NetBox #1 renamed it 'gpu-02', where the inventory's baremetal 'gpu-02' is a "
        "manual item (id m-1); it keeps the name 'gpu-01' until that name is free"
    ]


def test_a_move_onto_a_name_another_item_has_waits_and_is_reported() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    synced = _stored(before, ("acme", "gpu-01"), "i-1")
    manual = _stored(before, ("acme", "gpu-01"), "m-1", tenant="beta", source={"system": "manual"})
    moved = translate(Snapshot(devices=[_server(1, "gpu-01", "beta", serial="SN2")]), Mapping())
    notes: list[Note] = []
    [update] = diff(moved, [synced, manual], notes)
    assert update.item_id == "i-1" and update.fields == {"serial": (None, "SN2")}
    assert "tenant" not in update.patch  # else the write would break beta's name
    [note] = notes
    assert note.message == (
        "NetBox #1 moved it to tenant 'beta', where the inventory's baremetal 'gpu-01' is a "
        "manual item (id m-1); it stays in tenant 'acme' until that name is free"
    )


def test_a_new_device_waits_for_a_name_an_unusable_netbox_device_keeps() -> None:
    before = translate(Snapshot(devices=[_server(1, "gpu-01", "acme")]), Mapping())
    kept = _stored(before, ("acme", "gpu-01"), "i-1")
    # NetBox #1 renamed and now unusable; #2 takes its old name
    now = [
        _server(1, "gpu-05", "acme", custom_fields={"cpu_cores": "x"}),
        _server(2, "gpu-01", "acme"),
    ]
    notes: list[Note] = []
    assert diff(translate(Snapshot(devices=now), Mapping()), [kept], notes) == []
    assert notes[-1].message == (
        "NetBox device #2: not synced while the inventory's baremetal 'gpu-01' in tenant "
        "'acme' is NetBox #1's"
    )
