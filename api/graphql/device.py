"""Devices and VMs in GraphQL: types, filters, the list queries and the mutations."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import device as device_db
from api.db import infiniband as infiniband_db
from api.db import inventory
from api.db.models import DeviceRow
from api.domain.fields import HARDWARE, PLACEMENT, PORT_FACTS, VM_PLACEMENT
from api.domain.vocabulary import Kind as DomainKind
from api.graphql.capacity import ResourceCapacity, node_capacity
from api.graphql.common import (
    AUTH,
    DOCUMENT_NAMES,
    Connection,
    DeviceKind,
    Item,
    OrderDirection,
    Status,
    TagInput,
    connection,
    input_document,
    item_fields,
    page_size,
    statuses,
    tags_filter,
    text_filter,
    values_filter,
)
from api.graphql.context import Context
from api.graphql.device_input import (
    DeviceInput,
    DevicePatch,
    VmInput,
    VmPatch,
    vm_document,
)
from api.graphql.facts import fact_values, output_facts
from api.graphql.health import HealthCondition


@strawberry.type(description="One physical GPU.")
class Gpu:
    index: int
    vendor_code: str
    model_no: str
    memory_mb: int | None = strawberry.field(name="memoryMB")


class IbPort:
    """A port as its machine's document lists it: its name, then PORT_FACTS."""

    name: str


output_facts(IbPort, PORT_FACTS)
IbPort = strawberry.type(  # type: ignore[misc]  # fields added before decorating
    description="An InfiniBand port as listed on its device."
)(IbPort)


class Machine(Item):
    """The device document shape, shared by devices and VMs: its facts are
    api/domain/fields.py's (added below, after ``kind``)."""

    kind: DeviceKind

    @strawberry.field
    async def gpus(self, info: Info[Context, None]) -> list[Gpu]:
        found = await info.context.loader("gpus").load(self._row.id)
        return [
            Gpu(
                index=g.index, vendor_code=g.vendor_code, model_no=g.model_no, memory_mb=g.memory_mb
            )
            for g in found
        ]

    @strawberry.field
    async def infiniband(self, info: Info[Context, None]) -> list[IbPort]:
        ports = await info.context.loader("ports").load(self._row.id)
        return [
            IbPort(name=p.port, **fact_values(p, PORT_FACTS))  # type: ignore[call-arg]
            for p in ports
        ]

    @strawberry.field(description="No health condition on it, its GPUs or its ports.")
    def healthy(self) -> bool:
        return not self._row.health

    @strawberry.field(description="Health conditions (reportHealth), oldest first.")
    def health(self) -> list[HealthCondition]:
        return [HealthCondition.of(entry) for entry in self._row.health or []]

    @strawberry.field(
        description="This node's capacity, allocatable, allocated and available amounts."
    )
    def capacity(self) -> ResourceCapacity:
        row = self._row
        return node_capacity(
            row.status,
            not row.health,
            [row.total_cpu, row.total_memory_mb, row.total_storage_gb, row.total_gpus],
            [row.free_cpu, row.free_memory_mb, row.free_storage_gb, row.free_gpus],
        )

    @strawberry.field(
        description="The device document: the import format and the shape of device_details."
    )
    async def document(self, info: Info[Context, None]) -> JSON:
        gpus = await info.context.loader("gpus").load(self._row.id)
        ports = await info.context.loader("ports").load(self._row.id)
        return JSON(
            device_db.render(
                self._row,
                gpus,
                [infiniband_db.port_entry(p) for p in ports],
                info.context.directory,
            )
        )


# The classes below get their fields from the facts table before strawberry decorates them,
# so the decorator is called after the class statement: mypy, which wants decorators in
# class syntax, refuses the rebinding (misc) and sees no fact fields in __init__ (call-arg).
output_facts(Machine, HARDWARE, free=True)
output_facts(Machine, PLACEMENT)
Machine = strawberry.interface(  # type: ignore[misc]
    description="The device document shape, shared by devices and VMs."
)(Machine)


def _machine_fields(row: DeviceRow) -> dict[str, Any]:
    return (
        item_fields(row)
        | {"kind": DeviceKind(row.kind)}
        | fact_values(row, HARDWARE, free=True)
        | fact_values(row, PLACEMENT)
    )


@strawberry.type(description="A physical server (mostly GPU servers).")
class Device(Machine):
    hostname: str

    @classmethod
    def from_row(cls, row: DeviceRow) -> Device:
        return cls(hostname=row.hostname, **_machine_fields(row))


class Vm(Machine):
    name: str

    @classmethod
    def from_row(cls, row: DeviceRow) -> Vm:
        # Decorated below, after its facts: mypy knows no dataclass __init__ (see Machine).
        return cls(  # type: ignore[call-arg]
            name=row.hostname, **_machine_fields(row), **fact_values(row, VM_PLACEMENT)
        )


output_facts(Vm, VM_PLACEMENT)
Vm = strawberry.type(  # type: ignore[misc]  # decorated after its facts (see Machine)
    description="A virtual machine: the device document plus cluster and host."
)(Vm)


def wrap_machine(row: DeviceRow) -> Device | Vm:
    return Vm.from_row(row) if row.kind == DomainKind.VM else Device.from_row(row)


