"""Capacity views in GraphQL (seed 004): per node (``Device.capacity``), per site, per
tenant and in total (``capacity``). The meaning of the four numbers is in
api/domain/capacity.py and the schema's descriptions."""

from __future__ import annotations

from typing import NewType

import strawberry
from strawberry.types import Info

from api.db import capacity as capacity_db
from api.domain import capacity
from api.graphql.common import AUTH
from api.graphql.context import Context

# GraphQL's Int is 32-bit; the memory of a fleet in MB is not. Registered in the
# schema's scalar_map (api/graphql/schema.py).
BigInt = NewType("BigInt", int)
BIG_INT = strawberry.scalar(
    name="BigInt",
    serialize=int,
    parse_value=int,
    description="A whole number that may exceed 32 bits (sent as a JSON number).",
)


@strawberry.type(
    description="capacity: the hardware, over devices not retired. allocatable: the capacity "
    "of devices that can take allocations (AVAILABLE or ALLOCATED, and healthy). allocated: "
    "what active allocations hold. available: what is free on allocatable devices."
)
class CapacityAmounts:
    capacity: BigInt
    allocatable: BigInt
    allocated: BigInt
    available: BigInt

    @classmethod
    def of(cls, amounts: capacity.Amounts) -> CapacityAmounts:
        return cls(
            capacity=BigInt(amounts.capacity),
            allocatable=BigInt(amounts.allocatable),
            allocated=BigInt(amounts.allocated),
            available=BigInt(amounts.available),
        )


@strawberry.type(description="The four amounts for each resource.")
class ResourceCapacity:
    cpu: CapacityAmounts
    memory_mb: CapacityAmounts = strawberry.field(name="memoryMB")
    storage_gb: CapacityAmounts = strawberry.field(name="storageGB")
    gpus: CapacityAmounts

    @classmethod
    def of(cls, resources: capacity.Resources) -> ResourceCapacity:
        return cls(
            cpu=CapacityAmounts.of(resources.cpu),
            memory_mb=CapacityAmounts.of(resources.memory_mb),
            storage_gb=CapacityAmounts.of(resources.storage_gb),
            gpus=CapacityAmounts.of(resources.gpus),
        )


@strawberry.type(description="The GPUs of one vendor and model, and the nodes holding them.")
class GpuModelCapacity:
    vendor: str
    model: str
    nodes: int
    gpus: CapacityAmounts


@strawberry.type(description="Sums over a set of nodes: all of them, a site or a tenant.")
class CapacityGroup:
    key: str | None = strawberry.field(
        description="The site or tenant slug; null for the total, or for nodes with none set."
    )
    nodes: int = strawberry.field(description="Nodes (baremetal devices) not retired.")
    nodes_allocatable: int
    whole_nodes_free: int = strawberry.field(
        description="AVAILABLE nodes with nothing allocated: what whole-node requests can get."
    )
    resources: ResourceCapacity
    gpu_models: list[GpuModelCapacity] = strawberry.field(description="By vendor, then model.")
    utilization_percent: float = strawberry.field(
        description="GPUs allocated over GPUs allocatable, in percent (0 with none allocatable)."
    )

    @classmethod
    def of(cls, group: capacity.CapacityGroup) -> CapacityGroup:
        return cls(
            key=group.key,
            nodes=group.nodes,
            nodes_allocatable=group.nodes_allocatable,
            whole_nodes_free=group.whole_nodes_free,
            resources=ResourceCapacity.of(group.resources),
            gpu_models=[
                GpuModelCapacity(
                    vendor=m.kind.vendor,
                    model=m.kind.model,
                    nodes=m.nodes,
                    gpus=CapacityAmounts.of(m.gpus),
                )
                for m in group.models
            ],
            utilization_percent=group.utilization_percent,
        )


@strawberry.type(description="The fleet's capacity: in total, per site and per tenant.")
class Capacity:
    total: CapacityGroup
    sites: list[CapacityGroup] = strawberry.field(description="By site slug; no site last.")
    tenants: list[CapacityGroup] = strawberry.field(
        description="By tenant slug; unassigned nodes last."
    )


@strawberry.type
class CapacityQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="Capacity of the nodes the caller may see; of some sites or one tenant if "
        "given. An unknown site gives zeros (sites are what devices say); an unknown tenant, "
        "or another tenant's, is NOT_FOUND.",
    )
    def capacity(
        self,
        info: Info[Context, None],
        site: list[str] | None = None,
        tenant: str | None = None,
    ) -> Capacity:
        ctx = info.context
        found = capacity_db.view(ctx.session, ctx.who(), site, tenant)
        return Capacity(
            total=CapacityGroup.of(found.total),
            sites=[CapacityGroup.of(g) for g in found.sites],
            tenants=[CapacityGroup.of(g) for g in found.tenants],
        )


def node_capacity(
    status: str, healthy: bool, total: list[int], free: list[int]
) -> ResourceCapacity:
    """One node's capacity (Device.capacity and Vm.capacity)."""
    resources, _ = capacity.node_resources(status, healthy, total, free)
    return ResourceCapacity.of(resources)
