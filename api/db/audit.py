"""The audit log: one row per change, written in the same transaction as the change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from api.db.base import utcnow
from api.db.models import AuditEventRow
from api.db.paging import Page, keyset_page
from api.db.scope import scoped
from api.db.session import insert_rows
from api.domain.access import Principal


def audit_row(
    who: Principal,
    action: str,
    kind: str,
    object_id: str | None,
    name: str | None,
    tenant_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "actor": who.actor,
        "action": action,
        "object_kind": kind,
        "object_id": object_id,
        "object_name": name,
        "tenant_id": tenant_id,
        "before": before,
        "after": after,
        "request_id": who.request_id,
    }


# Built once: every claim and release writes one (see api/db/claim.py on why); inline(): no
# RETURNING of the generated id, which nothing reads.
_INSERT = insert(AuditEventRow.__table__).inline()


def record(
    session: Session | Connection,
    who: Principal,
    action: str,
    kind: str,
    object_id: str | None,
    name: str | None,
    tenant_id: str | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    # A plain INSERT, run now: cheaper than the ORM's unit of work on hot paths (every
    # claim and release), and the event still commits or rolls back with the change.
    write(session, audit_row(who, action, kind, object_id, name, tenant_id, before, after))


def write(session: Session | Connection, row: dict[str, Any]) -> None:
    """One audit row (``audit_row``'s), in the caller's transaction."""
    session.execute(_INSERT, row)


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk form for imports: multi-row INSERTs instead of one per item."""
    insert_rows(session, AuditEventRow.__table__, rows)


@dataclass
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    object_kind: str | None = None
    object_id: str | None = None
    object_name: str | None = None
    tenant_id: str | None = None
    request_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def list_events(
    session: Session, who: Principal, spec: AuditFilter, first: int, after: str | None
) -> Page:
    """Newest first. A tenant's caller sees its tenant's events only."""
    query = select(AuditEventRow)
    query = scoped(query, AuditEventRow.tenant_id, who)
    for column, value in (
        (AuditEventRow.actor, spec.actor),
        (AuditEventRow.action, spec.action),
        (AuditEventRow.object_kind, spec.object_kind),
        (AuditEventRow.object_id, spec.object_id),
        (AuditEventRow.object_name, spec.object_name),
        (AuditEventRow.tenant_id, spec.tenant_id),
        (AuditEventRow.request_id, spec.request_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if spec.since is not None:
        query = query.where(AuditEventRow.at >= spec.since)
    if spec.until is not None:
        query = query.where(AuditEventRow.at < spec.until)
    return keyset_page(session, query, AuditEventRow.id, AuditEventRow.at, True, first, after)
