"""Namespaces through the sync, against a real NetBox 4.7 and the inventory on SQLite and
PostgreSQL: names are unique per tenant in the inventory, per site and tenant in NetBox
(DESIGN.md "Sharing the fleet" → "Namespaces")."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pynetbox
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import allocation as allocation_db
from api.db import release as release_db
from api.db.candidates import LiveIndex
from api.db.models import DeviceRow, InfinibandRow, TenantRow
from api.domain.access import cli_principal
from tests.netbox.fixture import NetBox
from tests.support.server import ServerThread
from tests.support.sync import ONE_GPU_SERVER
from tests.support.sync import WEBHOOK_SECRET as SECRET

pytestmark = pytest.mark.xdist_group("netbox")


@dataclass
class World:
    """Two tenants' GPU servers in two sites, kept in NetBox the usual way."""

    nb: pynetbox.api
    ids: dict[str, int]  # tenant, site, type and role slugs -> NetBox ids

    @classmethod
    def build(cls, nb: pynetbox.api) -> World:
        ids = {
            "pune": nb.dcim.sites.create(name="Pune", slug="pune").id,
            "delhi": nb.dcim.sites.create(name="Delhi", slug="delhi").id,
            "acme": nb.tenancy.tenants.create(name="Acme AI", slug="acme").id,
            "beta": nb.tenancy.tenants.create(name="Beta Labs", slug="beta").id,
            "gamma": nb.tenancy.tenants.create(name="Gamma", slug="gamma").id,
            "gpu-server": nb.dcim.device_roles.create(name="GPU server", slug="gpu-server").id,
        }
        maker = nb.dcim.manufacturers.create(name="Dell", slug="dell")
        ids["xe9680"] = nb.dcim.device_types.create(
            manufacturer=maker.id, model="XE9680", slug="xe9680"
        ).id
        for name in ("cpu_cores", "memory_mb"):
            nb.extras.custom_fields.create(name=name, type="integer", object_types=["dcim.device"])
        return cls(nb, ids)

    def server(self, name: str, tenant: str, site: str = "pune") -> Any:
        """A GPU server with one InfiniBand port (named after it: ``<name>:ib0``)."""
        device = self.nb.dcim.devices.create(
            name=name, device_type=self.ids["xe9680"], role=self.ids["gpu-server"],
            site=self.ids[site], tenant=self.ids[tenant], status="active",
            custom_fields={"cpu_cores": 96, "memory_mb": 1048576},
        )  # fmt: skip
        self.nb.dcim.interfaces.create(device=device.id, name="ib0", type="infiniband-ndr-4x")
        return device

    def move(self, device: Any, tenant: str) -> None:
        device.tenant = self.ids[tenant]
        device.save()


@pytest.fixture
def world(clean_netbox: NetBox) -> World:
    return World.build(clean_netbox.api())


def _diff(sync) -> list[dict[str, Any]]:
    return json.loads(sync("--diff", "--json").stdout)


def _items(db: sessionmaker[Session], hostname: str) -> dict[str | None, DeviceRow]:
    """The devices of that name, by their tenant's slug."""
    with db() as session:
        query = (
            select(TenantRow.slug, DeviceRow)
            .join(TenantRow, DeviceRow.tenant_id == TenantRow.id, isouter=True)
            .where(DeviceRow.hostname == hostname)
        )
        return {slug: device for slug, device in session.execute(query)}


def _port_tenants(db: sessionmaker[Session], name: str) -> list[str | None]:
    with db() as session:
        query = (
            select(TenantRow.slug)
            .join(InfinibandRow, InfinibandRow.tenant_id == TenantRow.id, isouter=True)
            .where(InfinibandRow.name == name)
        )
        return sorted(session.scalars(query), key=str)


def test_two_tenants_devices_of_one_name_are_synced_each_in_its_tenant(
    world: World, sync, db: sessionmaker[Session]
) -> None:
    a, b = world.server("gpu-01", "acme"), world.server("gpu-01", "beta")
    planned = _diff(sync)
    assert sorted((c["action"], c["key"], c["netboxId"]) for c in planned) == [
        ("create", "gpu-01", a.id),
        ("create", "gpu-01", b.id),
    ]
    assert "create 2" in sync("--apply").stdout
    items = _items(db, "gpu-01")
    assert {slug: item.source_id for slug, item in items.items()} == {"acme": a.id, "beta": b.id}
    assert _port_tenants(db, "gpu-01:ib0") == ["acme", "beta"]  # each port in its tenant
    assert _diff(sync) == []  # in step right after an apply

    a.serial = "SN-A"
    a.save()
    [update] = _diff(sync)  # one tenant's change is that tenant's item only
    assert (update["action"], update["netboxId"], update["fields"]) == (
        "update",
        a.id,
        {"serial": [None, "SN-A"]},
    )
    sync("--apply")
    items = _items(db, "gpu-01")
    assert (items["acme"].serial, items["beta"].serial) == ("SN-A", None)


