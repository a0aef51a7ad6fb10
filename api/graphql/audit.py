"""auditEvents: the audit log (who, what, before, after, when), newest first."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import audit as audit_db
from api.db.models import AuditEventRow
from api.db.tenant import tenant_by_slug
from api.graphql.common import AUTH, Connection, check_time, connection, page_size
from api.graphql.context import Context


@strawberry.type(description="One change: who made it, to what, and the before and after.")
class AuditEvent:
    id: strawberry.ID
    at: datetime
    actor: str = strawberry.field(description="The token's name, or cli:<user>, or system:…")
    action: str = strawberry.field(description="create, update, delete, allocate, release, …")
    object_kind: str
    object_id: str | None
    object_name: str | None
    tenant: str | None = strawberry.field(description="The tenant slug of the object, if any.")
    before: JSON | None
    after: JSON | None
    request_id: str | None = strawberry.field(
        description="The X-Request-Id of the request that made the change (also in the logs)."
    )


@strawberry.input(description="All given conditions must hold. Times need a UTC offset.")
class AuditEventFilter:
    actor: str | None = None
    action: str | None = None
    object_kind: str | None = None
    object_id: strawberry.ID | None = None
    object_name: str | None = None
    tenant: str | None = strawberry.field(default=None, description="Tenant slug.")
    request_id: str | None = None
    since: datetime | None = strawberry.field(default=None, description="At or after.")
    until: datetime | None = strawberry.field(default=None, description="Before.")


@strawberry.type
class AuditQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="The audit log, newest first. A tenant's token sees its tenant's events.",
    )
    def audit_events(
        self,
        info: Info[Context, None],
        filter: AuditEventFilter | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[AuditEvent]:
        ctx, who = info.context, info.context.who()
        flt = filter or AuditEventFilter()
        for name, value in (("since", flt.since), ("until", flt.until)):
            if value is not None:
                check_time(f"filter.{name}", value)
        spec = audit_db.AuditFilter(
            actor=flt.actor,
            action=flt.action,
            object_kind=flt.object_kind,
            object_id=flt.object_id,
            object_name=flt.object_name,
            tenant_id=tenant_by_slug(ctx.session, who, flt.tenant).id if flt.tenant else None,
            request_id=flt.request_id,
            since=flt.since,
            until=flt.until,
        )
        page = audit_db.list_events(ctx.session, who, spec, page_size(info, first), after)
        directory = ctx.directory

        def wrap(row: AuditEventRow) -> AuditEvent:
            return AuditEvent(
                id=strawberry.ID(str(row.id)),
                at=row.at,
                actor=row.actor,
                action=row.action,
                object_kind=row.object_kind,
                object_id=row.object_id,
                object_name=row.object_name,
                tenant=directory.tenant(row.tenant_id),
                before=None if row.before is None else JSON(row.before),
                after=None if row.after is None else JSON(row.after),
                request_id=row.request_id,
            )

        return connection(page, wrap)
