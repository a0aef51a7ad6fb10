"""What the diff hands the apply, besides DESIGN.md's `--diff --json` entry: for an update,
retire or flag, the item's id and the generation ``holdings`` read (the apply writes over
that generation only: tests/sync/test_sync_apply.py). Pure."""

from __future__ import annotations

from typing import Any

import pytest

from sync.diff import NETBOX_DEGRADED, NETBOX_DELETED, Held, diff
from sync.mapping import Mapping
from sync.translate import Snapshot, translate


def _device(netbox_id: int, name: str, role: str = "gpu-server", status: str = "active") -> dict:
    return {
        "id": netbox_id,
        "url": f"http://netbox.example/api/dcim/devices/{netbox_id}/",
        "name": name,
        "role": {"slug": role},
        "device_type": {"manufacturer": {"name": "Supermicro"}, "model": "SYS-821GE"},
        "site": {"id": 7, "slug": "mumbai-1"},
        "status": {"value": status},
        "tags": [],
        "custom_fields": {"cpu_cores": 8, "memory_mb": 8},
    }


def _held(document: dict[str, Any], item_id: str, generation: int, **how: Any) -> Held:
    """The inventory's item of a translated document, as ``holdings`` renders it."""
    stored = {"tenant": None, "project": None, **document, "id": item_id}
    name = stored.get("hostname") or stored["name"]
    return Held(
        "switch" if "name" in stored else "baremetal", name, stored, generation=generation, **how
    )


def test_a_create_is_for_no_item_yet() -> None:
    devices = [_device(1, "gpu-01"), _device(2, "leaf-1", role="ib-switch")]
    changes = diff(translate(Snapshot(devices=devices), Mapping()), [])
    assert sorted(c.kind for c in changes) == ["baremetal", "switch"]
    assert all(c.generation is None and c.item_id is None for c in changes)


@pytest.mark.parametrize(
    ("netbox", "held", "expected"),
    [
        ([_device(1, "gpu-01", status="offline")], False, [("update", None)]),
        ([], False, [("retire", None)]),
        ([], True, [("flag", NETBOX_DELETED)]),
        ([_device(1, "gpu-01", status="failed")], True, [("flag", NETBOX_DEGRADED)]),
    ],
    ids=["update", "retire", "flag deleted", "flag degraded"],
)
def test_an_update_retire_or_flag_carries_the_items_id_and_generation(
    netbox: list[dict], held: bool, expected: list[tuple[str, str | None]]
) -> None:
    synced = translate(Snapshot(devices=[_device(1, "gpu-01")]), Mapping())
    item = _held(synced.devices[(None, "gpu-01")], "i-1", 7, held=held)
    changes = diff(translate(Snapshot(devices=netbox), Mapping()), [item])
    assert [(c.action, c.code) for c in changes] == expected
    assert [(c.item_id, c.generation) for c in changes] == [("i-1", 7)]


def test_a_switch_update_carries_its_generation_too() -> None:
    synced = translate(Snapshot(devices=[_device(2, "leaf-1", role="ib-switch")]), Mapping())
    item = _held(synced.switches[(None, "leaf-1")], "s-1", 3)
    renamed = translate(Snapshot(devices=[_device(2, "leaf-9", role="ib-switch")]), Mapping())
    [update] = diff(renamed, [item])
    assert (update.action, update.fields, update.item_id, update.generation) == (
        "update",
        {"name": ("leaf-1", "leaf-9")},
        "s-1",
        3,
    )
