"""Tenants (cloud partners), their projects, and who the caller is."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.db import tenant as tenant_db
from api.db.models import TenantRow
from api.graphql.common import AUTH, Project, Tenant
from api.graphql.context import Context


def tenant_type(row: TenantRow) -> Tenant:
    return Tenant(id=strawberry.ID(row.id), slug=row.slug, name=row.name, created_at=row.created_at)


@strawberry.type(description="The caller, as its bearer token describes it.")
class Me:
    name: str
    role: str
    tenant: str | None
    issuer: str | None = strawberry.field(
        description="An OpenID Connect token's issuer; null for the service's own tokens."
    )
    subject: str | None = strawberry.field(
        description="An OpenID Connect token's subject (sub); null for the service's own tokens."
    )


@strawberry.type
class TenantQuery:
    @strawberry.field(permission_classes=AUTH, description="Tenants the caller may see.")
    def tenants(self, info: Info[Context, None]) -> list[Tenant]:
        return [
            tenant_type(t) for t in tenant_db.list_tenants(info.context.session, info.context.who())
        ]

    @strawberry.field(permission_classes=AUTH)
    def projects(self, info: Info[Context, None], tenant: str) -> list[Project]:
        rows = tenant_db.list_projects(info.context.session, info.context.who(), tenant)
        return [
            Project(id=strawberry.ID(p.id), slug=p.slug, name=p.name, tenant=tenant) for p in rows
        ]

    @strawberry.field(permission_classes=AUTH)
    def me(self, info: Info[Context, None]) -> Me:
        who = info.context.who()
        return Me(
            name=who.name,
            role=who.role.value,
            tenant=who.tenant_slug,
            issuer=who.issuer,
            subject=who.subject,
        )


@strawberry.type
class TenantMutation:
    @strawberry.mutation(permission_classes=AUTH, description="Platform admins only.")
    def create_tenant(
        self, info: Info[Context, None], slug: str, name: str | None = None
    ) -> Tenant:
        with info.context.write() as session:
            row = tenant_db.create_tenant(session, info.context.who(), slug, name)
        return tenant_type(row)

    @strawberry.mutation(permission_classes=AUTH)
    def create_project(
        self, info: Info[Context, None], tenant: str, slug: str, name: str | None = None
    ) -> Project:
        with info.context.write() as session:
            row = tenant_db.create_project(session, info.context.who(), tenant, slug, name)
        return Project(id=strawberry.ID(row.id), slug=row.slug, name=row.name, tenant=tenant)
