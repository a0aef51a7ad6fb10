"""sync/netbox.py's one loader: the whole fleet, or one webhook target (a device or a VM)
with what its documents need, both read through the same retries. Against a stand-in for
pynetbox that answers list calls from records and logs them (the real NetBox is in
tests/sync)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import requests

from sync.mapping import Mapping
from sync.netbox import DEVICE, VM, NetBoxUnavailable, Target, load
from sync.translate import translate

Record = dict[str, Any]


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _field(record: Record, name: str) -> Any:
    """What NetBox's list filter of that name compares."""
    if name == "device_id":
        return record["device"]["id"]
    if name == "role":
        return (record.get("role") or {}).get("slug")
    if name == "type":
        return record["type"]["value"]
    return record.get(name)


class Endpoint:
    """One pynetbox endpoint: ``all`` and ``filter`` over records, logged; ``failures``
    connection errors first."""

    def __init__(self, name: str, records: list[Record], log: list[tuple[str, dict]]) -> None:
        self.name, self.records, self.log, self.failures = name, records, log, 0

    def _answer(self, filters: dict[str, Any]) -> list[Record]:
        self.log.append((self.name, filters))
        if self.failures:
            self.failures -= 1
            raise requests.ConnectionError("connection refused")
        return [
            r
            for r in self.records
            if all(_field(r, k) in _values(v) for k, v in filters.items() if v is not None)
        ]

    def all(self) -> list[Record]:
        return self._answer({})

    def filter(self, **filters: Any) -> list[Record]:
        assert filters, "pynetbox refuses a filter without arguments"
        return self._answer(filters)


def _role(slug: str) -> Record:
    return {"slug": slug}


def _device(netbox_id: int, name: str | None, role: str = "gpu-server", site: int = 1) -> Record:
    return {
        "id": netbox_id,
        "name": name,
        "role": _role(role),
        "status": {"value": "active"},
        "site": {"id": site, "slug": f"site-{site}"},
        "custom_fields": {"cpu_cores": 64, "memory_mb": 524288},
        "tags": [{"name": "fabric:ib-a"}] if role == "ib-switch" else [],
    }


def _port(netbox_id: int, device: Record, peer: Record | None) -> Record:
    return {
        "id": netbox_id,
        "name": "ib0",
        "device": {"id": device["id"], "name": device["name"]},
        "type": {"value": "infiniband-ndr-4x", "label": "NDR 4X (400 Gbps)"},
        "link_peers": [{"device": {"id": peer["id"], "name": peer["name"]}}] if peer else [],
    }


def _gpu(netbox_id: int, device: Record, module_type: int) -> Record:
    return {
        "id": netbox_id,
        "device": {"id": device["id"], "name": device["name"]},
        "module_type": {"id": module_type},
        "module_bay": {"name": f"bay{netbox_id}"},
    }


GPU_TYPE = {
    "id": 10,
    "model": "H100",
    "profile": {"name": "GPU"},
    "manufacturer": {"name": "NVIDIA"},
    "attributes": {"memory": 80},
}
OTHER_TYPE = {
    "id": 11,
    "model": "A100",
    "profile": {"name": "GPU"},
    "manufacturer": {"name": "NVIDIA"},
}


