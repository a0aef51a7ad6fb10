"""Capacity views in GraphQL (seed 004): per node (``Device.capacity``), per site, per
tenant and in total (``capacity``). The meaning of the four numbers is in
api/domain/capacity.py and the schema's descriptions."""

from __future__ import annotations

from collections import defaultdict
from typing import NewType

import strawberry
from strawberry.types import Info

from api.db import capacity as capacity_db
from api.db import quota as quota_db
from api.domain import capacity
from api.domain.capacity import Amounts
from api.domain.errors import bad_input
from api.domain.quota import Limit
from api.fleet import LOCAL, fleet_view
from api.graphql.common import AUTH, values_filter
from api.graphql.context import Context
from api.graphql.quota import Quota

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
    def of(cls, amounts: Amounts) -> CapacityAmounts:
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
    quotas: list[Quota] = strawberry.field(
        default_factory=list,
        description="A tenant's row: its quotas and its projects' (usage against limit, "
        "wherever the devices are); empty for other rows.",
    )

    @classmethod
    def of(cls, group: capacity.CapacityGroup, quotas: list[Limit] | None = None) -> CapacityGroup:
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
            quotas=[Quota.of(q) for q in quotas or ()],
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
        found = capacity_db.view(ctx.session, ctx.who(), values_filter("site", site), tenant)
        return Capacity(
            total=CapacityGroup.of(found.total),
            sites=[CapacityGroup.of(g) for g in found.sites],
            tenants=_tenant_rows(ctx, found.tenants, tenant),
        )


def _tenant_rows(
    ctx: Context, groups: list[capacity.CapacityGroup], only: str | None
) -> list[CapacityGroup]:
    """The tenants' rows with their quotas. A tenant that owns no node but holds quotas
    (it uses the shared pool) gets a row of zeros, so its usage against limit shows too."""
    quotas: dict[str, list[Limit]] = defaultdict(list)
    for quota in quota_db.list_quotas(ctx.session, ctx.who(), only, None):
        quotas[quota.tenant].append(quota)
    rows = {group.key: group for group in groups}
    for slug in quotas.keys() - rows.keys():
        rows[slug] = capacity.CapacityGroup(slug)
    ordered = sorted(rows.values(), key=lambda g: (g.key is None, g.key or ""))
    return [CapacityGroup.of(g, quotas.get(g.key or "")) for g in ordered]


def node_capacity(
    status: str, healthy: bool, total: list[int], free: list[int]
) -> ResourceCapacity:
    """One node's capacity (Device.capacity and Vm.capacity)."""
    resources, _ = capacity.node_resources(status, healthy, total, free)
    return ResourceCapacity.of(resources)


@strawberry.type(description="How the fleet view went: who answered, how big it is.")
class FleetSummary:
    providers_queried: int = strawberry.field(description="Sources asked, this one included.")
    providers_answered: int
    providers_failed: int
    nodes: int
    utilization_percent: float = strawberry.field(
        description="GPUs allocated over GPUs allocatable, over the sources that answered."
    )


@strawberry.type(description="One source of the fleet view: its total, or why there is none.")
class FleetSource:
    name: str = strawberry.field(description="'local' for this inventory, else the provider's.")
    url: str | None
    ok: bool
    error: str | None
    latency_ms: float
    total: CapacityGroup | None


@strawberry.type(description="Capacity across this inventory and its providers.")
class FleetCapacity:
    summary: FleetSummary
    total: CapacityGroup
    sources: list[FleetSource]


@strawberry.type
class FleetQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="This inventory's capacity and that of the providers configured in "
        "GPUINV_PROVIDERS, asked at once and added up. A provider that fails or times out "
        "is reported in sources and the summary; the rest are still added up. `providers` "
        "picks sources by name ('local' is this inventory); an unknown name is BAD_INPUT. "
        "Needs a token not bound to a tenant.",
    )
    async def fleet_capacity(
        self,
        info: Info[Context, None],
        providers: list[str] | None = None,
        timeout_seconds: float = 5.0,
    ) -> FleetCapacity:
        ctx = info.context
        who = ctx.who()
        who.require_platform_view("fleetCapacity")
        if not 0 < timeout_seconds <= 60:
            raise bad_input(
                f"timeoutSeconds: between 0 and 60, got {timeout_seconds:g}",
                field="timeoutSeconds",
            )
        configured = {p.name: p for p in ctx.settings.providers}
        wanted = providers if providers is not None else [LOCAL, *configured]
        unknown = [n for n in wanted if n != LOCAL and n not in configured]
        if unknown:
            known = ", ".join([LOCAL, *configured])
            raise bad_input(
                f"providers: unknown {unknown[0]!r} (known: {known})", field="providers"
            )
        local = None
        if LOCAL in wanted:
            local = capacity_db.view(ctx.session, who, None, None).total
        remote = [configured[n] for n in dict.fromkeys(wanted) if n != LOCAL]
        view = await fleet_view(local, remote, timeout_seconds)
        return FleetCapacity(
            summary=FleetSummary(
                providers_queried=len(view.sources),
                providers_answered=view.answered,
                providers_failed=view.failed,
                nodes=view.total.nodes,
                utilization_percent=view.total.utilization_percent,
            ),
            total=CapacityGroup.of(view.total),
            sources=[
                FleetSource(
                    name=s.name,
                    url=s.url,
                    ok=s.error is None,
                    error=s.error,
                    latency_ms=round(s.seconds * 1000, 1),
                    total=CapacityGroup.of(s.group) if s.group is not None else None,
                )
                for s in view.sources
            ],
        )
