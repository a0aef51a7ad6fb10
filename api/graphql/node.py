"""``node(id)`` and ``setStatus``: operations on any kind of item by its id."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.db import inventory
from api.db.items import Item as ItemRow
from api.db.items import find_item
from api.db.models import DeviceRow, SwitchRow
from api.domain.vocabulary import Status as DomainStatus
from api.graphql.common import AUTH, Item, Node, Status
from api.graphql.context import Context
from api.graphql.device import Device, Vm, wrap_machine
from api.graphql.infiniband import Infiniband
from api.graphql.switch import Switch


def wrap_item(row: ItemRow) -> Device | Vm | Switch | Infiniband:
    if isinstance(row, DeviceRow):
        return wrap_machine(row)
    if isinstance(row, SwitchRow):
        return Switch.from_row(row)
    return Infiniband.from_row(row)


@strawberry.type
class NodeQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="Any item by id. Another "
        "tenant's item is NOT_FOUND, exactly like one that does not exist.",
    )
    def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        return wrap_item(find_item(info.context.session, info.context.who(), id))


@strawberry.type
class NodeMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description="Set an item's status. "
        "An allocated item is refused (DEVICE_ALLOCATED) unless a "
        "platform-admin passes force: true.",
    )
    def set_status(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
        status: Status,
        force: bool = False,
        reason: str | None = None,
    ) -> Item:
        with info.context.write() as session:
            row = inventory.set_status(
                session, info.context.who(), id, DomainStatus(status), force, reason
            )
        return wrap_item(row)