class FakeNetBox:
    """A small fleet: gpu-01 cabled to leaf-1, gpu-02 cabled to nothing, a namesake
    gpu-01 in another site, an unnamed server, a storage box, two VMs."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict]] = []
        gpu01, gpu02 = _device(1, "gpu-01"), _device(2, "gpu-02")
        twin, leaf = _device(3, "gpu-01", site=2), _device(4, "leaf-1", role="ib-switch")
        unnamed, storage = _device(5, None), _device(6, "nas-1", role="storage")
        self.devices = [gpu01, gpu02, twin, leaf, unnamed, storage]
        endpoints = {
            "sites": [{"id": 1, "slug": "site-1"}, {"id": 2, "slug": "site-2"}],
            "device_roles": [_role(r) for r in ("gpu-server", "ib-switch", "storage")],
            "devices": self.devices,
            "module_types": [GPU_TYPE, OTHER_TYPE],
            "modules": [_gpu(20, gpu01, 10), _gpu(21, gpu02, 11)],
            "inventory_item_roles": [],
            "inventory_items": [],
            "interfaces": [_port(30, gpu01, leaf), _port(31, gpu02, None)],
            "virtual_machines": [
                {"id": 40, "name": "vm-01", "status": {"value": "active"}, "vcpus": 4},
                {"id": 41, "name": "vm-02", "status": {"value": "active"}, "vcpus": 8},
            ],
        }
        self.endpoints = {name: Endpoint(name, rows, self.log) for name, rows in endpoints.items()}
        dcim = {k: v for k, v in self.endpoints.items() if k != "virtual_machines"}
        self.api = SimpleNamespace(
            base_url="http://netbox.example/api",
            dcim=SimpleNamespace(**dcim),
            virtualization=SimpleNamespace(virtual_machines=self.endpoints["virtual_machines"]),
        )

    def calls(self, endpoint: str) -> list[dict]:
        return [filters for name, filters in self.log if name == endpoint]


def _load(netbox: FakeNetBox, only: Target | None = None, slept: list[float] | None = None):
    return load(netbox.api, Mapping(), sleep=(slept if slept is not None else []).append, only=only)


def test_a_device_target_brings_its_namesakes_parts_and_cabled_switch_only() -> None:
    netbox = FakeNetBox()
    snapshot = _load(netbox, Target(DEVICE, 1))
    assert sorted(d["id"] for d in snapshot.devices) == [1, 3, 4]  # itself, namesake, switch
    assert [m["id"] for m in snapshot.modules] == [20]
    assert [t["id"] for t in snapshot.module_types] == [10]  # only the types its modules use
    assert [i["id"] for i in snapshot.interfaces] == [30]
    assert snapshot.virtual_machines == []
    assert netbox.calls("modules") == [{"device_id": [1, 3]}]
    assert netbox.calls("inventory_items") == []  # NetBox has no "gpu" item role
    # one tenant's gpu-01 in two sites: neither is synced, as in a full sync
    desired = translate(snapshot, Mapping())
    assert list(desired.devices) == [] and ("baremetal", None, "gpu-01") in desired.clashes
    assert list(desired.switches) == [(None, "leaf-1")]


def test_a_device_target_translates_as_in_the_full_load() -> None:
    netbox = FakeNetBox()
    one = translate(_load(netbox, Target(DEVICE, 2)), Mapping())
    everything = translate(_load(netbox), Mapping())
    assert one.devices == {(None, "gpu-02"): everything.devices[(None, "gpu-02")]}
    assert one.devices[(None, "gpu-02")]["gpus"][0]["modelNo"] == "A100"


@pytest.mark.parametrize("netbox_id", [99, 6], ids=["gone", "a role the mapping does not sync"])
def test_a_device_target_not_to_sync_loads_empty_so_the_diff_retires_it(netbox_id: int) -> None:
    netbox = FakeNetBox()
    snapshot = _load(netbox, Target(DEVICE, netbox_id))
    assert (snapshot.devices, snapshot.modules, snapshot.interfaces) == ([], [], [])
    assert [s["id"] for s in snapshot.sites] == [1, 2]


def test_an_unnamed_device_target_has_no_namesakes_to_ask_for() -> None:
    """``filter(name=None)`` would send no filter at all, and list every device."""
    netbox = FakeNetBox()
    snapshot = _load(netbox, Target(DEVICE, 5))
    assert [d["id"] for d in snapshot.devices] == [5]
    assert netbox.calls("devices") == [{"id": 5}]


def test_a_vm_target_brings_the_vms_of_its_name_only() -> None:
    netbox = FakeNetBox()
    snapshot = _load(netbox, Target(VM, 41))
    assert [v["id"] for v in snapshot.virtual_machines] == [41]
    assert snapshot.devices == [] and netbox.calls("devices") == []
    assert _load(FakeNetBox(), Target(VM, 99)).virtual_machines == []


def test_an_unnamed_vm_target_has_no_namesakes_to_ask_for() -> None:
    netbox = FakeNetBox()
    netbox.endpoints["virtual_machines"].records.append({"id": 42, "name": None})
    snapshot = _load(netbox, Target(VM, 42))
    assert [v["id"] for v in snapshot.virtual_machines] == [42]
    assert netbox.calls("virtual_machines") == [{"id": 42}]


def test_the_full_load_reads_every_synced_role_and_vm() -> None:
    snapshot = _load(FakeNetBox())
    assert sorted(d["id"] for d in snapshot.devices) == [1, 2, 3, 4, 5]  # not the storage box
    assert [v["id"] for v in snapshot.virtual_machines] == [40, 41]


@pytest.mark.parametrize("only", [None, Target(DEVICE, 1), Target(VM, 40)], ids=str)
def test_a_connection_error_is_retried_with_backoff_for_a_target_too(
    only: Target | None,
) -> None:
    netbox = FakeNetBox()
    netbox.endpoints["sites"].failures = 2
    slept: list[float] = []
    snapshot = _load(netbox, only, slept)
    assert slept == [1.0, 2.0] and len(snapshot.sites) == 2


def test_a_target_that_never_answers_is_netbox_unavailable_naming_what() -> None:
    netbox = FakeNetBox()
    netbox.endpoints["devices"].failures = 10
    slept: list[float] = []
    with pytest.raises(NetBoxUnavailable) as unavailable:
        _load(netbox, Target(DEVICE, 1), slept)
    assert "http://netbox.example/api" in str(unavailable.value)
    assert "device #1 after 4 attempts" in str(unavailable.value)
    assert slept == [1.0, 2.0, 4.0]


def test_a_request_that_cannot_be_sent_is_not_retried() -> None:
    netbox = FakeNetBox()

    def invalid(**_: Any) -> list[Record]:
        raise requests.exceptions.InvalidURL("Invalid URL 'http://': No host supplied")

    netbox.endpoints["devices"].filter = invalid  # type: ignore[method-assign]
    slept: list[float] = []
    with pytest.raises(NetBoxUnavailable, match="could not list device #1: Invalid URL"):
        _load(netbox, Target(DEVICE, 1), slept)
    assert slept == []
