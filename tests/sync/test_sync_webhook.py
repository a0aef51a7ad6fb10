"""NetBox webhooks end to end: `gpuinv sync --setup-webhook` registers the event rule in
the real NetBox, NetBox's rqworker posts signed events to the real service, and each
change lands in the inventory without a full sync."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import DeviceRow
from tests.netbox.fixture import NetBox
from tests.netbox.sample import Fleet
from tests.support.server import ServerThread
from tests.support.sync import WEBHOOK_SECRET as SECRET
from tests.support.sync import eventually, run_sync

pytestmark = pytest.mark.xdist_group("netbox")


def _cli(netbox: NetBox, database_url: str, *args: str) -> str:
    result = run_sync(netbox, database_url, *args, env={"GPUINV_NETBOX_WEBHOOK_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    return result.stdout


def _device(db: sessionmaker[Session], hostname: str) -> DeviceRow | None:
    with db() as session:
        return session.scalar(select(DeviceRow).where(DeviceRow.hostname == hostname))


def test_changes_in_netbox_arrive_through_the_webhook(
    clean_netbox: NetBox, database_url: str, service: ServerThread, db
) -> None:
    fleet = Fleet.build(clean_netbox.api(), servers=1)
    _cli(clean_netbox, database_url, "--apply")
    out = _cli(clean_netbox, database_url, "--setup-webhook", service.url)
    assert f"{service.url}/hooks/netbox" in out
    _cli(clean_netbox, database_url, "--setup-webhook", service.url)  # idempotent
    assert len(list(clean_netbox.api().extras.event_rules.all())) == 1

    server = fleet.nb.dcim.devices.get(fleet.ids["gpu-001"])
    server.serial = "SN-NEW"
    server.save()
    eventually(lambda: _device(db, "gpu-001").serial == "SN-NEW", "serial updated")

    # a change to a part (one GPU module removed) re-syncs its device
    [module] = list(fleet.nb.dcim.modules.filter(device_id=server.id))[:1]
    module.delete()
    eventually(lambda: _device(db, "gpu-001").total_gpus == 7, "7 GPUs after a module went")

    server.delete()
    eventually(lambda: _device(db, "gpu-001").status == "retired", "retired after delete")


def test_an_unsigned_or_forged_event_changes_nothing(
    clean_netbox: NetBox, database_url: str, service: ServerThread, db
) -> None:
    fleet = Fleet.build(clean_netbox.api(), servers=1)
    _cli(clean_netbox, database_url, "--apply")
    fleet.nb.dcim.devices.get(fleet.ids["gpu-001"]).delete()  # no webhook registered
    body = json.dumps({"object_type": "dcim.device", "data": {"id": fleet.ids["gpu-001"]}})
    url = f"{service.url}/hooks/netbox"
    unsigned = httpx.post(url, content=body, timeout=30)
    forged = httpx.post(url, content=body, headers={"X-Hook-Signature": "00" * 64}, timeout=30)
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert "X-Hook-Signature" in unsigned.json()["error"]
    assert _device(db, "gpu-001").status == "available"

    signature = hmac.new(SECRET.encode(), body.encode(), hashlib.sha512).hexdigest()
    signed = httpx.post(url, content=body, headers={"X-Hook-Signature": signature}, timeout=60)
    assert signed.status_code == 200, signed.text
    assert [c["action"] for c in signed.json()["changes"]] == ["retire"]
    assert _device(db, "gpu-001").status == "retired"

    bad = json.dumps({"object_type": "dcim.site", "data": {"id": 1}}).encode()
    refused = httpx.post(
        url,
        content=bad,
        headers={"X-Hook-Signature": hmac.new(SECRET.encode(), bad, hashlib.sha512).hexdigest()},
        timeout=30,
    )
    assert refused.status_code == 400 and "dcim.site" in refused.json()["error"]
