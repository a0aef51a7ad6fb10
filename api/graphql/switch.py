"""Switches in GraphQL."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import inventory
from api.db import switch as switch_db
from api.db.models import SwitchRow
from api.db.tenant import tenant_by_slug
from api.domain.fields import SWITCH_FACTS
from api.domain.vocabulary import Kind as DomainKind
from api.graphql.common import (
    AUTH,
    DOCUMENT_NAMES,
    Connection,
    Item,
    OrderDirection,
    Status,
    connection,
    input_document,
    item_fields,
    page_size,
    statuses,
    text_filter,
    values_filter,
)
from api.graphql.context import Context
from api.graphql.device import Deleted
from api.graphql.facts import declare, fact_values, input_facts, output_facts


class Switch(Item):
    """A switch; its facts are api/domain/fields.py's SWITCH_FACTS (added below)."""

    name: str

    @strawberry.field
    def document(self, info: Info[Context, None]) -> JSON:
        return JSON(switch_db.render(self._row, info.context.directory))

    @classmethod
    def from_row(cls, row: SwitchRow) -> Switch:
        return cls(  # type: ignore[call-arg]  # a class decorated after its statement
            name=row.name, **fact_values(row, SWITCH_FACTS), **item_fields(row)
        )


output_facts(Switch, SWITCH_FACTS)
Switch = strawberry.type(  # type: ignore[misc]  # fields added before decorating
    description="A network switch: leaf, spine or InfiniBand."
)(Switch)


@strawberry.input
class SwitchFilter:
    status: list[Status] | None = None
    tenant: str | None = None
    site: list[str] | None = None
    role: str | None = None
    fabric: str | None = None


@strawberry.enum
class NamedOrderField(Enum):
    NAME = "name"
    CREATED_AT = "created_at"
    UPDATED_AT = "updated_at"


@strawberry.input
class NamedOrder:
    field: NamedOrderField = NamedOrderField.NAME
    direction: OrderDirection = OrderDirection.ASC


class SwitchPatch:
    """The switch document's fields: its name, facts (SWITCH_FACTS) and structure."""

    name: str | None = strawberry.UNSET


input_facts(SwitchPatch, SWITCH_FACTS)
declare(SwitchPatch, "tags", JSON | None, strawberry.UNSET)
declare(SwitchPatch, "tenant", str | None, strawberry.UNSET)
declare(SwitchPatch, "project", str | None, strawberry.UNSET)
SwitchPatch = strawberry.input(SwitchPatch)  # type: ignore[misc]  # fields added before


@strawberry.input
class SwitchInput(SwitchPatch):
    name: str
    status: Status | None = strawberry.UNSET


def order_args(order_by: NamedOrder | None) -> dict[str, Any]:
    order_by = order_by or NamedOrder()
    return {"order": order_by.field.value, "descending": order_by.direction == OrderDirection.DESC}


@strawberry.type
class SwitchQuery:
    @strawberry.field(permission_classes=AUTH)
    def switches(
        self,
        info: Info[Context, None],
        filter: SwitchFilter | None = None,
        order_by: NamedOrder | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Switch]:
        ctx, who = info.context, info.context.who()
        flt = filter or SwitchFilter()
        page = switch_db.list_switches(
            ctx.session,
            who,
            statuses=statuses(flt.status),
            tenant_id=tenant_by_slug(ctx.session, who, flt.tenant).id if flt.tenant else None,
            sites=values_filter("filter.site", flt.site),
            role=text_filter("filter.role", flt.role),
            fabric=text_filter("filter.fabric", flt.fabric),
            first=page_size(info, first),
            after=after,
            **order_args(order_by),
        )
        return connection(page, Switch.from_row)


@strawberry.type
class SwitchMutation:
    @strawberry.mutation(permission_classes=AUTH)
    def create_switch(self, info: Info[Context, None], input: SwitchInput) -> Switch:
        with info.context.write() as session:
            row = inventory.create(
                session,
                info.context.who(),
                DomainKind.SWITCH,
                input_document(input, DOCUMENT_NAMES),
            )
        return Switch.from_row(row)

    @strawberry.mutation(permission_classes=AUTH)
    def update_switch(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
        patch: SwitchPatch,
        expected_generation: int | None = None,
    ) -> Switch:
        with info.context.write() as session:
            row = inventory.update(
                session,
                info.context.who(),
                DomainKind.SWITCH,
                id,
                input_document(patch, DOCUMENT_NAMES),
                expected_generation,
            )
        return Switch.from_row(row)

    @strawberry.mutation(permission_classes=AUTH)
    def delete_switch(self, info: Info[Context, None], id: strawberry.ID) -> Deleted:
        with info.context.write() as session:
            row = inventory.delete(session, info.context.who(), DomainKind.SWITCH, id)
        return Deleted(id=strawberry.ID(row.id), kind="switch", name=row.name)
