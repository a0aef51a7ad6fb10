"""A small GPU cloud kept in NetBox the usual way, as the sync's default mapping reads it.

The sync tests build it in an empty NetBox (``Fleet.build``), and so does
``python -m tests.netbox.fixture up --sample`` (:func:`load_sample`), so that a newcomer's
``gpuinv sync`` has something real to show. What it holds:

* region ``india``, site ``mumbai-1``, rack ``R12``;
* GPU servers ``gpu-001`` ... (role ``gpu-server``, Supermicro SYS-821GE, tag ``zone:west``),
  each with 8 modules of type ``H100 SXM5`` (NetBox's ``GPU`` profile, 80 GB) and the custom
  fields ``cpu_cores`` 128, ``memory_mb`` 2097152, ``storage_gb`` 30000;
* a leaf switch ``ib-leaf-1`` (role ``ib-switch``, NVIDIA QM9700, tag ``fabric:ib-a``), with
  an NDR InfiniBand port ``p<n>`` cabled to each server's ``ib0``;
* a virtual machine ``vm-01`` in the KVM cluster ``kvm-a`` at that site;
* optionally a tenant, given the last server (``load_sample`` gives ``acme`` ``gpu-003``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pynetbox

    from tests.netbox.fixture import NetBox

SAMPLE_SERVERS, SAMPLE_TENANT = 3, "acme"


@dataclass
class Fleet:
    """The NetBox objects made, by name: ``ids`` holds the servers', the switch's and the VM's."""

    nb: pynetbox.api
    ids: dict[str, int]

    @classmethod
    def build(cls, nb: pynetbox.api, servers: int = 2, tenant: str | None = None) -> Fleet:
        ids: dict[str, int] = {}
        region = nb.dcim.regions.create(name="India", slug="india")
        site = nb.dcim.sites.create(name="Mumbai 1", slug="mumbai-1", region=region.id)
        rack = nb.dcim.racks.create(name="R12", site=site.id)
        nvidia = nb.dcim.manufacturers.create(name="NVIDIA", slug="nvidia")
        smc = nb.dcim.manufacturers.create(name="Supermicro", slug="supermicro")
        chassis = nb.dcim.device_types.create(
            manufacturer=smc.id, model="SYS-821GE", slug="sys-821ge"
        )
        switch_type = nb.dcim.device_types.create(
            manufacturer=nvidia.id, model="QM9700", slug="qm9700"
        )
        gpu_role = nb.dcim.device_roles.create(name="GPU server", slug="gpu-server")
        ib_role = nb.dcim.device_roles.create(name="IB switch", slug="ib-switch")
        nb.dcim.device_roles.create(name="Compute", slug="compute")
        for name in ("cpu_cores", "memory_mb", "storage_gb"):
            nb.extras.custom_fields.create(name=name, type="integer", object_types=["dcim.device"])
        tags = {
            name: nb.extras.tags.create(name=name, slug=name.replace(":", "-")).id
            for name in ("zone:west", "fabric:ib-a")
        }
        owner = nb.tenancy.tenants.create(name=tenant.title(), slug=tenant).id if tenant else None
        profile = nb.dcim.module_type_profiles.get(name="GPU")  # built into NetBox 4.7
        h100 = nb.dcim.module_types.create(
            manufacturer=nvidia.id, model="H100 SXM5", profile=profile.id,
            attributes={"gpu": "H100", "memory": 80},
        )  # fmt: skip
        switch = nb.dcim.devices.create(
            name="ib-leaf-1", device_type=switch_type.id, role=ib_role.id, site=site.id,
            status="active", tags=[tags["fabric:ib-a"]],
        )  # fmt: skip
        ids["ib-leaf-1"] = switch.id
        for n in range(1, servers + 1):
            name = f"gpu-{n:03d}"
            server = nb.dcim.devices.create(
                name=name, device_type=chassis.id, role=gpu_role.id, site=site.id,
                rack=rack.id, status="active", serial=f"SN{n}", tags=[tags["zone:west"]],
                custom_fields={"cpu_cores": 128, "memory_mb": 2097152, "storage_gb": 30000},
                tenant=owner if n == servers else None,
            )  # fmt: skip
            ids[name] = server.id
            for g in range(8):
                bay = nb.dcim.module_bays.create(device=server.id, name=f"GPU{g}")
                nb.dcim.modules.create(device=server.id, module_bay=bay.id, module_type=h100.id)
            port = nb.dcim.interfaces.create(device=server.id, name="ib0", type="infiniband-ndr-4x")
            peer = nb.dcim.interfaces.create(
                device=switch.id, name=f"p{n}", type="infiniband-ndr-4x"
            )
            nb.dcim.cables.create(
                a_terminations=[{"object_type": "dcim.interface", "object_id": port.id}],
                b_terminations=[{"object_type": "dcim.interface", "object_id": peer.id}],
            )
        cluster_type = nb.virtualization.cluster_types.create(name="KVM", slug="kvm")
        cluster = nb.virtualization.clusters.create(
            name="kvm-a", type=cluster_type.id, status="active",
            scope_type="dcim.site", scope_id=site.id,
        )  # fmt: skip
        vm = nb.virtualization.virtual_machines.create(
            name="vm-01", cluster=cluster.id, status="active", vcpus=16, memory=65536,
            disk=500000,
        )  # fmt: skip
        ids["vm-01"] = vm.id
        return cls(nb, ids)


def load_sample(netbox: NetBox) -> Fleet:
    """The sample fleet, in an empty NetBox (``fixture up --sample`` resets it first)."""
    return Fleet.build(netbox.api(), servers=SAMPLE_SERVERS, tenant=SAMPLE_TENANT)


def describe(fleet: Fleet) -> str:
    servers = sorted(name for name in fleet.ids if name.startswith("gpu-"))
    return (
        f"sample loaded: GPU servers {', '.join(servers)} (8 x H100 each; "
        f"{servers[-1]} of tenant {SAMPLE_TENANT}), InfiniBand leaf ib-leaf-1 cabled to each, "
        "VM vm-01 in cluster kvm-a; site mumbai-1 in region india. Then, for example: "
        "GPUINV_DATABASE_URL=sqlite:///sample.db .venv/bin/gpuinv sync --diff"
    )
