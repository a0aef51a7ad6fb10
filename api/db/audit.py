"""The audit log: one row per change, written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from api.db.base import utcnow
from api.db.models import AuditEvent
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


def record(
    session: Session,
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
    session.execute(
        insert(AuditEvent.__table__).values(
            audit_row(who, action, kind, object_id, name, tenant_id, before, after)
        )
    )


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk form for imports: multi-row INSERTs instead of one per item."""
    insert_rows(session, AuditEvent.__table__, rows)
