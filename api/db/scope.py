"""The tenancy rule as SQL: Principal (api/domain/access.py) decides, these apply it.

Every list and lookup of tenant-owned rows goes through ``scoped``; machines, which the
platform shares with tenants as its pool, through ``pooled``; named things the platform
shares (profiles) through ``usable``. A resolver or repository that
compared a principal's tenant with a column itself would be a second copy of the rule,
and the one a later change forgets (tests/unit/test_scope.py looks for such copies).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, or_
from sqlalchemy.orm import QueryableAttribute

from api.domain.access import Principal

# A column as a model names it (Device.tenant_id) or as a table does (table.c.tenant_id).
type Column = QueryableAttribute[Any] | ColumnElement[Any]


def scoped[*Row](query: Select[*Row], tenant_column: Column, who: Principal) -> Select[*Row]:
    """The rows of ``query`` the caller may see (``Principal.may_see``): ``tenant_column``
    names the owning tenant (a tenant's own id, for the tenant table)."""
    tenant_id = who.scope_tenant_id
    return query if tenant_id is None else query.where(tenant_column == tenant_id)


def pooled[*Row](query: Select[*Row], tenant_column: Column, who: Principal) -> Select[*Row]:
    """The machines of ``query`` the caller may read (``Principal.may_see_shared``): those
    ``scoped`` gives, and the platform's shared pool (no tenant)."""
    tenant_id = who.scope_tenant_id
    if tenant_id is None:
        return query
    return query.where(or_(tenant_column.is_(None), tenant_column == tenant_id))


def usable[*Row](query: Select[*Row], namespace_column: Column, who: Principal) -> Select[*Row]:
    """The rows of ``query`` that serve the caller (``Principal.may_use``): the
    platform's and its own namespace's."""
    if who.is_platform_admin:
        return query
    return query.where(or_(namespace_column.is_(None), namespace_column == who.tenant_id))


def in_namespace(column: Column, namespace: str | None) -> ColumnElement[bool]:
    """The rows of one namespace: a tenant's, or the platform's (None). Names are unique
    within a namespace only, so every lookup by name goes through here."""
    return column.is_(None) if namespace is None else column == namespace
