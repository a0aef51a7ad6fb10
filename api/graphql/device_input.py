"""The inputs of devices and VMs: their documents as GraphQL inputs, made from the
facts of api/domain/fields.py and the document's structure."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from api.domain.fields import HARDWARE, PLACEMENT, PORT_FACTS, VM_PLACEMENT
from api.graphql.common import DOCUMENT_NAMES, Status, input_document
from api.graphql.facts import declare, input_facts


@strawberry.input(description="A GPU of a device; index defaults to its position.")
class GpuInput:
    vendor_code: str
    model_no: str
    memory_mb: int | None = strawberry.field(default=strawberry.UNSET, name="memoryMB")
    index: int | None = strawberry.UNSET


class IbPortInput:
    name: str


input_facts(IbPortInput, PORT_FACTS)
IbPortInput = strawberry.input(IbPortInput)  # type: ignore[misc]  # fields added before


class MachinePatch:
    """Fields of a device or VM document, in the document's order: the facts of
    api/domain/fields.py and the document's structure."""


input_facts(MachinePatch, HARDWARE)
declare(MachinePatch, "gpus", list[GpuInput] | None, strawberry.UNSET)
declare(MachinePatch, "tags", JSON | None, strawberry.UNSET)
input_facts(MachinePatch, PLACEMENT)
declare(MachinePatch, "infiniband", list[IbPortInput] | None, strawberry.UNSET)
declare(MachinePatch, "tenant", str | None, strawberry.UNSET)
declare(MachinePatch, "project", str | None, strawberry.UNSET)
MachinePatch = strawberry.input(  # type: ignore[misc]  # decorated after its facts (see Machine)
    description="Fields of a device or VM document; unset fields are left out."
)(MachinePatch)


@strawberry.input
class DevicePatch(MachinePatch):
    pass


@strawberry.input
class DeviceInput(MachinePatch):
    hostname: str
    status: Status | None = strawberry.UNSET


class VmPatch(MachinePatch):
    pass


input_facts(VmPatch, VM_PLACEMENT)
VmPatch = strawberry.input(VmPatch)  # type: ignore[misc]  # decorated after its facts (see Machine)


@strawberry.input
class VmInput(VmPatch):
    name: str
    status: Status | None = strawberry.UNSET


def vm_document(value: Any) -> dict[str, Any]:
    document = input_document(value, DOCUMENT_NAMES)
    if "name" in document:
        document["hostname"] = document.pop("name")
    return document
