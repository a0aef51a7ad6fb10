"""The outbox: events written in the same transaction as the change they tell of.

An event is written only when some webhook may want it (one of its tenant's, or a
platform webhook), decided in the INSERT itself, so a fleet without webhooks writes
nothing. Which types a webhook wants is the dispatcher's to sort out when it fans events
out to deliveries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection, bindparam, exists, insert, or_, select
from sqlalchemy.orm import Session

from api.db.base import new_id, utcnow
from api.db.models import EventRow, ProjectRow, TenantRow, WebhookRow

_event = EventRow.__table__
EVENT_COLUMNS = ["id", "type", "subject", "tenant_id", "time", "data"]


def wanted(tenant: Any) -> Any:
    """Whether some webhook takes events of ``tenant`` (a column or bound value): one of
    that tenant's, or a platform webhook (which takes every tenant's)."""
    return exists().where(or_(WebhookRow.tenant_id.is_(None), WebhookRow.tenant_id == tenant))


RECORD = insert(_event).from_select(
    EVENT_COLUMNS,
    select(
        bindparam("id", type_=_event.c.id.type),
        bindparam("type", type_=_event.c.type.type),
        bindparam("subject", type_=_event.c.subject.type),
        bindparam("tenant_id", type_=_event.c.tenant_id.type),
        bindparam("time", type_=_event.c.time.type),
        bindparam("data", type_=JSON()),
    ).where(wanted(bindparam("tenant_id", type_=_event.c.tenant_id.type))),
)


def record(
    connection: Session | Connection,
    type_: str,
    subject: str,
    tenant_id: str | None,
    data: Any,
    time: datetime | None = None,
) -> None:
    """Write the event in the caller's transaction, if a webhook may want it."""
    connection.execute(RECORD, event_values(type_, subject, tenant_id, data, time))


def anyone_wants(session: Session | Connection, tenant_id: str | None) -> bool:
    """Whether an event of ``tenant_id`` would be written: a cheap look before building a
    costly ``data``."""
    return bool(session.scalar(select(wanted(tenant_id))))


def slugs(
    session: Session | Connection, tenant_id: str | None, project_id: str | None
) -> tuple[str | None, str | None]:
    """A tenant's and a project's slugs by id, as events name them."""
    tenant = session.scalar(select(TenantRow.slug).where(TenantRow.id == tenant_id))
    project = session.scalar(select(ProjectRow.slug).where(ProjectRow.id == project_id))
    return tenant, project


def event_values(
    type_: str, subject: str, tenant_id: str | None, data: Any, time: datetime | None = None
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "type": type_,
        "subject": subject,
        "tenant_id": tenant_id,
        "time": time or utcnow(),
        "data": data,
    }
