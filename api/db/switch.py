"""Switches: leaf, spine and InfiniBand switches with their role, address and fabric."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.items import assign, assign_common, source_document
from api.db.models import SwitchRow
from api.db.paging import Page, keyset_page
from api.db.scope import scoped
from api.db.tenant import Directory
from api.domain.access import Principal
from api.domain.document import SwitchSpec
from api.domain.fields import SWITCH_FACTS


def render(switch: SwitchRow, directory: Directory) -> dict[str, Any]:
    """The switch document: its facts (api/domain/fields.py SWITCH_FACTS), in order."""
    return {
        "id": switch.id,
        "kind": "switch",
        "name": switch.name,
        "status": switch.status,
        **{f.key: getattr(switch, f.attribute) for f in SWITCH_FACTS},
        "tags": dict(switch.tags or {}),
        "tenant": directory.tenant(switch.tenant_id),
        "project": directory.project_slug(switch.project_id),
        "source": source_document(switch),
    }


def write_spec(
    session: Session,
    who: Principal,
    directory: Directory,
    spec: SwitchSpec,
    existing: SwitchRow | None,
) -> tuple[SwitchRow, bool]:
    current = (existing.tenant_id, existing.project_id) if existing else (None, None)
    tenant_id, project_id = directory.resolve(who, spec.tenant, spec.project, current)
    switch = existing or SwitchRow(name=spec.name)
    changes = [assign(switch, f.attribute, spec.facts[f.attribute]) for f in SWITCH_FACTS]
    changes.append(assign_common(switch, spec, tenant_id, project_id))
    if existing is None:
        session.add(switch)
    if existing is None or any(changes):
        session.flush()
    return switch, existing is None or any(changes)


ORDER_COLUMNS = {
    "name": SwitchRow.name,
    "created_at": SwitchRow.created_at,
    "updated_at": SwitchRow.updated_at,
}


def list_switches(
    session: Session,
    who: Principal,
    *,
    statuses: list[str] | None,
    tenant_id: str | None,
    sites: list[str] | None,
    role: str | None,
    fabric: str | None,
    order: str,
    descending: bool,
    first: int,
    after: str | None,
) -> Page:
    query = scoped(select(SwitchRow), SwitchRow.tenant_id, who)
    if statuses:
        query = query.where(SwitchRow.status.in_(statuses))
    if tenant_id is not None:
        query = query.where(SwitchRow.tenant_id == tenant_id)
    if sites:
        query = query.where(SwitchRow.site.in_(sites))
    if role is not None:
        query = query.where(SwitchRow.role == role)
    if fabric is not None:
        query = query.where(SwitchRow.fabric == fabric)
    return keyset_page(session, query, SwitchRow.id, ORDER_COLUMNS[order], descending, first, after)
