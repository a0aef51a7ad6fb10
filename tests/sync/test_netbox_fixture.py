"""The NetBox fixture itself: a real NetBox answers, takes GPU servers, and resets to empty."""

from __future__ import annotations

import httpx
import pytest

from tests.netbox.fixture import VERSION, NetBox, netbox_reset, netbox_up

pytestmark = pytest.mark.xdist_group("netbox")


def test_status_answers_with_the_token_only(netbox: NetBox) -> None:
    headers = {"Authorization": f"Bearer {netbox.token}", "Accept": "application/json"}
    response = httpx.get(f"{netbox.url}/api/status/", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["netbox-version"].startswith(VERSION)
    assert status["rq-workers-running"] >= 1  # webhooks are sent by the rqworker

    anonymous = httpx.get(f"{netbox.url}/api/status/", timeout=30)
    assert anonymous.status_code == 403


def test_up_again_finds_the_same_netbox(netbox: NetBox) -> None:
    assert netbox_up() == netbox


def test_a_gpu_server_with_a_gpu_module_round_trips(clean_netbox: NetBox) -> None:
    nb = clean_netbox.api()
    site = nb.dcim.sites.create(name="BLR 1", slug="blr-1", status="active")
    nvidia = nb.dcim.manufacturers.create(name="NVIDIA", slug="nvidia")
    model = nb.dcim.device_types.create(
        manufacturer=nvidia.id, model="DGX H100", slug="dgx-h100", u_height=8
    )
    role = nb.dcim.device_roles.create(name="GPU server", slug="gpu-server", color="76b900")
    server = nb.dcim.devices.create(
        name="server-42", device_type=model.id, role=role.id, site=site.id, status="active",
        serial="SN-42",
    )  # fmt: skip

    profile = nb.dcim.module_type_profiles.get(name="GPU")  # built into NetBox 4.7
    assert profile is not None
    gpu_type = nb.dcim.module_types.create(
        manufacturer=nvidia.id, model="H100 SXM5 80GB", profile=profile.id,
        attributes={"gpu": "H100-SXM5-80GB", "memory": 80},
    )  # fmt: skip
    bay = nb.dcim.module_bays.create(device=server.id, name="GPU0", position="0")
    nb.dcim.modules.create(
        device=server.id, module_bay=bay.id, module_type=gpu_type.id, status="active",
        serial="GPU-SN-0",
    )  # fmt: skip

    read = nb.dcim.devices.get(name="server-42")
    assert read.site.slug == "blr-1"
    assert read.role.slug == "gpu-server"
    assert read.device_type.model == "DGX H100"
    assert (read.status.value, read.serial) == ("active", "SN-42")

    [module] = nb.dcim.modules.filter(device_id=read.id, profile="GPU")
    assert module.module_bay.name == "GPU0"
    assert (module.status.value, module.serial) == ("active", "GPU-SN-0")
    # a module's nested module_type has no attributes: they are read from the module type
    module_type = nb.dcim.module_types.get(module.module_type.id)
    assert dict(module_type)["attributes"] == {"gpu": "H100-SXM5-80GB", "memory": 80}
    assert module_type.profile.name == "GPU"
    by_memory = nb.dcim.module_types.filter(profile="GPU", attr_memory=80)
    assert [t.model for t in by_memory] == ["H100 SXM5 80GB"]


def test_reset_empties_netbox_and_keeps_the_token(clean_netbox: NetBox) -> None:
    nb = clean_netbox.api()
    site = nb.dcim.sites.create(name="FRA 1", slug="fra-1")
    maker = nb.dcim.manufacturers.create(name="Dell", slug="dell")
    model = nb.dcim.device_types.create(manufacturer=maker.id, model="XE9680", slug="xe9680")
    role = nb.dcim.device_roles.create(name="GPU server", slug="gpu-server")
    nb.dcim.devices.create(name="server-43", device_type=model.id, role=role.id, site=site.id)
    assert nb.dcim.devices.count() == 1

    after = netbox_reset()

    assert after == clean_netbox
    nb = after.api()
    assert nb.dcim.devices.get(name="server-43") is None
    assert nb.dcim.devices.count() == 0
    assert nb.dcim.sites.count() == 0
    assert nb.dcim.sites.create(name="FRA 1", slug="fra-1").id == 1  # IDs restart
    assert nb.status()["rq-workers-running"] >= 1