def test_one_tenants_namesakes_in_two_sites_are_skipped_reported_and_kept(
    world: World, sync, db: sessionmaker[Session]
) -> None:
    first = world.server("gpu-02", "acme", "pune")
    twins = [world.server("gpu-04", "acme", "pune"), world.server("gpu-04", "acme", "delhi")]
    result = sync("--apply")
    assert "create 1" in result.stdout  # gpu-02 only
    for twin, other in (twins, twins[::-1]):
        assert f"NetBox device #{twin.id}: 'gpu-04'" in result.stderr
        assert f"is also the name of NetBox #{other.id}" in result.stderr
    assert _items(db, "gpu-04") == {}
    synced = _items(db, "gpu-02")["acme"]

    second = world.server("gpu-02", "acme", "delhi")
    result = sync("--apply")
    assert "create 0, update 0, retire 0, flag 0, notes 4" in result.stdout
    assert (
        f"note: skipped gpu-02: NetBox device #{first.id}: 'gpu-02' (site pune) is also the "
        f"name of NetBox #{second.id} (site delhi) in tenant 'acme'"
    ) in result.stderr
    assert f"NetBox device #{second.id}: 'gpu-02' (site delhi)" in result.stderr
    kept = _items(db, "gpu-02")["acme"]  # neither retired nor taken over
    assert (kept.id, kept.source_id, kept.status) == (synced.id, first.id, "available")
    assert _diff(sync) == []  # a second run right after an apply: nothing to do

    second.name = "gpu-03"  # told apart in NetBox: both sync again
    second.save()
    planned = _diff(sync)
    assert sorted((c["action"], c["key"], c["netboxId"]) for c in planned) == [
        ("create", "gpu-03", second.id)
    ]


def test_a_tenant_change_in_netbox_moves_a_free_device(
    world: World, sync, db: sessionmaker[Session]
) -> None:
    device = world.server("gpu-05", "acme")
    world.server("gpu-05", "beta")  # a namesake elsewhere is another item
    sync("--apply")
    before = _items(db, "gpu-05")
    world.move(device, "gamma")
    assert _diff(sync) == [
        {
            "action": "update",
            "kind": "baremetal",
            "key": "gpu-05",
            "netboxId": device.id,
            "fields": {"tenant": ["acme", "gamma"]},
        }
    ]
    sync("--apply")
    moved = _items(db, "gpu-05")
    assert {slug: item.id for slug, item in moved.items()} == {
        "gamma": before["acme"].id,  # the same item
        "beta": before["beta"].id,
    }
    assert _port_tenants(db, "gpu-05:ib0") == ["beta", "gamma"]  # its port goes with it
    assert _diff(sync) == []


def test_an_allocated_devices_tenant_change_waits_for_its_release(
    world: World, sync, db: sessionmaker[Session]
) -> None:
    device = world.server("gpu-06", "acme")
    sync("--apply")
    item_id = _items(db, "gpu-06")["acme"].id
    allocation_db.match_device(
        db.kw["bind"],  # the engine the fixture's sessions use
        cli_principal(),
        LiveIndex(),
        allocation_db.MatchInput("env-6", {"host": "gpu-06"}, labels=ONE_GPU_SERVER, tenant="acme"),
    )
    world.move(device, "beta")
    [flag] = _diff(sync)
    assert (flag["action"], flag["code"], flag["fields"]) == (
        "flag",
        "NETBOX_TENANT_CHANGED",
        {"tenant": ["acme", "beta"]},
    )
    sync("--apply")  # the move is held back, so inventory.update is not refused
    held = _items(db, "gpu-06")["acme"]
    assert (held.id, held.status) == (item_id, "allocated")
    assert [(e["code"], e["netboxTenant"]) for e in held.attention] == [
        ("NETBOX_TENANT_CHANGED", "beta")
    ]
    assert _diff(sync) == []  # flagged once, not on every run

    with db() as session, session.begin():
        release_db.release(session, cli_principal(), "env-6", tenant="acme")
    [update] = _diff(sync)
    assert update["fields"] == {
        "tenant": ["acme", "beta"],
        "attention": [["NETBOX_TENANT_CHANGED"], None],
    }
    sync("--apply")
    moved = _items(db, "gpu-06")
    assert list(moved) == ["beta"]
    assert (moved["beta"].id, moved["beta"].attention) == (item_id, None)
    assert _diff(sync) == []


def _post_event(service: ServerThread, object_id: int) -> list[dict[str, Any]]:
    """What NetBox's event rule would post for a device, signed."""
    body = json.dumps({"object_type": "dcim.device", "data": {"id": object_id}}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest()
    answer = httpx.post(
        f"{service.url}/hooks/netbox",
        content=body,
        headers={"X-Hook-Signature": signature},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["changes"]


def test_a_webhook_event_finds_the_devices_item_in_its_own_tenant(
    world: World, sync, db: sessionmaker[Session], service: ServerThread
) -> None:
    a, b = world.server("gpu-07", "acme"), world.server("gpu-07", "beta")
    sync("--apply")
    items = _items(db, "gpu-07")

    b.serial = "SN-B"
    b.save()
    [update] = _post_event(service, b.id)
    assert (update["action"], update["netboxId"]) == ("update", b.id)
    after = _items(db, "gpu-07")
    assert (after["acme"].serial, after["beta"].serial) == (None, "SN-B")

    # acme's namesake in another site: neither is acme's gpu-07 any more, so nothing changes
    twin = world.server("gpu-07", "acme", "delhi")
    assert _post_event(service, twin.id) == []
    assert _post_event(service, a.id) == []
    # the twin joins beta: now beta's name is shared, acme's is a's alone again. The event
    # reads the twin's namesakes from NetBox too, else it would take over beta's item.
    world.move(twin, "beta")
    assert _post_event(service, twin.id) == []
    after = _items(db, "gpu-07")
    assert {slug: (item.id, item.source_id) for slug, item in after.items()} == {
        "acme": (items["acme"].id, a.id),
        "beta": (items["beta"].id, b.id),
    }