@strawberry.input(description="Devices and VMs are filtered alike; all conditions must hold.")
class MachineFilter:
    status: list[Status] | None = None
    tenant: str | None = strawberry.field(default=None, description="Tenant slug.")
    tags: list[TagInput] | None = None
    gpu_vendor: str | None = strawberry.field(
        default=None, description="NVIDIA, AMD, INTEL (case-insensitive): any GPU of the device."
    )
    gpu_model: str | None = strawberry.field(
        default=None, description="GPU model number, case-insensitive."
    )
    site: list[str] | None = None
    hostname_prefix: str | None = None
    min_free_gpus: int | None = None
    min_free_cpu: int | None = None
    min_free_memory_mb: int | None = strawberry.field(default=None, name="minFreeMemoryMB")
    min_free_storage_gb: int | None = strawberry.field(default=None, name="minFreeStorageGB")


@strawberry.input
class DeviceFilter(MachineFilter):
    kind: list[DeviceKind] | None = strawberry.field(
        default=None, description="Default: BAREMETAL only (VMs are listed by `vms`)."
    )


@strawberry.enum
class DeviceOrderField(Enum):
    HOSTNAME = "hostname"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"
    FREE_GPUS = "free_gpus"
    TOTAL_GPUS = "total_gpus"


@strawberry.input
class DeviceOrder:
    field: DeviceOrderField = DeviceOrderField.HOSTNAME
    direction: OrderDirection = OrderDirection.ASC


def _list[N](
    info: Info[Context, None],
    flt: MachineFilter | None,
    kinds: list[str],
    order_by: DeviceOrder | None,
    first: int,
    after: str | None,
    wrap: Callable[[DeviceRow], N],
) -> Connection[N]:
    ctx = info.context
    who = ctx.who()
    flt = flt or MachineFilter()
    order_by = order_by or DeviceOrder()
    spec = device_db.DeviceFilter(
        kinds=kinds,
        statuses=statuses(flt.status),
        tenant=flt.tenant,
        tags=tags_filter(flt.tags),
        gpu_vendor=text_filter("filter.gpuVendor", flt.gpu_vendor),
        gpu_model=text_filter("filter.gpuModel", flt.gpu_model),
        sites=values_filter("filter.site", flt.site),
        hostname_prefix=text_filter("filter.hostnamePrefix", flt.hostname_prefix),
        min_free_gpus=flt.min_free_gpus,
        min_free_cpu=flt.min_free_cpu,
        min_free_memory_mb=flt.min_free_memory_mb,
        min_free_storage_gb=flt.min_free_storage_gb,
    )
    page = device_db.list_devices(
        ctx.session,
        who,
        spec,
        order_by.field.value,
        order_by.direction == OrderDirection.DESC,
        page_size(info, first),
        after,
    )
    return connection(page, wrap)


@strawberry.type(description="What a delete removed.")
class Deleted:
    id: strawberry.ID
    kind: str
    name: str


@strawberry.type
class DeviceQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="Physical devices (with kind: "
        "[BAREMETAL, VM] also VMs, as device documents), filtered, ordered, "
        "cursor-paginated.",
    )
    def devices(
        self,
        info: Info[Context, None],
        filter: DeviceFilter | None = None,
        order_by: DeviceOrder | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Device]:
        chosen = values_filter("filter.kind", filter.kind if filter else None)
        kinds = [k.value for k in (chosen or [DeviceKind.BAREMETAL])]
        return _list(info, filter, kinds, order_by, first, after, Device.from_row)

    @strawberry.field(permission_classes=AUTH)
    def vms(
        self,
        info: Info[Context, None],
        filter: MachineFilter | None = None,
        order_by: DeviceOrder | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Vm]:
        return _list(info, filter, [DomainKind.VM.value], order_by, first, after, Vm.from_row)


@strawberry.type
class DeviceMutation:
    @strawberry.mutation(permission_classes=AUTH)
    def create_device(self, info: Info[Context, None], input: DeviceInput) -> Device:
        with info.context.write() as session:
            row = inventory.create(
                session,
                info.context.who(),
                DomainKind.BAREMETAL,
                input_document(input, DOCUMENT_NAMES),
            )
        return Device.from_row(row)

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Change some fields; pass "
        "expectedGeneration to refuse a write over someone else's change.",
    )
    def update_device(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
        patch: DevicePatch,
        expected_generation: int | None = None,
    ) -> Device:
        with info.context.write() as session:
            row = inventory.update(
                session,
                info.context.who(),
                DomainKind.BAREMETAL,
                id,
                input_document(patch, DOCUMENT_NAMES),
                expected_generation,
            )
        return Device.from_row(row)

    @strawberry.mutation(permission_classes=AUTH)
    def delete_device(self, info: Info[Context, None], id: strawberry.ID) -> Deleted:
        with info.context.write() as session:
            row = inventory.delete(session, info.context.who(), DomainKind.BAREMETAL, id)
        return Deleted(id=strawberry.ID(row.id), kind=row.kind, name=row.hostname)

    @strawberry.mutation(permission_classes=AUTH)
    def create_vm(self, info: Info[Context, None], input: VmInput) -> Vm:
        with info.context.write() as session:
            row = inventory.create(session, info.context.who(), DomainKind.VM, vm_document(input))
        return Vm.from_row(row)

    @strawberry.mutation(permission_classes=AUTH)
    def update_vm(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
        patch: VmPatch,
        expected_generation: int | None = None,
    ) -> Vm:
        with info.context.write() as session:
            row = inventory.update(
                session,
                info.context.who(),
                DomainKind.VM,
                id,
                vm_document(patch),
                expected_generation,
            )
        return Vm.from_row(row)

    @strawberry.mutation(permission_classes=AUTH)
    def delete_vm(self, info: Info[Context, None], id: strawberry.ID) -> Deleted:
        with info.context.write() as session:
            row = inventory.delete(session, info.context.who(), DomainKind.VM, id)
        return Deleted(id=strawberry.ID(row.id), kind=row.kind, name=row.hostname)
