"""InfiniBand components in GraphQL."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import infiniband as infiniband_db
from api.db import inventory
from api.db.models import InfinibandRow
from api.db.tenant import tenant_by_slug
from api.domain.fields import PORT_FACTS
from api.domain.vocabulary import Kind as DomainKind
from api.graphql.common import (
    AUTH,
    DOCUMENT_NAMES,
    Connection,
    Item,
    Status,
    connection,
    input_document,
    item_fields,
    page_size,
    statuses,
    text_filter,
)
from api.graphql.context import Context
from api.graphql.device import Deleted
from api.graphql.facts import declare, fact_values, input_facts, output_facts
from api.graphql.switch import NamedOrder, order_args


class Infiniband(Item):
    """An InfiniBand port; its facts are api/domain/fields.py's PORT_FACTS (added below)."""

    name: str
    device: str
    port: str

    @strawberry.field
    def document(self, info: Info[Context, None]) -> JSON:
        return JSON(infiniband_db.render(self._row, info.context.directory))

    @classmethod
    def from_row(cls, row: InfinibandRow) -> Infiniband:
        return cls(  # type: ignore[call-arg]  # a class decorated after its statement
            name=row.name,
            device=row.device,
            port=row.port,
            **fact_values(row, PORT_FACTS),
            **item_fields(row),
        )


output_facts(Infiniband, PORT_FACTS)
Infiniband = strawberry.type(  # type: ignore[misc]  # fields added before decorating
    description="An InfiniBand port (HCA or switch port), named device:port."
)(Infiniband)


@strawberry.input
class InfinibandFilter:
    status: list[Status] | None = None
    tenant: str | None = None
    fabric: str | None = None
    device: str | None = None
    switch: str | None = None


class InfinibandPatch:
    """The port document's facts (PORT_FACTS) and structure."""


input_facts(InfinibandPatch, PORT_FACTS)
declare(InfinibandPatch, "tags", JSON | None, strawberry.UNSET)
declare(InfinibandPatch, "tenant", str | None, strawberry.UNSET)
declare(InfinibandPatch, "project", str | None, strawberry.UNSET)
InfinibandPatch = strawberry.input(InfinibandPatch)  # type: ignore[misc]  # fields added before


@strawberry.input
class InfinibandInput(InfinibandPatch):
    device: str
    port: str
    status: Status | None = strawberry.UNSET


@strawberry.type
class InfinibandQuery:
    @strawberry.field(permission_classes=AUTH)
    def infinibands(
        self,
        info: Info[Context, None],
        filter: InfinibandFilter | None = None,
        order_by: NamedOrder | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[Infiniband]:
        ctx, who = info.context, info.context.who()
        flt = filter or InfinibandFilter()
        page = infiniband_db.list_infinibands(
            ctx.session,
            who,
            statuses=statuses(flt.status),
            tenant_id=tenant_by_slug(ctx.session, who, flt.tenant).id if flt.tenant else None,
            fabric=text_filter("filter.fabric", flt.fabric),
            device=text_filter("filter.device", flt.device),
            switch=text_filter("filter.switch", flt.switch),
            first=page_size(info, first),
            after=after,
            **order_args(order_by),
        )
        return connection(page, Infiniband.from_row)


@strawberry.type
class InfinibandMutation:
    @strawberry.mutation(permission_classes=AUTH)
    def create_infiniband(self, info: Info[Context, None], input: InfinibandInput) -> Infiniband:
        with info.context.write() as session:
            row = inventory.create(
                session,
                info.context.who(),
                DomainKind.INFINIBAND,
                input_document(input, DOCUMENT_NAMES),
            )
        return Infiniband.from_row(row)

    @strawberry.mutation(permission_classes=AUTH)
    def update_infiniband(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
        patch: InfinibandPatch,
        expected_generation: int | None = None,
    ) -> Infiniband:
        with info.context.write() as session:
            row = inventory.update(
                session,
                info.context.who(),
                DomainKind.INFINIBAND,
                id,
                input_document(patch, DOCUMENT_NAMES),
                expected_generation,
            )
        return Infiniband.from_row(row)

    @strawberry.mutation(permission_classes=AUTH)
    def delete_infiniband(self, info: Info[Context, None], id: strawberry.ID) -> Deleted:
        with info.context.write() as session:
            row = inventory.delete(session, info.context.who(), DomainKind.INFINIBAND, id)
        return Deleted(id=strawberry.ID(row.id), kind="infiniband", name=row.name)
